"""Explain a 3-D volume classifier (CT/MRI-like): which voxels made the call?

The script makes its own data: noisy volumes of 16×24×24 voxels, half of
which hold a small bright blob (a "lesion") somewhere. A small Conv3D
network learns to find it; RISE then explains its "lesion" score for a few
test volumes. The masks are the paper's on three axes: a 4×6×6 grid
(`grid_size` per axis: fewer cells along the shallow depth), upsampled
trilinearly and shifted at random; a masked voxel takes `fill_value` (0,
the background).

The printout gives, per volume, the blob's centre, where the map peaks and
the ranking AUC of the blob's voxels; the picture shows evenly spaced
slices with their maps and the map's maximum projection along the depth
(`keras_rise.visualize.volume_slices`).

Usage:
    python examples/explain_volume.py [--num-masks 1000] [--epochs 6] [--train-volumes 600]
        [--out examples/output/volume.png]
"""

import argparse
import pathlib

import keras
import numpy as np
from PIL import Image

import keras_rise

SHAPE = (16, 24, 24)
RADIUS = 2.5


def make_volumes(count, rng):
    """Volumes `(count, *SHAPE, 1)`, labels and each blob's centre (or None)."""
    volumes = rng.normal(0.0, 0.3, (count, *SHAPE, 1)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    grid = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1)
    centres = []
    for volume, label in zip(volumes, labels):
        centre = None
        if label:
            centre = tuple(int(rng.integers(3, size - 3)) for size in SHAPE)
            distance = np.linalg.norm(grid - np.array(centre), axis=-1)
            volume[..., 0] += 1.5 * (distance <= RADIUS)
        centres.append(centre)
    return volumes, labels, centres


def build_model():
    inputs = keras.Input((*SHAPE, 1))
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling3D(2)(x)
    x = keras.layers.Conv3D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-volumes", type=int, default=600)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("volume.png"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x_train, y_train, _ = make_volumes(args.train_volumes, rng)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=16, verbose=0)
    x_test, y_test, centres = make_volumes(100, rng)
    print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    chosen = np.flatnonzero(y_test == 1)[:2]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks, grid_size=(4, 6, 6))
    maps = explainer.explain(x_test[chosen], targets=1, verbose=0)
    grid = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1)
    pictures = []
    for volume, saliency, index in zip(x_test[chosen], maps, chosen):
        centre = centres[index]
        blob = np.linalg.norm(grid - np.array(centre), axis=-1) <= RADIUS
        inside, outside = saliency[blob], saliency[~blob]
        auc = float((inside[:, None] > outside[None, :]).mean())
        peak = np.unravel_index(saliency.argmax(), SHAPE)
        print(
            f"blob at {centre}: map peaks at {tuple(int(v) for v in peak)}, "
            f"ranking AUC of the blob's voxels {auc:.3f}"
        )
        pictures.append(keras_rise.visualize.volume_slices(volume, saliency, num_slices=6))
    sheet = Image.new("RGB", (pictures[0].width, sum(p.height + 4 for p in pictures)), "white")
    for row, picture in enumerate(pictures):
        sheet.paste(picture, (0, row * (picture.height + 4)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
