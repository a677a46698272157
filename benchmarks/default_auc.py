"""Deletion and insertion AUC of the default map against plain RISE, paired.

The demo model explains the eight bundled images with the same seeds and
mask counts, once with the default (`score_regression=True`) and once with
the paper's estimator (`score_regression=False`); the table gives the mean
AUCs and the paired difference, each with its standard error over seeds.

Usage:
    python benchmarks/default_auc.py [--num-masks 500 1000 4000] [--seeds 6]
"""

import argparse

import numpy as np
from faithfulness import bundled_images

import keras_rise
from keras_rise import metrics


def aucs(model, images, classes, num_masks, seeds, score_regression):
    """Deletion and insertion AUC, each `(seeds, images)`."""
    deletion, insertion = [], []
    for seed in seeds:
        explainer = keras_rise.RiseExplainer(
            model, num_masks=num_masks, seed=seed, score_regression=score_regression
        )
        maps = explainer.explain(images, classes)
        deletion.append(metrics.deletion(model, images, maps, classes).auc)
        insertion.append(metrics.insertion(model, images, maps, classes).auc)
    return np.array(deletion), np.array(insertion)


def mean_and_error(values):
    """Mean over everything, and the standard error of the per-seed means."""
    per_seed = values.mean(axis=1)
    return values.mean(), per_seed.std(ddof=1) / np.sqrt(len(per_seed))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, nargs="+", default=[500, 1000, 4000])
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    model = keras_rise.load_demo_model()
    images, _, _ = bundled_images()
    classes = model.predict(images, verbose=0).argmax(axis=1)
    seeds = range(10, 10 + args.seeds)
    print(f"{'N':>5}  {'metric':<10}{'plain':>16}{'default':>16}{'default - plain':>20}")
    for num_masks in args.num_masks:
        plain = aucs(model, images, classes, num_masks, seeds, False)
        default = aucs(model, images, classes, num_masks, seeds, True)
        for index, name in enumerate(("deletion", "insertion")):
            cells = [
                mean_and_error(values)
                for values in (plain[index], default[index], default[index] - plain[index])
            ]
            print(
                f"{num_masks:>5}  {name:<10}"
                + "".join(f"{mean:>+10.4f} ±{error:.4f}" for mean, error in cells),
                flush=True,
            )


if __name__ == "__main__":
    main()
