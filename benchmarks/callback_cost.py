"""What the training callbacks add to an epoch.

Trains the model of `examples/training_callbacks.py` (2000 images of 32×32,
batch 64) with no keras_rise callback, with `SaliencyCallback` and with
`DeletionInsertionCallback`, each watching 4 images, and prints seconds per
epoch and the added cost. The runs alternate in one process, and the median
epoch time of each is kept (the first epoch, which compiles, is reported
apart).

Usage:
    python benchmarks/callback_cost.py [--epochs 4] [--num-masks 500 1000]
"""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import keras
import numpy as np

import keras_rise

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
from training_callbacks import build_model, checkerboards  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, callbacks listed before it included."""

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._began)

    def on_train_begin(self, logs=None):
        self.seconds = []


def epoch_times(x, y, make_callbacks, epochs):
    keras.utils.set_random_seed(0)
    model = build_model()
    timer = EpochTimer()
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=64,
        verbose=0,
        callbacks=[*make_callbacks(), timer],
    )
    return timer.seconds[0], statistics.median(timer.seconds[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--num-masks", type=int, nargs="+", default=[500, 1000])
    args = parser.parse_args()

    x, y = checkerboards(2000, np.random.default_rng(0))
    watched = x[:4]
    log_dir = tempfile.mkdtemp()
    variants = {"no callback": lambda: []}
    for n in args.num_masks:
        variants[f"SaliencyCallback N={n}"] = lambda n=n: [
            keras_rise.callbacks.SaliencyCallback(watched, log_dir=log_dir, num_masks=n)
        ]
        variants[f"DeletionInsertionCallback N={n}"] = lambda n=n: [
            keras_rise.callbacks.DeletionInsertionCallback(watched, num_masks=n)
        ]
    results = {
        name: epoch_times(x, y, make, args.epochs) for name, make in variants.items()
    }
    base = results["no callback"][1]
    print(f"{'callbacks (4 images)':<34} {'1st epoch':>9} {'epoch':>7} {'added':>7}")
    for name, (first, typical) in results.items():
        print(f"{name:<34} {first:>8.2f}s {typical:>6.2f}s {typical - base:>+6.2f}s")


if __name__ == "__main__":
    main()
