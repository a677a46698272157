"""Images per second: batches of images, every class at once, XLA, precision.

On the bundled demo model (64×64) with N masks per image, timed in one
process with the variants alternating (best of `--repeats`):

1. images/second for B = 1, 8 and 32 images per call, and each against its
   forward floor (the model over N·B ready-made masked images in batches
   of `batch_size`, one compiled loop): B images share every mask batch;
2. `targets="all"` (every class) against one class per image, B = 8;
3. `jit_compile=True` and `dtype_policy="mixed_float16"` /
   `"mixed_bfloat16"` against the defaults, B = 8.

Usage:
    python benchmarks/throughput.py [--num-masks 1000] [--repeats 3]
    python benchmarks/throughput.py --model mobilenet --size 224 --batch-size 256
        (MobileNetV2 with random weights, e.g. on a GPU)
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from overhead import best_time, floor_function

import keras_rise


def build_model(name, size):
    if name == "demo":
        return keras_rise.load_demo_model()
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), weights=None, classes=1000
    )


def alternate(functions, repeats):
    """Best time of each function, running them in turn `repeats` times."""
    for function in functions.values():
        function()  # trace and warm up
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(best_time(function, 1))
    return {name: min(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=["demo", "mobilenet"], default="demo")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    model = build_model(args.model, args.size)
    size = model.input_shape[1]
    rng = np.random.default_rng(0)
    images = rng.random((max(args.counts), size, size, 3), dtype=np.float32)
    n = args.num_masks

    def explainer(**options):
        return keras_rise.RiseExplainer(
            model, num_masks=n, batch_size=args.batch_size, **options
        )

    default = explainer()
    print(f"{args.model} {size}x{size}, N={n}, batch_size={args.batch_size}")
    print(f"{'images per call':>16} {'images/s':>9} {'masks/s':>9} {'vs floor':>9}")
    for count in args.counts:
        batch = images[:count]
        masks = keras_rise.generate_masks(n, (size, size))
        masked = tf.reshape(
            tf.constant(batch)[None] * masks[:, None, :, :, None],
            [n * count, size, size, 3],
        )
        floor = floor_function(model, masked, args.batch_size)
        best = alternate(
            {"explain": lambda: default.explain(batch), "floor": floor}, args.repeats
        )
        del masked
        print(
            f"{count:>16} {count / best['explain']:>9.2f} "
            f"{n * count / best['explain']:>9.0f} "
            f"{best['floor'] / best['explain']:>9.3f}"
        )

    batch = images[:8]
    variants = {
        "one class (default)": lambda: default.explain(batch),
        'targets="all"': lambda: default.explain(batch, targets="all"),
    }
    for label, options in {
        "jit_compile=True": {"jit_compile": True},
        "mixed_float16": {"dtype_policy": "mixed_float16"},
        "mixed_bfloat16": {"dtype_policy": "mixed_bfloat16"},
    }.items():
        other = explainer(**options)
        variants[label] = lambda other=other: other.explain(batch)
    best = alternate(variants, args.repeats)
    base = best["one class (default)"]
    print("\n8 images per call: time relative to the default")
    for label, seconds in best.items():
        print(f"{label:<22} {seconds:>7.3f}s {seconds / base:>7.3f}")


if __name__ == "__main__":
    main()
