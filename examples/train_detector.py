"""Trains the bundled demo detector: several digits pasted onto photographs.

Every image is a 96×96 RGB crop of a real photograph that ships with
scikit-image or scikit-learn, with two or three of scikit-learn's 8×8
handwritten digits scaled up and pasted onto it at places that do not
overlap; the pastes give each digit's box and class. The detector is a small
one-stage network: a convolutional backbone down to a 12×12 grid (8 pixels a
cell) whose every cell proposes one box, an objectness and ten class scores
(`keras_rise.demo.GridDetections` decodes them). Nothing is downloaded.

Writes `saved_models/digit_detector.keras`, its metrics in
`saved_models/digit_detector.json`, and sample test images with their boxes
under `examples/detections/` (`detect_XX.png`, `detections.json`).

Usage (needs the `train` extra: `pip install ".[train]"`):
    python examples/train_detector.py
"""

import argparse
import json
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from train_demo_model import load_photos, paste_digit, random_crop  # noqa: E402

from keras_rise.demo import GridDetections  # noqa: E402

IMAGE_SIZE = 96
STRIDE = 8
GRID = IMAGE_SIZE // STRIDE
ANCHOR = 24.0
SIDES = (22, 37)  # pasted square side, pixels
ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_image(photos, digit_images, digit_labels, rng):
    """One image with 2-3 digits at non-overlapping places.

    Returns:
        `(image, boxes, labels)`: boxes `[x1, y1, x2, y2]` (exclusive ends)
        around each digit's visible strokes.
    """
    image = random_crop(photos[rng.integers(len(photos))], rng, IMAGE_SIZE)
    taken, boxes, labels = [], [], []
    for _ in range(int(rng.integers(2, 4))):

        def place(side):
            for _ in range(50):
                top, left = (int(v) for v in rng.integers(0, IMAGE_SIZE - side + 1, 2))
                square = (top, left, top + side, left + side)
                if all(
                    square[2] <= t or t2 <= square[0] or square[3] <= l or l2 <= square[1]
                    for t, l, t2, l2 in taken
                ):
                    taken.append(square)
                    return top, left
            raise _NoRoom

        choice = rng.integers(len(digit_images))
        try:
            image, (top, left, bottom, right) = paste_digit(
                image, digit_images[choice] / 16.0, rng, SIDES, place
            )
        except _NoRoom:
            break
        boxes.append([left, top, right, bottom])
        labels.append(int(digit_labels[choice]))
    return image, boxes, labels


class _NoRoom(Exception):
    pass


def grid_targets(boxes, labels):
    """Per-cell training targets `(GRID, GRID, 6)`.

    Channels: objectness (1 in the cell holding a box's centre), class,
    the centre's offset in the cell (x, y) and log width and height over
    `ANCHOR`.
    """
    target = np.zeros((GRID, GRID, 6), np.float32)
    for (x1, y1, x2, y2), label in zip(boxes, labels):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        col, row = min(int(cx // STRIDE), GRID - 1), min(int(cy // STRIDE), GRID - 1)
        target[row, col] = [
            1.0,
            label,
            cx / STRIDE - col,
            cy / STRIDE - row,
            np.log((x2 - x1) / ANCHOR),
            np.log((y2 - y1) / ANCHOR),
        ]
    return target


def make_dataset(count, digit_images, digit_labels, photos, rng):
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    targets = np.empty((count, GRID, GRID, 6), np.float32)
    annotations = []
    for index in range(count):
        images[index], boxes, labels = make_image(photos, digit_images, digit_labels, rng)
        targets[index] = grid_targets(boxes, labels)
        annotations.append({"boxes": boxes, "labels": labels})
    return images, targets, annotations


def detection_loss(target, head):
    """Objectness cross-entropy everywhere; class and box on the object cells."""
    positive = target[..., 0]
    objectness = keras.ops.binary_crossentropy(positive, head[..., 0], from_logits=True)
    weights = 1.0 + 4.0 * positive  # few cells hold an object
    classes = keras.ops.sparse_categorical_crossentropy(
        keras.ops.cast(target[..., 1], "int32"), head[..., 5:], from_logits=True
    )
    offsets = keras.ops.abs(keras.ops.sigmoid(head[..., 1:3]) - target[..., 2:4])
    sizes = keras.ops.abs(head[..., 3:5] - target[..., 4:6])
    box = keras.ops.sum(offsets, -1) + keras.ops.sum(sizes, -1)
    count = keras.ops.maximum(keras.ops.sum(positive), 1.0)
    return keras.ops.sum(weights * objectness) / count + keras.ops.sum(
        positive * (classes + 2.0 * box)
    ) / count


def build_head(num_classes=10):
    """The backbone and the per-cell head `(batch, 12, 12, 5 + classes)`."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = inputs
    for filters in (24, 48, 64):  # 96 -> 48 -> 24 -> 12
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    for _ in range(3):  # receptive field over a whole digit
        x = keras.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    head = keras.layers.Conv2D(5 + num_classes, 1, name="head")(x)
    return keras.Model(inputs, head, name="digit_detector_head")


def decode(head_model):
    """The detector users load: the head decoded into proposals."""
    proposals = GridDetections(STRIDE, ANCHOR, name="proposals")(head_model.output)
    return keras.Model(head_model.input, proposals, name="digit_detector")


def evaluate(detector, images, annotations, min_score=0.5):
    """Recall and precision at IoU 0.5 of the confident, non-overlapping detections."""
    from keras_rise.scores import detections

    found = detections(detector.predict(images, batch_size=100, verbose=0), min_score)
    hits = total_true = total_found = 0
    for kept, truth in zip(found, annotations):
        total_true += len(truth["boxes"])
        total_found += len(kept)
        for box, label in zip(truth["boxes"], truth["labels"]):
            for detection in kept:
                if detection.class_id == label and _iou(detection.box, box) >= 0.5:
                    hits += 1
                    break
    return hits / max(total_true, 1), hits / max(total_found, 1)


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "saved_models")
    parser.add_argument(
        "--images-out", type=pathlib.Path, default=ROOT / "examples" / "detections"
    )
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    digits = load_digits()
    order = rng.permutation(len(digits.images))
    held_out, seen = order[: len(order) // 5], order[len(order) // 5 :]
    photos = load_photos()
    train = make_dataset(
        args.train_images, digits.images[seen], digits.target[seen], photos, rng
    )
    test = make_dataset(
        args.test_images, digits.images[held_out], digits.target[held_out], photos, rng
    )

    head = build_head()
    head.compile(optimizer=keras.optimizers.Adam(2e-3), loss=detection_loss)
    head.fit(
        train[0],
        train[1],
        validation_split=0.1,
        epochs=args.epochs,
        batch_size=64,
        callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)],
        verbose=2,
    )
    detector = decode(head)
    recall, precision = evaluate(detector, test[0], test[2])
    print(f"test recall {recall:.3f}, precision {precision:.3f} (IoU 0.5, score 0.5)")

    args.out.mkdir(parents=True, exist_ok=True)
    detector.save(args.out / "digit_detector.keras")
    metrics = {
        "test_recall": round(recall, 4),
        "test_precision": round(precision, 4),
        "matching": "same class and IoU >= 0.5, detections with score >= 0.5",
        "test_images": args.test_images,
        "train_images": args.train_images,
        "epochs": args.epochs,
        "input": "float32 RGB images (batch, 96, 96, 3), pixels in [0, 1]",
        "output": "dict: boxes (batch, 144, 4) x1 y1 x2 y2 pixels, class_probs "
        "(batch, 144, 10), objectness (batch, 144)",
        "classes": [str(digit) for digit in range(10)],
    }
    (args.out / "digit_detector.json").write_text(json.dumps(metrics, indent=2) + "\n")

    args.images_out.mkdir(parents=True, exist_ok=True)
    samples = {}
    for index in range(args.samples):
        name = f"detect_{index:02d}.png"
        Image.fromarray((test[0][index] * 255).round().astype(np.uint8)).save(
            args.images_out / name
        )
        samples[name] = test[2][index]
    (args.images_out / "detections.json").write_text(json.dumps(samples, indent=2) + "\n")


if __name__ == "__main__":
    tf.config.experimental.enable_op_determinism()
    main()
