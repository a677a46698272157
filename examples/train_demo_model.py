"""Trains the bundled demo model: handwritten digits pasted onto photographs.

Every image is a 64×64 RGB crop of a real photograph that ships with
scikit-image or scikit-learn, with one of scikit-learn's 8×8 handwritten
digits scaled up and pasted onto it at a random place and size. The label is
the digit and the paste gives a ground-truth box, so explanations can be
checked with the pointing game. Nothing is downloaded.

Writes `saved_models/digits_on_photos.keras`, its metrics in
`saved_models/digits_on_photos.json`, and sample test images with their
boxes under `examples/images/`.

Usage (needs the `train` extra: `pip install ".[train]"`):
    python examples/train_demo_model.py
"""

import argparse
import json
import pathlib

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

IMAGE_SIZE = 64
ROOT = pathlib.Path(__file__).resolve().parent.parent
# Photographs that ship inside the scikit-image wheel (no pooch download).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
)


def load_photos():
    """Colour photographs as float32 arrays in [0, 1]."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
    photos += list(load_sample_images().images)
    return [np.asarray(photo, np.float32) / 255.0 for photo in photos]


def random_crop(photo, rng, size=IMAGE_SIZE):
    """A random square crop of `size` to `4 · size` pixels, resized to `size`."""
    height, width = photo.shape[:2]
    side = int(rng.integers(size, min(height, width, 4 * size) + 1))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(
        (photo[top : top + side, left : left + side] * 255).astype(np.uint8)
    )
    crop = crop.resize((size, size), Image.BILINEAR)
    return np.asarray(crop, np.float32) / 255.0


def paste_digit(background, digit, rng, sides=(26, 45), place=None):
    """Pastes an 8×8 digit (values in [0, 1]) at a random place and scale.

    `sides` is the range of the pasted square's side; `place(side)` may
    choose its `(top, left)` instead of a uniform draw.

    Returns:
        The composed image and the digit's box `[top, left, bottom, right]`
        (bottom and right exclusive) around its visible strokes.
    """
    side = int(rng.integers(*sides))
    stroke = Image.fromarray(digit.astype(np.float32), mode="F")
    alpha = np.asarray(stroke.resize((side, side), Image.BILINEAR))
    alpha = np.clip(1.6 * alpha - 0.2, 0, 1)  # crisper strokes than the 8×8 blur
    if place is None:
        top = int(rng.integers(0, background.shape[0] - side + 1))
        left = int(rng.integers(0, background.shape[1] - side + 1))
    else:
        top, left = place(side)
    region = background[top : top + side, left : left + side]
    # Ink that contrasts, channel by channel, with what lies beneath.
    beneath = region.mean(axis=(0, 1))
    ink = np.where(beneath < 0.5, rng.uniform(0.85, 1.0, 3), rng.uniform(0.0, 0.15, 3))
    image = background.copy()
    image[top : top + side, left : left + side] = (
        alpha[..., None] * ink + (1 - alpha[..., None]) * region
    )
    rows = np.flatnonzero(alpha.max(axis=1) > 0.25)
    cols = np.flatnonzero(alpha.max(axis=0) > 0.25)
    box = [
        top + int(rows[0]),
        left + int(cols[0]),
        top + int(rows[-1]) + 1,
        left + int(cols[-1]) + 1,
    ]
    return image, box


def make_dataset(num_images, digit_images, digit_labels, photos, rng):
    images = np.empty((num_images, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    labels = np.empty((num_images,), np.int64)
    boxes = np.empty((num_images, 4), np.int64)
    for index in range(num_images):
        photo = photos[rng.integers(len(photos))]
        choice = rng.integers(len(digit_images))
        images[index], boxes[index] = paste_digit(
            random_crop(photo, rng), digit_images[choice] / 16.0, rng
        )
        labels[index] = digit_labels[choice]
    return images, labels, boxes


def build_model(num_classes=10):
    """A small CNN: four convolution blocks, global pooling, softmax."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = inputs
    for index, filters in enumerate((16, 32, 64, 96)):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        if index < 3:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="digits_on_photos")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=18000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "saved_models")
    parser.add_argument(
        "--images-out", type=pathlib.Path, default=ROOT / "examples" / "images"
    )
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    digits = load_digits()
    # Test digits are handwritten samples the model never saw in training.
    order = rng.permutation(len(digits.images))
    held_out = order[: len(order) // 5]
    seen = order[len(order) // 5 :]
    photos = load_photos()
    train = make_dataset(
        args.train_images, digits.images[seen], digits.target[seen], photos, rng
    )
    test = make_dataset(
        args.test_images, digits.images[held_out], digits.target[held_out], photos, rng
    )

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        train[0],
        train[1],
        validation_split=0.1,
        epochs=args.epochs,
        batch_size=128,
        callbacks=[keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.3)],
        verbose=2,
    )
    loss, accuracy = model.evaluate(test[0], test[1], verbose=0)
    print(f"test accuracy: {accuracy:.4f} on {args.test_images} images")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "digits_on_photos.keras")
    metrics = {
        "test_accuracy": round(float(accuracy), 4),
        "test_loss": round(float(loss), 4),
        "test_images": args.test_images,
        "train_images": args.train_images,
        "epochs": args.epochs,
        "input": "float32 RGB images (batch, 64, 64, 3), pixels in [0, 1]",
        "classes": [str(digit) for digit in range(10)],
    }
    (args.out / "digits_on_photos.json").write_text(
        json.dumps(metrics, indent=2) + "\n"
    )

    args.images_out.mkdir(parents=True, exist_ok=True)
    samples = {}
    for index in range(args.samples):
        name = f"digit_{index:02d}.png"
        Image.fromarray((test[0][index] * 255).round().astype(np.uint8)).save(
            args.images_out / name
        )
        samples[name] = {
            "label": int(test[1][index]),
            "box": [int(v) for v in test[2][index]],
        }
    (args.images_out / "boxes.json").write_text(json.dumps(samples, indent=2) + "\n")


if __name__ == "__main__":
    main()
