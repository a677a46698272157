"""RISE on tabular models: how faithful each mask family and fill is.

A table's columns are unrelated, so the paper's grid of blended cells, which
shares each cell's credit with its neighbours, is the wrong family for them;
`binary_masks` (one cell per feature, kept or filled whole) is what keras_rise
uses by default for a vector that the model's Dense layers read. This script
measures both against two references, for rows of the test split:

- *occlusion*: the drop of the explained score when one feature at a time is
  replaced by its training mean (Spearman's rank correlation with the map);
- *truth*: on a synthetic regression `y = x·w` with a few non-zero weights,
  fitted by a one-layer model, the map's Pearson correlation with `w_i · (x_i
  - mean_i)`, each feature's exact contribution against the fill.

Models (trained here in seconds, 2 CPU cores; a `Normalization` layer adapted
inside each model reads raw columns): scikit-learn's breast cancer (30
features, 2 classes), wine (13 features, 3 classes) and diabetes (10 features,
a regressor), and the synthetic regression (12 features, 2 of them used).

    python benchmarks/tables.py             # about 30 s
    python benchmarks/tables.py --fill zero # masked features 0 in raw units
    python benchmarks/tables.py --rows 8 --num-masks 500   # quicker
"""

import argparse
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import keras_rise  # noqa: E402


def _synthetic(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal([5.0] * 12, [2.0] * 12, (600, 12)).astype(np.float32)
    weights = np.zeros(12, np.float32)
    weights[3], weights[7] = 2.0, -3.0
    return x, x @ weights, weights


def _datasets():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    for name, loader, regression in (
        ("breast cancer", load_breast_cancer, False),
        ("wine", load_wine, False),
        ("diabetes", load_diabetes, True),
    ):
        x, y = loader(return_X_y=True)
        yield name, x.astype(np.float32), y.astype(np.float32), regression, None
    x, y, weights = _synthetic()
    yield "synthetic y = 2 x3 - 3 x7", x, y.astype(np.float32), True, weights


def _model(x, y, regression, linear, seed):
    keras.utils.set_random_seed(seed)
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    inputs = keras.Input((x.shape[1],))
    hidden = normalization(inputs)
    if not linear:
        hidden = keras.layers.Dense(32, activation="relu")(hidden)
    if regression:
        model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
        model.compile(keras.optimizers.Adam(0.01), "mse")
        model.fit(x, (y - y.mean()) / y.std(), epochs=60, verbose=0)
    else:
        classes = int(y.max()) + 1
        model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=60, verbose=0)
    return model


def _occlusion(model, rows, targets, fill, regression):
    """Score drop when each feature alone takes its fill, `(rows, features)`."""
    drops = []
    for row, target in zip(rows, targets):
        occluded = np.repeat(row[None], len(row), axis=0)
        occluded[np.arange(len(row)), np.arange(len(row))] = fill
        outputs = model.predict(np.concatenate([row[None], occluded]), verbose=0)
        column = outputs[:, 0] if regression else outputs[:, target]
        drops.append(column[0] - column[1:])
    return np.array(drops)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=24, help="test rows explained")
    parser.add_argument("--num-masks", type=int, default=2000)
    parser.add_argument(
        "--fill", choices=("mean", "zero"), default="mean",
        help="what masked features take: the training mean, or 0 in raw units",
    )
    args = parser.parse_args(argv)
    print(f"{args.rows} test rows, {args.num_masks} masks, fill: {args.fill}")
    print("| model | masks | vs occlusion (Spearman) | vs truth (Pearson) |")
    print("|---|---|---:|---:|")
    for name, x, y, regression, weights in _datasets():
        order = np.random.default_rng(1).permutation(len(x))
        train, test = order[: len(x) * 3 // 4], order[len(x) * 3 // 4:]
        model = _model(x[train], y[train], regression, weights is not None, seed=0)
        fill = x[train].mean(axis=0) if args.fill == "mean" else np.zeros(x.shape[1], np.float32)
        rows = x[test][: args.rows]
        targets = None if not regression else keras_rise.scores.OutputScore()
        for label, binary in (("one cell per feature (default)", None), ("7-cell grid", False)):
            explainer = keras_rise.RiseExplainer(
                model, num_masks=args.num_masks, fill_value=fill, binary_masks=binary
            )
            result = explainer.explain_result(rows, targets=targets, verbose=0)
            maps = np.asarray(result.saliency)
            classes = (
                np.zeros(len(rows), int) if regression else np.asarray(result.class_ids)
            )
            drops = _occlusion(model, rows, classes, fill, regression)
            with warnings.catch_warnings():
                # A saturated row whose occlusions all score alike has no
                # rank correlation: it is left out of the mean.
                warnings.simplefilter("ignore", stats.ConstantInputWarning)
                occlusion = np.nanmean(
                    [stats.spearmanr(m, d)[0] for m, d in zip(maps, drops)]
                )
            truth = ""
            if weights is not None:
                effects = weights * (rows - fill)
                truth = f"{np.mean([np.corrcoef(m, e)[0, 1] for m, e in zip(maps, effects)]):.3f}"
            print(f"| {name} | {label} | {occlusion:.3f} | {truth} |")


if __name__ == "__main__":
    main()
