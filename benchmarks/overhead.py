"""Explainer overhead against the model's own forward-pass floor.

The floor is the same model run over `num_masks` ready-made masked images in
batches of `batch_size`, inside one compiled loop: the cost no RISE can avoid.
`explain` must also make the masks, apply them and accumulate the map, so
`explain / floor` is the overhead of our engine. The two are timed
alternately in one process, since these machines are noisy: the table gives
the ratio of the best runs and the median of the ratios of paired runs.

The floor's loop lets TensorFlow start one forward pass before the last
has finished (`tf.while_loop`'s default of 10 parallel iterations), which
fills the cores while a pass runs its small single-threaded ops. The
explainer lets two steps overlap only when a masked batch is small (up to
`RiseEngine.OVERLAP_BYTES`, 8 MiB: 64x64 but not 224x224 at batch 100)
and otherwise runs one at a time, so its memory stays low; `seq floor` is
the floor run one pass at a time, to show how much of the gap that is.

With `--memory`, peak resident memory is measured for two mask counts in
separate processes; it must not grow with `num_masks`.

TensorFlow's default CPU allocator returns large buffers to the system,
so every step's masked batch (60 MB at 224×224) faults in fresh pages, and
so do the model's activations; `--allocator bfc` runs with
`TF_CPU_ALLOCATOR_USE_BFC=true` (what the `keras-rise` command uses), which
keeps them.

Usage:
    python benchmarks/overhead.py                      # ratio table
    python benchmarks/overhead.py --allocator bfc      # with the BFC allocator
    python benchmarks/overhead.py --sizes 224 --num-masks 4000
    python benchmarks/overhead.py --memory             # N=1000 vs N=16000
    python benchmarks/overhead.py --no-score-regression  # the paper's estimator
    python benchmarks/overhead.py --mask-sampling independent  # the regression alone
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_rise


def small_cnn(size, num_classes=10):
    """A small image classifier: three strided convolutions and a head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def floor_function(model, masked, batch_size, parallel_iterations=10):
    """Compiled loop of forward passes over ready-made masked batches.

    `parallel_iterations=1` runs one pass at a time, as the explainer does.
    """
    num_batches = masked.shape[0] // batch_size

    def body(step, total):
        batch = masked[step * batch_size : (step + 1) * batch_size]
        return step + 1, total + tf.reduce_sum(model(batch, training=False))

    @tf.function
    def run():
        return tf.while_loop(
            lambda step, total: step < num_batches,
            body,
            (tf.constant(0), tf.constant(0.0)),
            parallel_iterations=parallel_iterations,
        )[1]

    return run


def best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def overhead_row(size, num_masks, batch_size, repeats, options):
    model = small_cnn(size)
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    explainer = keras_rise.RiseExplainer(
        model,
        num_masks=num_masks,
        batch_size=batch_size,
        score_regression=options["score_regression"],
        mask_sampling=options["mask_sampling"],
    )
    masks = keras_rise.generate_masks(num_masks, (size, size))
    masked = tf.constant(image)[None] * masks[..., None]
    functions = {
        "floor": floor_function(model, masked, batch_size),
        "seq_floor": floor_function(model, masked, batch_size, parallel_iterations=1),
        "explain": lambda: explainer.explain(image),
    }
    times = {name: [] for name in functions}
    for function in functions.values():
        function()  # trace and warm up
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(best_time(function, 1))
    times = {name: np.array(values) for name, values in times.items()}
    per_step = explainer._engine.step_layout(tf.constant(image[None]))[0]
    return {
        "size": size,
        "num_masks": num_masks,
        "batch_size": batch_size,
        "masks_per_pass": per_step,
        "floor_s": times["floor"].min(),
        "explain_s": times["explain"].min(),
        "ratio": times["explain"].min() / times["floor"].min(),
        "median_ratio": float(np.median(times["explain"] / times["floor"])),
        "seq_ratio": float(np.median(times["explain"] / times["seq_floor"])),
    }


def peak_memory_child(size, num_masks, batch_size, options):
    """Runs one explanation and prints peak resident memory in MiB."""
    model = small_cnn(size)
    image = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    explainer = keras_rise.RiseExplainer(
        model,
        num_masks=num_masks,
        batch_size=batch_size,
        score_regression=options["score_regression"],
        mask_sampling=options["mask_sampling"],
    )
    explainer.explain(image)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"num_masks": num_masks, "peak_mib": peak_mib}))


def memory_table(size, counts, batch_size, repeats, options):
    """Peak memory per mask count, the median of `repeats` fresh processes."""
    peaks = {}
    for _ in range(repeats):
        for num_masks in counts:  # interleaved, so drift hits all counts alike
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    str(num_masks),
                    "--sizes",
                    str(size),
                    "--batch-size",
                    str(batch_size),
                ]
                + ["--score-regression" if options["score_regression"] else
                   "--no-score-regression"]
                + ["--allocator", options["allocator"]]
                + ["--mask-sampling", options["mask_sampling"]],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            peak = json.loads(output.strip().splitlines()[-1])["peak_mib"]
            peaks.setdefault(num_masks, []).append(peak)
    base = float(np.median(peaks[counts[0]]))
    print(
        f"\nPeak memory at {size}x{size}, batch_size={batch_size}, "
        f"{options['allocator']} allocator, median of {repeats} processes"
    )
    print(f"{'num_masks':>10} {'peak MiB':>10} {'runs MiB':>22} {'growth':>8}")
    for num_masks in counts:
        median = float(np.median(peaks[num_masks]))
        runs = " ".join(f"{peak:.0f}" for peak in peaks[num_masks])
        print(f"{num_masks:>10} {median:>10.0f} {runs:>22} {median / base - 1:>+8.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64])
    parser.add_argument("--num-masks", type=int, nargs="+", default=[1000])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-counts", type=int, nargs="+", default=[1000, 16000])
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--score-regression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="explain with score_regression (default) or the paper's estimator",
    )
    parser.add_argument(
        "--mask-sampling",
        choices=["auto", "independent", "stratified", "orthogonal"],
        default="auto",
        help="the explainer's mask_sampling (auto: orthogonal with the regression); "
        "the explainer's steps tile its runs, so it may run fewer masks per forward "
        "pass than --batch-size (e.g. 64 of 100), while the floor runs --batch-size",
    )
    parser.add_argument(
        "--allocator",
        choices=["default", "bfc"],
        default="default",
        help="TensorFlow's CPU allocator (bfc: TF_CPU_ALLOCATOR_USE_BFC=true)",
    )
    args = parser.parse_args()
    # Read when TensorFlow makes its CPU allocator, at the first op: now.
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = str(args.allocator == "bfc").lower()
    options = {
        "score_regression": args.score_regression,
        "allocator": args.allocator,
        "mask_sampling": args.mask_sampling,
    }

    if args.memory_child:
        peak_memory_child(args.sizes[0], args.memory_child, args.batch_size, options)
        return
    if args.memory:
        memory_table(
            args.sizes[0], args.memory_counts, args.batch_size, args.repeats, options
        )
        return
    print(
        f"{'size':>6} {'masks':>6} {'batch':>6} {'per pass':>9} {'floor s':>9} "
        f"{'explain s':>10} {'ratio':>7} {'median':>7} {'vs seq floor':>13}"
    )
    for size in args.sizes:
        for num_masks in args.num_masks:
            row = overhead_row(
                size, num_masks, args.batch_size, args.repeats, options
            )
            print(
                f"{row['size']:>6} {row['num_masks']:>6} {row['batch_size']:>6} "
                f"{row['masks_per_pass']:>9} {row['floor_s']:>9.3f} {row['explain_s']:>10.3f} "
                f"{row['ratio']:>7.3f} {row['median_ratio']:>7.3f} "
                f"{row['seq_ratio']:>13.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
