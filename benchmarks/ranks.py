"""RISE beyond images: overhead on signals, volumes and tokens; xplique on signals.

Table 1 times `explain` against the forward floor (as `overhead.py` does) for
three small models whose input is not an image: a Conv1D classifier on
signals `(512, 3)`, a Conv3D classifier on volumes `(16, 32, 32, 1)` and a
text classifier (Embedding + Conv1D) on token ids `(256,)`, with one mask
cell per token (the default) and with runs of 8 tokens (`text/8`,
`grid_size=32`). The floor is the
model run over `num_masks` ready-made masked inputs in one compiled loop; the
floor, the floor one pass at a time (`seq floor`), `explain` with the default
estimator (`score_regression=True`) and with the paper's
(`score_regression=False`) are timed alternately in one process, and the
table gives the ratio of the best runs and the median of paired ratios.
`engine s` is `explain` of a model that costs next to nothing (the input's
mean and a softmax head), timed in the same rotation: the engine alone —
masks, masking and the estimator's sums.

Tables 2 and 3 compare keras_rise with xplique's `Rise` on the Conv1D model
(trained in a few seconds on synthetic bursts, so that its maps have
something to find): seconds per map for the same number of masks, and the
masks each method needs to reach Pearson r >= 0.95 against its own
converged map (`--reference-masks`, 32 000 by default, another seed),
interpolated in 1/N between the measured counts as `efficiency.py` does.
Table 3 also has keras_rise's `centered_scores=True` (the paper's
estimator with the mean score taken out), since dividing by the masks' sum,
as xplique does, takes the mean score out too. Two checks on the converged
maps: their r with keras_rise plain's (the
paper's estimator), and how well they rank the burst's 48 time steps above
the rest (ranking AUC, 1 = every burst step first).
xplique 2.0 pins TensorFlow <= 2.20, so these tables run in a child
process started with the Python of a virtual environment that holds
xplique (`--xplique-python`), where keras_rise is imported from this
checkout; both libraries are timed alternately in that one process.

xplique masks a time series `(T, C)` channel by channel: each channel gets
its own `grid_size`-cell grid over time (keras_rise masks all channels
alike), a batch of masks shares one random shift, and its map is `(T, C)`,
normalised by the sum of the masks rather than `N · keep_prob`. Its masks
are unseeded. The r table gives xplique's `(T, C)` map and its mean over
channels, a `(T,)` map as keras_rise gives.

`--allocator bfc` sets `TF_CPU_ALLOCATOR_USE_BFC=true`, as `overhead.py`
does (and the `keras-rise` command), for every table.

Usage:
    python benchmarks/ranks.py                  # all tables, xplique from .xq/bin/python
    python benchmarks/ranks.py --quick          # a smoke run with tiny settings
    python benchmarks/ranks.py --skip-xplique   # table 1 only
    python benchmarks/ranks.py --xplique-python /path/to/venv/bin/python
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf
from efficiency import masks_for_r
from overhead import best_time, floor_function

import keras_rise

SIGNAL = (512, 3)
VOLUME = (16, 32, 32, 1)
TOKENS = 256
VOCABULARY = 5000
CLASSES = 4
PAD_ID = 0
BURST = 48
COUNTS = (16, 32, 64, 125, 250, 500, 1000, 2000, 4000, 8000)
ROOT = pathlib.Path(__file__).resolve().parent.parent


def signal_cnn(shape=SIGNAL):
    """Three strided Conv1D blocks and a softmax head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = inputs
    for filters, width in ((32, 7), (64, 5), (128, 3)):
        x = keras.layers.Conv1D(filters, width, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


def volume_cnn(shape=VOLUME):
    """Three strided Conv3D blocks and a softmax head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv3D(filters, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


def text_cnn(length=TOKENS):
    """Embedding, a Conv1D over the tokens, max pooling, a softmax head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(VOCABULARY, 64)(inputs)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


def null_model(shape, dtype="float32"):
    """A model that costs next to nothing but reads its whole input: the
    mean of the input, then a softmax head. Explaining it times the engine
    alone (masks, masking, sums)."""
    inputs = keras.Input(shape, dtype=dtype)
    mean = keras.layers.Lambda(
        lambda x: tf.reduce_mean(tf.cast(x, "float32"), axis=list(range(1, len(shape) + 1)))[
            :, None
        ],
        output_shape=(1,),
    )(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(mean))


def bursts(count, seed, shape=SIGNAL):
    """Noise with one burst per signal: a 48-step sine whose frequency is
    the class, at a random time in a random channel.

    Returns:
        `(signals, labels, starts, channels)`: `(count, *shape)`, the
        classes, each burst's first time step and its channel.
    """
    rng = np.random.default_rng(seed)
    length, num_channels = shape
    signals = 0.3 * rng.standard_normal((count, *shape)).astype(np.float32)
    labels = rng.integers(0, CLASSES, count)
    starts = rng.integers(0, length - BURST, count)
    steps = np.arange(BURST)
    channels = []
    for signal, label, start in zip(signals, labels, starts):
        channel = rng.integers(0, num_channels)
        signal[start : start + BURST, channel] += np.sin(2 * np.pi * (label + 2) * steps / BURST)
        channels.append(channel)
    return signals, labels, starts, np.array(channels)


def trained_signal_cnn(epochs):
    model = signal_cnn()
    signals, labels, _, _ = bursts(3000, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(signals, labels, batch_size=64, epochs=epochs, verbose=0)
    test, test_labels, _, _ = bursts(500, seed=1)
    accuracy = model.evaluate(test, test_labels, verbose=0)[1]
    return model, accuracy


def masked_inputs(example, num_masks, grid_size):
    """The `num_masks` masked copies of `example` that `explain` makes, ready
    for the floor: masks times the input, or kept tokens and pad ids."""
    if example.dtype == np.int32:
        masks = keras_rise.generate_masks(num_masks, example.shape, grid_size, binary=True)
        return tf.where(masks > 0.5, tf.constant(example)[None], PAD_ID)
    masks = keras_rise.generate_masks(num_masks, example.shape[:-1], grid_size)
    return tf.constant(example)[None] * masks[..., None]


def overhead_rows(name, model, example, grid_size, num_masks, batch_size, repeats):
    """Floor, sequential floor and both estimators, timed alternately."""
    tokens = example.dtype == np.int32
    masked = masked_inputs(example, num_masks, grid_size)
    null = null_model(example.shape, example.dtype.name)
    explainers = {
        (regression, explained): keras_rise.RiseExplainer(
            explained,
            num_masks=num_masks,
            grid_size=grid_size,
            batch_size=batch_size,
            fill_value=PAD_ID if tokens else 0.0,
            score_regression=regression,
        )
        for regression in (True, False)
        for explained in (model, null)
    }
    functions = {
        "floor": floor_function(model, masked, batch_size),
        "seq_floor": floor_function(model, masked, batch_size, parallel_iterations=1),
    }
    for key, explainer in explainers.items():
        functions[key] = lambda explainer=explainer: explainer.explain(example)
    times = {key: [] for key in functions}
    for function in functions.values():
        function()  # trace and warm up
    for _ in range(repeats):
        for key, function in functions.items():
            times[key].append(best_time(function, 1))
    times = {key: np.array(values) for key, values in times.items()}
    rows = []
    for regression in (True, False):
        rows.append({
            "model": name,
            "input": "x".join(str(size) for size in example.shape),
            "score_regression": regression,
            "num_masks": num_masks,
            "floor_s": float(times["floor"].min()),
            "explain_s": float(times[regression, model].min()),
            "engine_s": float(times[regression, null].min()),
            "ratio": float(times[regression, model].min() / times["floor"].min()),
            "median_ratio": float(np.median(times[regression, model] / times["floor"])),
            "seq_ratio": float(np.median(times[regression, model] / times["seq_floor"])),
        })
    return rows


def overhead_table(signal_model, num_masks, batch_size, repeats, allocator):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, VOCABULARY, TOKENS).astype(np.int32)
    text = text_cnn()
    cases = [  # (name, model, input, grid_size)
        ("conv1d", signal_model, bursts(1, seed=2)[0][0], None),
        ("conv3d", volume_cnn(), rng.random(VOLUME, dtype=np.float32), None),
        ("text", text, tokens, None),  # one cell per token
        ("text/8", text, tokens, TOKENS // 8),  # runs of 8 tokens
    ]
    print(
        f"\nTable 1: explain against the forward floor, {num_masks} masks, "
        f"batch {batch_size}, best of {repeats} alternating runs, "
        f"{allocator} allocator"
    )
    print(
        f"{'model':>7} {'input':>12} {'regression':>10} {'floor s':>8} "
        f"{'explain s':>9} {'ratio':>6} {'median':>6} {'vs seq floor':>12} {'engine s':>8}",
        flush=True,
    )
    rows = []
    for name, model, example, grid_size in cases:
        rows_ = overhead_rows(name, model, example, grid_size, num_masks, batch_size, repeats)
        for row in rows_:
            rows.append(row)
            print(
                f"{row['model']:>7} {row['input']:>12} {str(row['score_regression']):>10} "
                f"{row['floor_s']:>8.3f} {row['explain_s']:>9.3f} {row['ratio']:>6.3f} "
                f"{row['median_ratio']:>6.3f} {row['seq_ratio']:>12.3f} {row['engine_s']:>8.3f}",
                flush=True,
            )
    return rows


# -- keras_rise against xplique, in the child process -------------------------


def correlation(maps, reference):
    """Mean Pearson r over examples."""
    return float(np.mean([
        np.corrcoef(np.ravel(map_), np.ravel(ref))[0, 1] for map_, ref in zip(maps, reference)
    ]))


def ranking_auc(saliency, important):
    """Probability that an important position outranks an unimportant one."""
    inside, outside = saliency[important], saliency[~important]
    greater = (inside[:, None] > outside[None, :]).mean()
    return greater + 0.5 * (inside[:, None] == outside[None, :]).mean()


def burst_auc(maps, starts, channels=None):
    """Mean ranking AUC of the burst's time steps in `(B, T)` maps, or with
    `channels` of its cells (its steps on its channel) in `(B, T, C)` maps."""
    aucs = []
    for index, (map_, start) in enumerate(zip(maps, starts)):
        important = np.zeros(map_.shape, bool)
        if channels is None:
            important[start : start + BURST] = True
        else:
            important[start : start + BURST, channels[index]] = True
        aucs.append(ranking_auc(map_, important))
    return float(np.mean(aucs))


# keras_rise's estimators in tables 2 and 3 (centred only in table 3); "per
# channel" masks each channel on its own, a map (T, C) as xplique's.
OURS = {
    "plain": {"score_regression": False},
    "centred": {"score_regression": False, "centered_scores": True},
    "default": {},
    "per channel": {"binary_masks": (False, True)},
}


def xplique_child(settings):
    """Runs in xplique's environment; returns the results of tables 2 and 3."""
    from xplique.attributions import Rise

    model = keras.saving.load_model(settings["model"])
    signals, _, starts, channels = bursts(settings["examples"], seed=3)
    classes = model.predict(signals, verbose=0).argmax(axis=1)
    one_hot = np.eye(CLASSES, dtype=np.float32)[classes]
    batch_size = settings["batch_size"]

    def ours(num_masks, seed, method):
        explainer = keras_rise.RiseExplainer(
            model, num_masks=num_masks, batch_size=batch_size, seed=seed, **OURS[method]
        )
        return lambda x, c: explainer.explain(x, targets=c)

    def theirs(num_masks, seed=None):
        explainer = Rise(
            model, batch_size=batch_size, nb_samples=num_masks, grid_size=7,
            preservation_probability=0.5,
        )

        # xplique's masks are unseeded: every call draws new ones.
        return lambda x, target: np.asarray(explainer.explain(x, target))

    # Table 2: seconds per map, one signal, alternating calls.
    num_masks = settings["num_masks"]
    methods = {
        "xplique": (theirs(num_masks, 0), one_hot[:1]),
        "plain": (ours(num_masks, 0, "plain"), classes[:1]),
        "default": (ours(num_masks, 0, "default"), classes[:1]),
        "per channel": (ours(num_masks, 0, "per channel"), classes[:1]),
    }
    times = {name: [] for name in methods}
    for function, target in methods.values():
        function(signals[:1], target)
    for _ in range(settings["repeats"]):
        for name, (function, target) in methods.items():
            times[name].append(best_time(lambda: function(signals[:1], target), 1))
    seconds = {name: float(np.min(values)) for name, values in times.items()}
    medians = {name: float(np.median(values)) for name, values in times.items()}

    # Table 3: r against each method's own converged map.
    def maps(method, count, seed):
        if method == "xplique":
            return theirs(count, seed)(signals, one_hot)
        return ours(count, seed, method)(signals, classes)

    curves, references = {}, {}
    for method in ("xplique", *OURS):
        references[method] = reference = maps(method, settings["reference_masks"], 12345)
        runs = {count: [maps(method, count, seed) for seed in range(settings["seeds"])]
                for count in settings["counts"]}
        curves[method] = {count: float(np.mean([correlation(m, reference) for m in maps_]))
                          for count, maps_ in runs.items()}
        if method == "xplique":  # also as a (T,) map, the mean over channels
            curves["xplique, channel mean"] = {
                count: float(np.mean([
                    correlation(m.mean(axis=-1), reference.mean(axis=-1)) for m in maps_
                ]))
                for count, maps_ in runs.items()
            }
        print(f"{method}: r by N {curves[method]}", file=sys.stderr, flush=True)
    # Do the converged maps agree with keras_rise plain's (the paper's), and
    # do they find the bursts? On `(T,)` maps, xplique's averaged over channels.
    flat = {method: np.reshape(maps_, (len(signals), SIGNAL[0], -1)).mean(axis=-1)
            for method, maps_ in references.items()}
    methods = {"xplique": "xplique", "xplique, channel mean": "xplique"}
    methods.update({method: method for method in OURS})
    agreement = {name: correlation(flat[method], flat["plain"])
                 for name, method in methods.items()}
    aucs = {name: burst_auc(flat[method], starts) for name, method in methods.items()}
    # Of the (T, C) maps, the burst's cells: its steps on its own channel.
    cell_aucs = {name: burst_auc(references[name], starts, channels)
                 for name in ("xplique", "per channel")}
    return {
        "tensorflow": tf.__version__,
        "seconds": seconds,
        "medians": medians,
        "curves": curves,
        "agreement": agreement,
        "burst_auc": aucs,
        "burst_cell_auc": cell_aucs,
        "shapes": {"xplique": list(references["xplique"].shape[1:]),
                   "keras_rise": list(references["plain"].shape[1:])},
    }


def xplique_tables(python, signal_model, args):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "signal_cnn.keras")
        signal_model.save(path)
        settings = {
            "model": path,
            "num_masks": args.num_masks,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "examples": args.examples,
            "seeds": args.seeds,
            "counts": list(args.counts),
            "reference_masks": args.reference_masks,
        }
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        process = subprocess.run(
            [python, __file__, "--xplique-child", json.dumps(settings)],
            capture_output=True, text=True, env=environment,
        )
    if process.returncode:
        sys.exit(f"the xplique child failed:\n{process.stderr[-4000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    seconds = result["seconds"]
    print(
        f"\nTable 2: seconds per map, Conv1D on {SIGNAL}, {args.num_masks} masks, "
        f"batch {args.batch_size}, grid 7, keep 0.5, best of {args.repeats} "
        f"alternating calls, {args.allocator} allocator (TensorFlow {result['tensorflow']})"
    )
    print(f"{'method':>34} {'s/map':>7} {'median':>7} {'vs xplique':>10}")
    for name, label in LABELS.items():
        if name in seconds:
            print(f"{label:>34} {seconds[name]:>7.3f} {result['medians'][name]:>7.3f} "
                  f"{seconds['xplique'] / seconds[name]:>9.2f}x")
    print(
        f"\nTable 3: masks for Pearson r >= 0.95 against the method's own "
        f"{args.reference_masks}-mask map (mean over {args.examples} signals, "
        f"{args.seeds} seeds; maps {result['shapes']})"
    )
    counts = [str(count) for count in args.counts]
    print(f"{'method':>34} {'masks':>6} {'vs plain':>8} {'burst':>6} {'cells':>6}  "
          + " ".join(f"{c:>6}" for c in counts))
    for name, curve in result["curves"].items():
        cells = result["burst_cell_auc"].get(name)
        cells = "" if cells is None else f"{cells:.3f}"
        print(f"{LABELS[name]:>34} {needed_masks(curve):>6} "
              f"{result['agreement'][name]:>8.3f} {result['burst_auc'][name]:>6.3f} "
              f"{cells:>6}  " + " ".join(f"{curve[c]:>6.3f}" for c in counts))
    print("(r by number of masks; of the converged maps, channels averaged: `vs plain` "
          "their r with keras_rise plain's,\n `burst` the ranking AUC of the burst's "
          "time steps; of the (T, C) maps, `cells` that of the burst's steps on its "
          "channel)")
    return result


def needed_masks(curve, target=0.95):
    """`masks_for_r` of a curve `{count: r}` read from JSON, as text."""
    curve = {int(count): (r,) for count, r in curve.items()}
    counts = sorted(curve)
    if curve[counts[0]][0] >= target:
        return f"≤{counts[0]}"
    needed = masks_for_r(curve, target)
    return f"{needed:.0f}" if needed else f">{counts[-1]}"


LABELS = {
    "xplique": "xplique Rise, (T, C) map",
    "xplique, channel mean": "xplique Rise, channel mean",
    "plain": "keras_rise score_regression=False",
    "centred": "keras_rise centered_scores=True",
    "default": "keras_rise default",
    "per channel": "keras_rise per channel, (T, C) map",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--examples", type=int, default=8, help="signals in table 3")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per count in table 3")
    parser.add_argument("--counts", type=int, nargs="+", default=COUNTS)
    parser.add_argument("--reference-masks", type=int, default=32000)
    parser.add_argument(
        "--xplique-python",
        default=os.environ.get("XPLIQUE_PYTHON", str(ROOT / ".xq" / "bin" / "python")),
        help="a Python with xplique installed (default: $XPLIQUE_PYTHON or .xq/bin/python)",
    )
    parser.add_argument(
        "--allocator",
        choices=["default", "bfc"],
        default="default",
        help="TensorFlow's CPU allocator (bfc: TF_CPU_ALLOCATOR_USE_BFC=true)",
    )
    parser.add_argument("--skip-xplique", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke run")
    parser.add_argument("--xplique-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.xplique_child:
        print(json.dumps(xplique_child(json.loads(args.xplique_child))))
        return
    # Read when TensorFlow makes its CPU allocator, at the first op: now. The
    # xplique child inherits it.
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = str(args.allocator == "bfc").lower()
    if args.quick:
        args.num_masks, args.repeats, args.epochs = 200, 2, 6
        args.examples, args.seeds = 2, 1
        args.counts, args.reference_masks = (32, 125, 500), 2000

    signal_model, accuracy = trained_signal_cnn(args.epochs)
    print(f"Conv1D on synthetic bursts: test accuracy {accuracy:.3f}")
    if not args.skip_overhead:
        overhead_table(
            signal_model, args.num_masks, args.batch_size, args.repeats, args.allocator
        )
    if not args.skip_xplique:
        if not os.path.exists(args.xplique_python):
            sys.exit(f"no Python at --xplique-python={args.xplique_python}; "
                     "make one with `python3 -m venv .xq && .xq/bin/pip install xplique .`")
        xplique_tables(args.xplique_python, signal_model, args)


if __name__ == "__main__":
    main()
