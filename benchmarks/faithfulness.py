"""How faithful are RISE maps next to Grad-CAM, Score-CAM, occlusion and chance?

On the bundled demo model (digits pasted onto photographs, 64×64), every
method explains each image's true digit; the maps are scored with
`keras_rise.metrics`: deletion AUC (lower is better), insertion AUC (higher
is better) and the pointing game against the digit's box (15-pixel
tolerance, as in the paper). Grad-CAM and Score-CAM come from tf-keras-vis,
the white-box baselines the RISE paper compares with.

By default the 8 sample images in `examples/images/` are used. With
`--num-images N` (needs the `train` extra) N new test images are composed
the way `examples/train_demo_model.py` composes its test set: digits the
model never saw in training, on random crops of the same photographs.

RISE runs with the default estimator (`score_regression=True`); with
`--plain` the paper's plain estimator is scored too, on the same masks.

Usage:
    python benchmarks/faithfulness.py
    python benchmarks/faithfulness.py --num-images 200 --plain --json results.json
"""

import argparse
import json
import pathlib
import sys
import time

import keras
import numpy as np
from PIL import Image

import keras_rise
from keras_rise import metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent


def bundled_images():
    """The sample images, labels and boxes under `examples/images/`."""
    folder = ROOT / "examples" / "images"
    boxes = json.loads((folder / "boxes.json").read_text())
    names = sorted(boxes)
    images = np.stack(
        [
            np.asarray(Image.open(folder / n).convert("RGB"), np.float32) / 255
            for n in names
        ]
    )
    labels = np.array([boxes[n]["label"] for n in names])
    return images, labels, np.array([boxes[n]["box"] for n in names])


def composed_images(num_images, seed=1):
    """New test images of held-out digits, as the training script makes them."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train_demo_model as recipe
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The training script's first draw from seed 0 picks the held-out fifth.
    order = np.random.default_rng(0).permutation(len(digits.images))
    held_out = order[: len(order) // 5]
    return recipe.make_dataset(
        num_images,
        digits.images[held_out],
        digits.target[held_out],
        recipe.load_photos(),
        np.random.default_rng(seed),
    )


def occlusion(model, images, labels, window=16, stride=4, batch_size=256):
    """Sliding-window occlusion: the score drop when a window is zeroed,
    averaged over the windows that cover each pixel."""
    _, height, width, _ = images.shape
    corners = [
        (top, left)
        for top in range(0, height - window + 1, stride)
        for left in range(0, width - window + 1, stride)
    ]
    maps = []
    for image, label in zip(images, labels):
        occluded = np.repeat(image[None], len(corners), axis=0)
        for index, (top, left) in enumerate(corners):
            occluded[index, top : top + window, left : left + window] = 0.0
        base = model.predict(image[None], verbose=0)[0, label]
        drops = (
            base - model.predict(occluded, batch_size=batch_size, verbose=0)[:, label]
        )
        total = np.zeros((height, width))
        covered = np.zeros((height, width))
        for drop, (top, left) in zip(drops, corners):
            total[top : top + window, left : left + window] += drop
            covered[top : top + window, left : left + window] += 1
        maps.append(total / np.maximum(covered, 1))
    return np.stack(maps)


def tf_keras_vis_maps(model, images, labels, method):
    """Grad-CAM or Score-CAM maps from tf-keras-vis, on the last conv layer."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    # A model loaded from .keras must be rebuilt for tf-keras-vis to reach
    # the penultimate layer's gradient (see ../shared/ECOSYSTEM.md).
    rebuilt = keras.models.clone_model(model)
    rebuilt.set_weights(model.get_weights())
    # Both methods are defined on the class logit, before the softmax (what
    # tf-keras-vis's ReplaceToLinear does; that modifier fails on Keras 3).
    rebuilt.layers[-1].activation = keras.activations.linear
    cam_class = Gradcam if method == "gradcam" else Scorecam
    cam = cam_class(rebuilt, clone=False)
    keras.config.disable_interactive_logging()  # Score-CAM's predict progress bar
    try:
        maps = cam(CategoricalScore(list(labels)), images)
    finally:
        keras.config.enable_interactive_logging()
    return np.asarray(maps, np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=None)
    parser.add_argument("--num-masks", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also score RISE with the paper's estimator (score_regression=False)",
    )
    args = parser.parse_args()

    model = keras_rise.load_demo_model()
    if args.num_images:
        images, labels, boxes = composed_images(args.num_images)
    else:
        images, labels, boxes = bundled_images()
    accuracy = float(np.mean(model.predict(images, verbose=0).argmax(1) == labels))
    print(f"{len(images)} images, demo model accuracy on them {accuracy:.3f}")

    explainers = {f"RISE (N={args.num_masks})": {}}
    if args.plain:
        explainers[f"RISE plain (N={args.num_masks})"] = {"score_regression": False}
    methods = {}
    for name, options in explainers.items():
        explainer = keras_rise.RiseExplainer(
            model, num_masks=args.num_masks, seed=args.seed, **options
        )
        explainer.explain(images[:1], labels[:1])  # compile outside the timing
        methods[name] = (lambda e: lambda: e.explain(images, labels))(explainer)
    methods |= {
        "Grad-CAM": lambda: tf_keras_vis_maps(model, images, labels, "gradcam"),
        "Score-CAM": lambda: tf_keras_vis_maps(model, images, labels, "scorecam"),
        "Occlusion 16px/4": lambda: occlusion(model, images, labels),
        "Random": lambda: np.random.default_rng(args.seed).random(images.shape[:3]),
    }
    rows = []
    for name, explain in methods.items():
        began = time.perf_counter()
        maps = explain()
        seconds = (time.perf_counter() - began) / len(images)
        deleted = metrics.deletion(model, images, maps, labels)
        inserted = metrics.insertion(model, images, maps, labels)
        pointing = metrics.pointing_game(maps, boxes)
        rows.append(
            {
                "method": name,
                "deletion_auc": float(deleted.auc.mean()),
                "insertion_auc": float(inserted.auc.mean()),
                "pointing_game": pointing.rate,
                "seconds_per_image": seconds,
            }
        )

    print(
        f"{'method':<24} {'deletion↓':>10} {'insertion↑':>11} {'pointing↑':>10} {'s/image':>8}"
    )
    for row in rows:
        print(
            f"{row['method']:<24} {row['deletion_auc']:>10.4f} {row['insertion_auc']:>11.4f}"
            f" {row['pointing_game']:>10.3f} {row['seconds_per_image']:>8.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
