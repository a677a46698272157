"""What the training callbacks add to an epoch.

Trains the model of `examples/training_callbacks.py` (2000 images of 32×32,
batch 64) with `SaliencyCallback` or `DeletionInsertionCallback` watching 4
images, and times each callback's own work at every epoch end (explaining,
scoring, writing), apart from the epoch's training. The callback's time is
the cost it adds; on these noisy machines it is a far steadier number than a
difference of whole epoch times (training epochs alone vary 0.8–2 s here).
The first epoch end, which traces the compiled loops, is reported apart;
later ones are the median.

Usage:
    python benchmarks/callback_cost.py [--epochs 5] [--num-masks 500 1000]
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


class Timed(keras.callbacks.Callback):
    """Runs `inner` and records the training and callback seconds per epoch."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.training, self.callback = [], []

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        trained = time.perf_counter()
        self.inner.on_epoch_end(epoch, logs)
        self.training.append(trained - self._began)
        self.callback.append(time.perf_counter() - trained)

    def on_train_end(self, logs=None):
        self.inner.on_train_end(logs)


def timings(x, y, callback, epochs):
    keras.utils.set_random_seed(0)
    model = build_model()
    timed = Timed(callback)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[timed])
    return (
        statistics.median(timed.training[1:]),
        timed.callback[0],
        statistics.median(timed.callback[1:]),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-masks", type=int, nargs="+", default=[500, 1000])
    args = parser.parse_args()

    x, y = checkerboards(2000, np.random.default_rng(0))
    watched = x[:4]
    log_dir = tempfile.mkdtemp()
    print(
        f"{'callback (4 images of 32x32)':<34} {'training':>9} {'1st end':>8} "
        f"{'per epoch':>9} {'share':>6}"
    )
    for n in args.num_masks:
        for callback in (
            keras_rise.callbacks.SaliencyCallback(watched, log_dir=log_dir, num_masks=n),
            keras_rise.callbacks.DeletionInsertionCallback(watched, num_masks=n),
        ):
            training, first, typical = timings(x, y, callback, args.epochs)
            name = f"{type(callback).__name__} N={n}"
            print(
                f"{name:<34} {training:>8.2f}s {first:>7.2f}s {typical:>8.2f}s "
                f"{typical / (training + typical):>6.0%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
