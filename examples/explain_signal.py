"""Explain a time-series classifier: which time steps, and which channel?

The script makes its own data: noisy two-channel signals of 128 steps, half
of which carry a short bump on one channel, chosen at random, at a random
time. A small Conv1D network learns to spot the bump; RISE then explains
its "bump" score for a few test signals it has not seen, twice. First with
the paper's masks on one axis: a grid of `grid_size` cells along time, kept
with probability 0.5, upsampled linearly and shifted at random, a step's
channels masked together, one value per step. Then per step and channel,
`binary_masks=(False, True)`: the same cells along time, each channel kept
or filled whole on its own. A masked value is set to `fill_value` (0, the
signals' mean).

A faithful map puts its peak on the bump. The script prints, per signal,
where the bump is, where the per-step map peaks and the ranking AUC of the
bump's steps (1.0: every bump step outranks every other step), and where
the per-channel map peaks (step and channel); it draws each signal as a
strip per channel over its map (`keras_rise.visualize.plot_signal`).

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
    """Noisy signals `(count, LENGTH, 2)`, labels, each bump's centre (-1:
    none) and channel."""
    signals = rng.normal(0.0, 0.5, (count, LENGTH, 2)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    centres = np.where(labels == 1, rng.integers(WIDTH, LENGTH - WIDTH, count), -1)
    channels = rng.integers(0, 2, count)
    steps = np.arange(LENGTH)
    for signal, centre, channel in zip(signals, centres, channels):
        if centre >= 0:
            signal[:, channel] += 2.5 * np.exp(-0.5 * ((steps - centre) / (WIDTH / 2)) ** 2)
    return signals, labels, centres, channels


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
    x_train, y_train, _, _ = make_signals(1200, rng)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)

    x_test, y_test, centres, channels = make_signals(200, rng)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"test accuracy: {accuracy:.3f}")
    chosen = np.flatnonzero(y_test == 1)[:3]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks, grid_size=16)
    maps = explainer.explain(x_test[chosen], targets=1, verbose=0)
    per_channel = keras_rise.RiseExplainer(
        model, num_masks=args.num_masks, grid_size=(16, 2), binary_masks=(False, True)
    ).explain(x_test[chosen], targets=1, verbose=0)  # (3, LENGTH, 2)
    pictures = []
    for signal, saliency, both, centre, channel in zip(
        x_test[chosen], maps, per_channel, centres[chosen], channels[chosen]
    ):
        bump = np.abs(np.arange(LENGTH) - centre) <= WIDTH
        step, peak_channel = np.unravel_index(int(both.argmax()), both.shape)
        print(
            f"bump at step {centre} on channel {channel}: map peaks at step "
            f"{int(saliency.argmax())}, ranking AUC of the bump's steps "
            f"{ranking_auc(saliency, bump):.3f}; per channel, at step {step} on "
            f"channel {peak_channel}"
        )
        pictures.append(keras_rise.visualize.plot_signal(signal, both, size=(640, 140)))
    sheet = Image.new("RGB", (640, 144 * len(pictures)), (255, 255, 255))
    for row, picture in enumerate(pictures):
        sheet.paste(picture, (0, 144 * row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
