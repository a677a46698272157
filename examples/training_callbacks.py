"""Watch explanations, and how faithful they are, while a model trains.

A small CNN learns which quadrant of a noisy 32×32 image holds a small
checkerboard (blurring it leaves grey, so the insertion curve, which starts
from a blurred image, must find it). After every epoch:

- `SaliencyCallback` explains four validation images with RISE and writes
  the overlays to TensorBoard (`OUT/logs`) and as PNG files (`OUT/png`);
- `DeletionInsertionCallback` adds `deletion_auc` and `insertion_auc` to the
  epoch logs, which `CSVLogger` (`OUT/history.csv`), `EarlyStopping` and,
  when the `tensorboard` package is installed, Keras's `TensorBoard` pick up.

As the model learns, the maps settle on the square and the insertion AUC
rises. View the logs with `tensorboard --logdir OUT/logs`.

Usage:
    python examples/training_callbacks.py [--epochs 8] [--num-masks 500] [--out runs]
"""

import argparse
import importlib.util
import pathlib

import keras
import numpy as np

import keras_rise


def checkerboards(num_images, rng, size=32, side=8):
    """Noise images with one checkerboard patch; the label is its quadrant."""
    images = rng.random((num_images, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 4, num_images)
    half = size // 2
    patch = (np.indices((side, side)).sum(axis=0) % 2).astype(np.float32)
    for image, label in zip(images, labels):
        top = (label // 2) * half + rng.integers(0, half - side + 1)
        left = (label % 2) * half + rng.integers(0, half - side + 1)
        image[top : top + side, left : left + side] = patch[..., None]
    return images, labels


def build_model(size=32):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--num-masks", type=int, default=500)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs"))
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = checkerboards(args.train_images, rng)
    x_val, y_val = checkerboards(200, rng)
    watched = x_val[:4]

    callbacks = [
        # List these before the callbacks that read their logs.
        keras_rise.callbacks.SaliencyCallback(
            watched,
            log_dir=args.out / "logs",
            png_dir=args.out / "png",
            num_masks=args.num_masks,
        ),
        keras_rise.callbacks.DeletionInsertionCallback(
            watched, num_masks=args.num_masks
        ),
        keras.callbacks.CSVLogger(str(args.out / "history.csv")),
        keras.callbacks.EarlyStopping(
            monitor="insertion_auc", mode="max", patience=3, restore_best_weights=True
        ),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(args.out / "logs")))

    args.out.mkdir(parents=True, exist_ok=True)
    model = build_model()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=64,
        callbacks=callbacks,
        verbose=2,
    )
    for epoch, (deletion, insertion) in enumerate(
        zip(history.history["deletion_auc"], history.history["insertion_auc"]), 1
    ):
        print(
            f"epoch {epoch}: deletion AUC {deletion:.3f}, insertion AUC {insertion:.3f}"
        )
    print(f"logs in {args.out}; view with: tensorboard --logdir {args.out / 'logs'}")
    return history


if __name__ == "__main__":
    main()
