"""Maps per second on 1 vs 2 replicas (tf.distribute) and 1 vs 2 Beam workers.

Replicas: the demo model explains 8 images with `N` masks each, on one
device or mirrored over 2 logical CPU devices, every configuration in a
fresh process (logical devices and thread pools are fixed when TensorFlow
starts). Two pairs of runs: with one compute thread per replica (1 replica
on one core against 2 replicas on two: how replicas scale), and with TF's
default thread pools (one replica already uses both cores: what replicas add
on this machine).

Beam: `python -m keras_rise.beam` over 64 images (the 8 samples, copied) on
DirectRunner with 1 and 2 worker processes (multi_processing); wall time
includes starting the workers and loading TensorFlow in each.

On 2 cores any speedup is capped at 2×.

Usage:
    python benchmarks/scaling.py [--num-masks 1000] [--skip-beam]
"""

import argparse
import contextlib
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def replica_child(replicas, threads, num_masks, repeats):
    """Times explaining 8 images in this process; prints maps/second."""
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # Replicas run their steps as concurrent ops: each needs its own
        # inter-op thread, or the replicas take turns on one.
        tf.config.threading.set_inter_op_parallelism_threads(threads * replicas)
    strategy = None
    if replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
        )
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{index}" for index in range(replicas)]
        )
    import keras_rise

    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = keras_rise.load_demo_model()
    explainer = keras_rise.RiseExplainer(model, num_masks=num_masks, strategy=strategy)
    images = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)
    explainer.explain(images)  # trace and warm up
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        explainer.explain(images)
        best = min(best, time.perf_counter() - began)
    print(json.dumps({"maps_per_second": len(images) / best}))


def run_replicas(replicas, threads, num_masks, repeats):
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(replicas),
            str(threads),
            "--num-masks",
            str(num_masks),
            "--repeats",
            str(repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])["maps_per_second"]


def run_beam(workers, num_masks, images_dir):
    output = pathlib.Path(tempfile.mkdtemp())
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_rise.beam",
            "--model",
            str(ROOT / "saved_models" / "digits_on_photos.keras"),
            "--input",
            str(images_dir / "*.png"),
            "--output",
            str(output),
            "--num-masks",
            str(num_masks),
            f"--direct_num_workers={workers}",
            "--direct_running_mode=multi_processing",
        ],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - began
    shutil.rmtree(output)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-beam", action="store_true")
    parser.add_argument("--child", nargs=2, type=int, default=None)
    args = parser.parse_args()
    if args.child:
        replica_child(*args.child, args.num_masks, args.repeats)
        return

    print(f"demo model, 8 images of 64x64, N={args.num_masks}, best of {args.repeats}")
    print(f"{'configuration':<40} {'maps/s':>8} {'speedup':>8}")
    for threads, label in ((1, "1 thread per replica"), (0, "default thread pools")):
        one = run_replicas(1, threads, args.num_masks, args.repeats)
        two = run_replicas(2, threads, args.num_masks, args.repeats)
        print(f"{'1 replica, ' + label:<40} {one:>8.2f} {'':>8}")
        print(f"{'2 replicas, ' + label:<40} {two:>8.2f} {two / one:>7.2f}x")

    if args.skip_beam:
        return
    images_dir = pathlib.Path(tempfile.mkdtemp())
    samples = sorted((ROOT / "examples" / "images").glob("*.png"))
    for copy in range(8):
        for sample in samples:
            shutil.copy(sample, images_dir / f"{copy}_{sample.name}")
    times = {
        workers: run_beam(workers, args.num_masks, images_dir) for workers in (1, 2)
    }
    shutil.rmtree(images_dir)
    print(
        f"\nBeam DirectRunner, 64 images, N={args.num_masks} (wall time, start-up included)"
    )
    for workers, seconds in times.items():
        print(
            f"{workers} worker{'s' if workers > 1 else ' '} {seconds:>7.1f}s "
            f"{64 / seconds:>7.2f} maps/s {times[1] / seconds:>6.2f}x"
        )


if __name__ == "__main__":
    main()
