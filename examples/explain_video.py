"""Explain a video classifier: which frames, and where in them, made the call?

The script makes its own clips of 8 frames of 24×24 RGB pixels: a grey
square drifts across every clip, and in half of them a red square flashes
for two frames at a random time and place. A small Conv3D network learns
to spot the flash (and to ignore the drifting square); RISE then explains
its "flash" score for a few test clips. The masks cover time and space: a
4×6×6 grid (`grid_size=(4, 6, 6)`: frames, rows, columns), upsampled
linearly on each axis and shifted at random; masked pixels become black
(`fill_value=0`).

The printout gives, per clip, the flash's frames and where the map's
frame-by-frame total peaks; the picture is a strip of the clip's frames
with their maps, all in the colours of the clip's range
(`keras_rise.visualize.frame_strip`).

Usage:
    python examples/explain_video.py [--num-masks 1000] [--epochs 8] [--train-clips 600]
        [--out examples/output/video.png]
"""

import argparse
import pathlib

import keras
import numpy as np
from PIL import Image

import keras_rise

FRAMES, SIZE = 8, 24


def make_clips(count, rng):
    """Clips `(count, FRAMES, SIZE, SIZE, 3)` in [0, 1], labels, flash frames."""
    clips = rng.uniform(0.0, 0.15, (count, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    flashes = []
    for clip, label in zip(clips, labels):
        row, column, step = rng.integers(0, SIZE - 5), 0, int(rng.integers(2, 4))
        for frame in range(FRAMES):  # the distractor drifts to the right
            left = min(column + step * frame, SIZE - 5)
            clip[frame, row : row + 5, left : left + 5] = 0.6
        flash = None
        if label:
            start = int(rng.integers(0, FRAMES - 1))
            y, x = rng.integers(0, SIZE - 5, 2)
            clip[start : start + 2, y : y + 5, x : x + 5] = (0.9, 0.1, 0.1)
            flash = (start, start + 1)
        flashes.append(flash)
    return clips, labels, flashes


def build_model():
    inputs = keras.Input((FRAMES, SIZE, SIZE, 3))
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling3D((1, 2, 2))(x)
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-clips", type=int, default=600)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("video.png"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x_train, y_train, _ = make_clips(args.train_clips, rng)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=16, verbose=0)
    x_test, y_test, flashes = make_clips(100, rng)
    print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    chosen = np.flatnonzero(y_test == 1)[:2]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks, grid_size=(4, 6, 6))
    maps = explainer.explain(x_test[chosen], targets=1, verbose=0)
    strips = []
    for clip, saliency, index in zip(x_test[chosen], maps, chosen):
        per_frame = saliency.reshape(FRAMES, -1).mean(axis=1)
        print(
            f"flash in frames {flashes[index]}: the map's frame totals peak at frame "
            f"{int(per_frame.argmax())}"
        )
        strips.append(keras_rise.visualize.frame_strip(clip, saliency, scale=4))
    sheet = Image.new("RGB", (strips[0].width, sum(s.height + 4 for s in strips)), "white")
    for row, strip in enumerate(strips):
        sheet.paste(strip, (0, row * (strip.height + 4)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
