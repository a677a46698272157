"""Explain a time-series classifier: which time steps made the call?

The script makes its own data: noisy two-channel signals of 128 steps, half
of which carry a short bump on channel 0 at a random time. A small Conv1D
network learns to spot the bump; RISE then explains its "bump" score for
a few test signals it has not seen. The masks are the paper's, on one axis:
a grid of `grid_size` cells along time, kept with probability 0.5,
upsampled linearly and shifted at random; a masked step is set to
`fill_value` (0, the signals' mean).

A faithful map puts its peak on the bump. The script prints, per signal,
where the bump is, where the map peaks, and the ranking AUC of the bump's
steps (1.0: every bump step outranks every other step), and draws each
signal over its map as a coloured band (`keras_rise.visualize.plot_signal`).

Usage:
    python examples/explain_signal.py [--num-masks 1000] [--epochs 6]
        [--out examples/output/signal.png]
"""

import argparse
import pathlib

import keras
import numpy as np
from PIL import Image

import keras_rise

LENGTH, WIDTH = 128, 6  # steps per signal, the bump's half-width


def make_signals(count, rng):
    """Noisy signals `(count, LENGTH, 2)`, labels, and each bump's centre (-1: none)."""
    signals = rng.normal(0.0, 0.5, (count, LENGTH, 2)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    centres = np.where(labels == 1, rng.integers(WIDTH, LENGTH - WIDTH, count), -1)
    steps = np.arange(LENGTH)
    for signal, centre in zip(signals, centres):
        if centre >= 0:
            signal[:, 0] += 2.5 * np.exp(-0.5 * ((steps - centre) / (WIDTH / 2)) ** 2)
    return signals, labels, centres


def build_model():
    inputs = keras.Input((LENGTH, 2))
    x = keras.layers.Conv1D(8, 7, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv1D(16, 5, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def ranking_auc(saliency, important):
    inside, outside = saliency[important], saliency[~important]
    return float((inside[:, None] > outside[None, :]).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("signal.png"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x_train, y_train, _ = make_signals(1200, rng)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)

    x_test, y_test, centres = make_signals(200, rng)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"test accuracy: {accuracy:.3f}")
    chosen = np.flatnonzero(y_test == 1)[:3]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks, grid_size=16)
    maps = explainer.explain(x_test[chosen], targets=1, verbose=0)
    pictures = []
    for signal, saliency, centre in zip(x_test[chosen], maps, centres[chosen]):
        bump = np.abs(np.arange(LENGTH) - centre) <= WIDTH
        print(
            f"bump at step {centre}: map peaks at step {int(saliency.argmax())}, "
            f"ranking AUC of the bump's steps {ranking_auc(saliency, bump):.3f}"
        )
        pictures.append(keras_rise.visualize.plot_signal(signal, saliency, size=(640, 140)))
    sheet = Image.new("RGB", (640, 144 * len(pictures)), (255, 255, 255))
    for row, picture in enumerate(pictures):
        sheet.paste(picture, (0, 144 * row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
