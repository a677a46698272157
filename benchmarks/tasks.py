"""keras_rise against xplique's Rise on every task, and D-RISE against Grad-CAM.

For each task the same model, image and number of masks go to
`keras_rise.RiseExplainer` (with the task's score) and to xplique's `Rise`
(with the matching `xplique.Tasks` operator and targets):

- classification: the bundled demo classifier, each image's top class;
- regression: the same network read as a 10-output regressor, the output of
  the image's digit (`OutputScore(index=k)` / `Tasks.REGRESSION`);
- semantic segmentation: the bundled detector's grid read as a 12×12
  segmentation (class probability × objectness per cell), the mean of the
  top detection's class over its cells (`RegionScore` / a binary zone for
  `Tasks.SEMANTIC_SEGMENTATION`);
- object detection: the bundled detector, its top detection
  (`DetectionScore` / `Tasks.OBJECT_DETECTION` on the proposals flattened to
  `(4 + 1 + classes)`).

Both maps are judged by the same score with `keras_rise.metrics`: deletion
AUC (lower is better) and insertion AUC (higher is better). Seconds per map
are the best of `--repeats` calls after one warm-up, the two methods
alternating. A last table compares D-RISE maps of every detection of the
bundled detector with Grad-CAM of its class head (the gradient of the
detection's cell's class logit at the last convolution).

xplique 2.0 pins TensorFlow <= 2.20, so run this in a virtual environment of
its own, where keras_rise installs too:

    python3 -m venv .xq && .xq/bin/pip install xplique .
    .xq/bin/python benchmarks/tasks.py [--num-masks 2000] [--json FILE]
"""

import argparse
import json
import pathlib

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import keras_rise
from keras_rise import metrics, scores
from overhead import best_time  # benchmarks/ is on the path when run as a script

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "examples" / "images"
DETECTIONS = ROOT / "examples" / "detections"


def _load(names, folder=IMAGES):
    return np.stack(
        [np.asarray(Image.open(folder / name), np.float32) / 255.0 for name in names]
    )


def _best(function, repeats):
    """Best of `repeats` timed calls after one warm-up call."""
    function()
    return best_time(function, repeats)


def grid_segmenter(detector):
    """The detector's grid as a segmentation: `(B, 12, 12, classes)`."""
    head = detector.get_layer("head").output
    probs = keras.layers.Softmax()(head[..., 5:])
    objectness = keras.layers.Activation("sigmoid")(head[..., :1])
    return keras.Model(detector.input, probs * objectness, name="grid_segmenter")


def flat_detector(detector):
    """The detector's proposals as xplique reads them: `(B, P, 4 + 1 + classes)`."""

    def model(images):
        out = detector(images, training=False)
        return tf.concat([out["boxes"], out["objectness"][..., None], out["class_probs"]], -1)

    return model


def tasks(num_masks):
    """`(name, model, xplique model, image, score, xplique operator, xplique target)`."""
    from xplique import Tasks

    classifier = keras_rise.load_demo_model()
    detector = keras_rise.load_demo_detector()
    digit = _load(["digit_00.png"])
    photo = _load(["detect_00.png"], DETECTIONS)
    top_class = int(np.argmax(classifier(digit)[0]))
    one_hot = np.eye(10, dtype=np.float32)[top_class][None]

    found = scores.detections(detector(photo))[0]
    best = found[0]
    x1, y1, x2, y2 = best.box
    cells = (int(y1 // 8), int(x1 // 8), int(np.ceil(y2 / 8)), int(np.ceil(x2 / 8)))
    top, left, bottom, right = (min(max(v, 0), 12) for v in cells)
    zone = np.zeros((1, 12, 12, 10), np.float32)
    zone[0, top:bottom, left:right, best.class_id] = 1.0
    box_target = np.concatenate(
        [np.array(best.box, np.float32), [1.0], np.eye(10, dtype=np.float32)[best.class_id]]
    )[None]
    segmenter = grid_segmenter(detector)
    return [
        ("classification", classifier, classifier, digit,
         scores.ClassScore(top_class), Tasks.CLASSIFICATION, one_hot),
        ("regression (10 outputs)", classifier, classifier, digit,
         scores.OutputScore(index=top_class), Tasks.REGRESSION, one_hot),
        ("semantic segmentation", segmenter, segmenter, photo,
         scores.RegionScore(best.class_id, (top, left, bottom, right)),
         Tasks.SEMANTIC_SEGMENTATION, zone),
        ("object detection (D-RISE)", detector, flat_detector(detector), photo,
         scores.DetectionScore(best.box, best.class_id), Tasks.OBJECT_DETECTION, box_target),
    ]


def compare_tasks(num_masks, repeats, batch_size):
    from xplique.attributions import Rise

    rows = []
    for name, model, xmodel, image, score, operator, target in tasks(num_masks):
        ours = keras_rise.RiseExplainer(model, num_masks=num_masks, batch_size=batch_size)
        theirs = Rise(
            xmodel, batch_size=batch_size, operator=operator, nb_samples=num_masks,
            grid_size=7, preservation_probability=0.5,
        )
        maps = {}

        def run_ours():
            maps["keras_rise"] = ours.explain(image, targets=score)[0]

        def run_theirs():
            maps["xplique"] = np.asarray(theirs.explain(image, target)).reshape(
                image.shape[1:3]
            )

        seconds = {"keras_rise": _best(run_ours, repeats), "xplique": _best(run_theirs, repeats)}
        for method, saliency in maps.items():
            saliency = np.asarray(saliency, np.float32)
            rows.append({
                "task": name,
                "method": method,
                "seconds_per_map": round(seconds[method], 3),
                "deletion_auc": float(metrics.deletion(model, image[0], saliency, score).auc),
                "insertion_auc": float(metrics.insertion(model, image[0], saliency, score).auc),
                "r_to_other": float(np.corrcoef(
                    maps["keras_rise"].ravel(), maps["xplique"].ravel()
                )[0, 1]),
            })
    return rows


def grad_cam(detector, image, detection):
    """Grad-CAM of a detection: its cell's class logit at the last convolution."""
    head_layer = detector.get_layer("head")
    features = head_layer.input
    model = keras.Model(detector.input, [features, head_layer.output])
    x1, y1, x2, y2 = detection.box
    row = min(max(int(((y1 + y2) / 2) // 8), 0), 11)
    col = min(max(int(((x1 + x2) / 2) // 8), 0), 11)
    with tf.GradientTape() as tape:
        activations, head = model(image[None])
        logit = head[0, row, col, 5 + detection.class_id]
    gradients = tape.gradient(logit, activations)[0]
    weights = tf.reduce_mean(gradients, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(activations[0] * weights, axis=-1))
    return tf.image.resize(cam[..., None], image.shape[:2], "bilinear")[..., 0].numpy()


def compare_with_grad_cam(num_masks, batch_size):
    detector = keras_rise.load_demo_detector()
    names = sorted(json.loads((DETECTIONS / "detections.json").read_text()))
    images = _load(names, DETECTIONS)
    explainer = keras_rise.RiseExplainer(detector, num_masks=num_masks, batch_size=batch_size)
    results = {"D-RISE": [], "Grad-CAM": []}
    for image, found in zip(images, scores.detections(detector(images))):
        for detection in found:
            score = scores.DetectionScore(detection.box, detection.class_id)
            x1, y1, x2, y2 = detection.box
            box = [max(int(y1), 0), max(int(x1), 0), min(int(np.ceil(y2)), 96),
                   min(int(np.ceil(x2)), 96)]
            maps = {
                "D-RISE": explainer.explain(image, targets=score),
                "Grad-CAM": grad_cam(detector, image, detection),
            }
            for method, saliency in maps.items():
                results[method].append((
                    float(metrics.deletion(detector, image, saliency, score).auc),
                    float(metrics.insertion(detector, image, saliency, score).auc),
                    bool(metrics.pointing_game(saliency, box, tolerance=0).hits),
                ))
    return [
        {
            "method": method,
            "detections": len(values),
            "deletion_auc": float(np.mean([v[0] for v in values])),
            "insertion_auc": float(np.mean([v[1] for v in values])),
            "pointing_game": float(np.mean([v[2] for v in values])),
        }
        for method, values in results.items()
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()

    rows = compare_tasks(args.num_masks, args.repeats, args.batch_size)
    print(f"N = {args.num_masks} masks, batch {args.batch_size}, TF {tf.__version__}")
    print(f"{'task':<28} {'method':<11} {'s/map':>7} {'deletion':>9} {'insertion':>9} "
          f"{'r':>6}")
    for row in rows:
        print(f"{row['task']:<28} {row['method']:<11} {row['seconds_per_map']:>7.3f} "
              f"{row['deletion_auc']:>9.4f} {row['insertion_auc']:>9.4f} "
              f"{row['r_to_other']:>6.3f}")
    cams = compare_with_grad_cam(args.num_masks, args.batch_size)
    print(f"\n{'detector maps':<12} {'detections':>10} {'deletion':>9} {'insertion':>9} "
          f"{'pointing':>8}")
    for row in cams:
        print(f"{row['method']:<12} {row['detections']:>10} {row['deletion_auc']:>9.4f} "
              f"{row['insertion_auc']:>9.4f} {row['pointing_game']:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps({"tasks": rows, "detector": cams}, indent=2))


if __name__ == "__main__":
    main()
