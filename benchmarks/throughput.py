"""Images per second: batches of images, every class at once, XLA, precision.

On the bundled demo model (64×64) with N masks per image, timed in one
process with the variants alternating (best of `--repeats`):

1. images/second for B = 1, 8 and 32 images per call, and each against its
   forward floor (the model over N·B ready-made masked images in batches
   of `batch_size`, one compiled loop): B images share every mask batch;
2. `targets="all"` (every class) against one class per image, B = 8;
3. `jit_compile=True` and `dtype_policy="mixed_float16"` /
   `"mixed_bfloat16"` against the defaults, B = 8.

With `--precisions`, the third part is instead a table of every precision
with and without XLA, one image per call: `explain`'s masks per second
against its own floor — the model under the same dtype policy, its forward
pass compiled the same way, over the same ready-made masked images — and,
with `--xplique`, xplique's `Rise` in float32 with the same batch size. On a
GPU it first compares a map made there with the same map made on the CPU.

With `--scaling N1 N2 ...`, `explain` alone (`mixed_float16` with XLA, the
default and `score_regression=False`) is timed at each mask count, which
separates a fixed cost per call from the cost per mask, next to its floor
at the same batch size; `--profile DIR` traces one more call of the default
and of the floor and prints where the GPU's time went and how long each XLA
launch held the host. `--steps` times each estimator and mask sampling
against the floor with ten and with two loop steps in flight, and with
`--in-flight K ...` the default with `K` steps launched ahead.

Usage:
    python benchmarks/throughput.py [--num-masks 1000] [--repeats 3]
    python benchmarks/throughput.py --model mobilenet --size 224 --batch-size 256 \
        --num-masks 4096 --counts 1 8 --precisions [--xla-only] [--xplique]
        (MobileNetV2 with random weights, e.g. on a GPU)
    python benchmarks/throughput.py --model mobilenet --size 224 --batch-size 256 \
        --scaling 1024 4096 16384
    python benchmarks/throughput.py --model null --size 224 --batch-size 256 \
        --scaling 1024 8192
        (a near-free model: the engine's own work per mask)
    python benchmarks/throughput.py --model mobilenet --size 224 --batch-size 256 \
        --num-masks 4096 --steps [--in-flight 2 8]
        (each estimator and mask sampling, and the floor with 10 and 2 steps in flight)
"""

import argparse
import collections
import pathlib

import keras
import numpy as np
import tensorflow as tf
from overhead import best_time, floor_function

import keras_rise
from keras_rise import precision

PRECISIONS = {
    "float32": (None, False),
    "float32, XLA": (None, True),
    "mixed_float16": ("mixed_float16", False),
    "mixed_float16, XLA": ("mixed_float16", True),
    "mixed_bfloat16": ("mixed_bfloat16", False),
    "mixed_bfloat16, XLA": ("mixed_bfloat16", True),
}


def build_model(name, size):
    if name == "demo":
        return keras_rise.load_demo_model()
    keras.utils.set_random_seed(0)
    if name == "null":
        # A near-free model: with it, `explain` times the engine's own work
        # (masks, masking, sums), and the floor is next to nothing.
        inputs = keras.Input((size, size, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(pooled))
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


def forward_for(model, policy, jit_compile):
    """The model's forward pass under `policy`, compiled with XLA or not."""
    if policy is not None:
        model = precision.PolicyClone(model, policy).model

    def forward(batch):
        return tf.cast(model(batch, training=False), tf.float32)

    if jit_compile:
        forward = tf.function(forward, jit_compile=True)
    return lambda batch, training=False: forward(batch)


def device_agreement(num_masks=512, batch_size=128):
    """Prints how maps made on the GPU, with and without XLA, compare with the CPU's.

    On the demo model, whose trained scores vary with the masks: a model with
    random weights scores every masked image alike, and its map is rounding noise.
    """
    model = keras_rise.load_demo_model()
    image = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    with tf.device("/CPU:0"):
        on_cpu = keras_rise.RiseExplainer(
            model, num_masks=num_masks, batch_size=batch_size
        ).explain(image, verbose=0)
    for label, jit_compile in (("", False), (" with XLA", True)):
        on_gpu = keras_rise.RiseExplainer(
            model, num_masks=num_masks, batch_size=batch_size, jit_compile=jit_compile
        ).explain(image, verbose=0)
        print(
            f"demo model's map on the GPU{label} vs the CPU, {num_masks} masks: r "
            f"{np.corrcoef(on_gpu.ravel(), on_cpu.ravel())[0, 1]:.7f}, largest difference "
            f"{np.abs(on_gpu - on_cpu).max():.2g} on a map of scale {np.abs(on_cpu).max():.2g}"
        )


def precision_table(model, image, n, batch_size, repeats, with_xplique, xla_only=False):
    """Masks per second of `explain` and of its floor, per precision and XLA."""
    size = image.shape[0]
    masks = keras_rise.generate_masks(n, (size, size))
    masked = tf.constant(image)[None] * masks[..., None]
    print(f"\none image per call, N={n}: masks per second")
    print(f"{'precision':<22} {'explain':>9} {'floor':>9} {'floor/explain':>14}")
    for label, (policy, jit_compile) in PRECISIONS.items():
        if xla_only and not jit_compile:
            continue
        explainer = keras_rise.RiseExplainer(
            model, num_masks=n, batch_size=batch_size,
            jit_compile=jit_compile, dtype_policy=policy,
        )
        floor = floor_function(forward_for(model, policy, jit_compile), masked, batch_size)
        best = alternate(
            {"explain": lambda: explainer.explain(image, verbose=0), "floor": floor}, repeats
        )
        print(
            f"{label:<22} {n / best['explain']:>9.0f} {n / best['floor']:>9.0f} "
            f"{best['floor'] / best['explain']:>14.3f}", flush=True
        )
    if with_xplique:
        import setuptools  # noqa: F401  (gives Python 3.12 the distutils that xplique's
        # tensorflow_probability imports)
        from xplique.attributions import Rise

        rise = Rise(
            model, batch_size=batch_size, nb_samples=n, grid_size=7,
            preservation_probability=0.5,
        )
        target = np.eye(model.output_shape[-1], dtype=np.float32)[:1]
        seconds = alternate({"xplique": lambda: rise.explain(image[None], target)}, repeats)
        print(f"{'xplique Rise, float32':<22} {n / seconds['xplique']:>9.0f}")


def read_trace(logdir):
    """The last trace written under `logdir` by `tf.profiler`, an `XSpace`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(pathlib.Path(logdir).rglob("*.xplane.pb"))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    return space


def top_ops(space, lines=4, per_line=8):
    """Prints where a profiled call spent its time: on each device plane of
    the trace `space` (the GPU's streams and op lines, else the host), the
    busiest lines and their longest events by total duration."""
    planes = [p for p in space.planes if p.name.startswith("/device:GPU")]
    for plane in planes:
        busy, span = _busy_time(plane)
        print(f"\n{plane.name}: kernels and copies busy {busy / 1e9:.2f} ms of the "
              f"{span / 1e9:.2f} ms from the first to the last (the rest: the device idle)")
    planes = planes or [p for p in space.planes if p.name.startswith("/host")]
    for plane in planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        busiest = []
        for line in plane.lines:
            totals = collections.Counter()
            for event in line.events:
                totals[names.get(event.metadata_id, "?")] += event.duration_ps
            busiest.append((sum(totals.values()), line.name, totals))
        print(f"\nprofile {plane.name}")
        for total, name, totals in sorted(busiest, key=lambda row: -row[0])[:lines]:
            print(f"  {name}: {total / 1e9:.2f} ms in all")
            for event, ps in totals.most_common(per_line):
                print(f"    {ps / 1e9:9.3f} ms  {event[:90]}")


def launches(space):
    """Prints, for each XLA program in the trace `space` of a call, how long the host
    spent in each launch of it, next to the GPU's busy time per launch.

    A launch that holds the host about as long as the device takes for its
    work means the host queues nothing meanwhile: steps that depend on one
    another then run host and device one after the other.
    """
    held = collections.defaultdict(list)
    busy = 0
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        if plane.name.startswith("/device:GPU"):
            busy += _busy_time(plane)[0]
        if not plane.name.startswith("/host"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if name.endswith(":XLA GPU module"):
                    held[name.split(":")[0]].append(event.duration_ps)
    count = sum(len(times) for times in held.values())
    if not count:
        return
    print(f"\nXLA launches: {count}; the GPU busy {busy / 1e9 / count:.2f} ms per launch")
    for name, times in held.items():
        print(f"  {name[:60]}: {len(times)} launches, the host held "
              f"{np.mean(times) / 1e9:.2f} ms each (shortest {min(times) / 1e9:.2f})")


def _busy_time(plane):
    """`(busy, span)` in picoseconds of a GPU plane's stream lines: the union
    of their events' intervals, and the first event's start to the last's end."""
    intervals = sorted(
        (line.timestamp_ns * 1000 + event.offset_ps,
         line.timestamp_ns * 1000 + event.offset_ps + event.duration_ps)
        for line in plane.lines if "Stream" in line.name for event in line.events
    )
    if not intervals:
        return 0, 0
    busy, (begin, end) = 0, intervals[0]
    for start, stop in intervals[1:]:
        if start > end:
            busy, begin, end = busy + end - begin, start, stop
        else:
            end = max(end, stop)
    return busy + end - begin, intervals[-1][1] - intervals[0][0]


def _xla_explains(model, image, n, batch_size, variants):
    """`({label: one explain call}, masked)`: an explainer (mixed_float16,
    XLA, `n` masks) per `{label: options}`, and the image under `n` masks,
    ready for the floor."""
    functions = {}
    for label, options in variants.items():
        options = dict(options)
        in_flight = options.pop("in_flight", None)
        explainer = keras_rise.RiseExplainer(
            model, num_masks=n, batch_size=batch_size, jit_compile=True,
            dtype_policy="mixed_float16", **options,
        )
        if in_flight is not None:
            explainer.engine.STEPS_IN_FLIGHT_XLA = in_flight
        functions[label] = lambda explainer=explainer: explainer.explain(image, verbose=0)
    masks = keras_rise.generate_masks(n, image.shape[:2])
    return functions, tf.constant(image)[None] * masks[..., None]


def scaling_table(model, image, counts, batch_size, repeats, paper=True, profile=None):
    """Milliseconds per `explain` call at each mask count (mixed_float16, XLA),
    and the floor: the model's forward passes (same policy, compiled the same
    way, same batch size) over as many ready-made masked images."""
    print(f"\nexplain alone, mixed_float16 with XLA, {batch_size} masks per step: "
          "milliseconds per call")
    print(f"{'masks':>7} {'default':>9} {'paper':>9} {'floor':>9}")
    forward = forward_for(model, "mixed_float16", True)
    variants = {"default": {}, "paper": {"score_regression": False}}
    if not paper:
        del variants["paper"]
    for n in counts:
        functions, masked = _xla_explains(model, image, n, batch_size, variants)
        functions["floor"] = floor_function(forward, masked, batch_size)
        times = alternate(functions, repeats)
        del masked
        shown = {label: f"{1000 * times[label]:.1f}" if label in times else "-"
                 for label in ("default", "paper", "floor")}
        print(f"{n:>7} {shown['default']:>9} {shown['paper']:>9} {shown['floor']:>9}",
              flush=True)
    if profile:
        for label in ("default", "floor"):
            print(f"\nprofile of one call, {label}:")
            tf.profiler.experimental.start(str(profile / label))
            functions[label]()
            tf.profiler.experimental.stop()
            space = read_trace(profile / label)
            top_ops(space)
            launches(space)


def step_table(model, image, n, batch_size, repeats, in_flight=()):
    """Milliseconds per `explain` call (mixed_float16, XLA) for each estimator
    and mask sampling, the default with each number of steps in `in_flight`
    (`RiseEngine.STEPS_IN_FLIGHT_XLA`), and the floor with ten and with two
    steps in flight."""
    variants = {
        "default": {},
        'mask_sampling="independent"': {"mask_sampling": "independent"},
        "score_regression=False": {"score_regression": False},
    }
    for steps in in_flight:
        variants[f"default, {steps} steps in flight"] = {"in_flight": steps}
    functions, masked = _xla_explains(model, image, n, batch_size, variants)
    forward = forward_for(model, "mixed_float16", True)
    functions["floor, 10 steps in flight"] = floor_function(forward, masked, batch_size)
    functions["floor, 2 steps in flight"] = floor_function(
        forward, masked, batch_size, parallel_iterations=2
    )
    times = alternate(functions, repeats)
    print(f"\n{n} masks, {batch_size} per step, mixed_float16 with XLA: milliseconds per call")
    for label, seconds in times.items():
        print(f"{label:<30} {1000 * seconds:8.1f} {n / seconds:9.0f} masks/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", choices=["demo", "mobilenet", "null"], default="demo")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precisions", action="store_true",
                        help="a table of every precision, with and without XLA")
    parser.add_argument("--xla-only", action="store_true",
                        help="with --precisions: only the rows compiled with XLA")
    parser.add_argument("--xplique", action="store_true",
                        help="with --precisions: xplique's Rise too")
    parser.add_argument("--scaling", type=int, nargs="+",
                        help="only time explain (and its floor) at these mask counts")
    parser.add_argument("--no-paper", action="store_true",
                        help="with --scaling: leave out score_regression=False")
    parser.add_argument("--steps", action="store_true",
                        help="time each estimator and mask sampling against the floor "
                        "with ten and with two steps in flight, at --num-masks")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[],
                        help="with --steps: the default also with this many steps "
                        "launched ahead (RiseEngine.STEPS_IN_FLIGHT_XLA)")
    parser.add_argument("--profile", type=pathlib.Path, default=None,
                        help="with --scaling: trace one more call of the default and of "
                        "the floor at the last count into this folder; print the GPU's "
                        "busy time, the busiest ops and how long each XLA launch held "
                        "the host")
    args = parser.parse_args()

    model = build_model(args.model, args.size)
    size = model.input_shape[1]
    rng = np.random.default_rng(0)
    images = rng.random((max(args.counts), size, size, 3), dtype=np.float32)
    if args.steps:
        step_table(
            model, images[0], args.num_masks, args.batch_size, args.repeats, args.in_flight
        )
        return
    if args.scaling:
        scaling_table(
            model, images[0], args.scaling, args.batch_size, args.repeats, not args.no_paper,
            args.profile,
        )
        return
    n = args.num_masks

    def explainer(**options):
        return keras_rise.RiseExplainer(
            model, num_masks=n, batch_size=args.batch_size, **options
        )

    default = explainer()
    for gpu in tf.config.list_physical_devices("GPU"):
        print(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
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
            {"explain": lambda: default.explain(batch, verbose=0), "floor": floor},
            args.repeats,
        )
        del masked
        print(
            f"{count:>16} {count / best['explain']:>9.2f} "
            f"{n * count / best['explain']:>9.0f} "
            f"{best['floor'] / best['explain']:>9.3f}"
        )

    if args.precisions:
        if tf.config.list_physical_devices("GPU"):
            device_agreement()
        precision_table(
            model, images[0], n, args.batch_size, args.repeats, args.xplique, args.xla_only
        )
        return

    batch = images[:8]
    variants = {
        "one class (default)": lambda: default.explain(batch, verbose=0),
        'targets="all"': lambda: default.explain(batch, targets="all", verbose=0),
    }
    for label, options in {
        "jit_compile=True": {"jit_compile": True},
        "mixed_float16": {"dtype_policy": "mixed_float16"},
        "mixed_bfloat16": {"dtype_policy": "mixed_bfloat16"},
    }.items():
        other = explainer(**options)
        variants[label] = lambda other=other: other.explain(batch, verbose=0)
    best = alternate(variants, args.repeats)
    base = best["one class (default)"]
    print("\n8 images per call: time relative to the default")
    for label, seconds in best.items():
        print(f"{label:<22} {seconds:>7.3f}s {seconds / base:>7.3f}")


if __name__ == "__main__":
    main()
