"""How many masks does each sampling variant need for the same map?

On the bundled demo model and images, each image's top class is explained
with a 32 000-mask plain-RISE reference (seed 12345). Every variant —
plain RISE, centred scores, complementary masks, stratified grids and their
combinations — is then run with N = 125 … 8000 masks (other seeds), and
compared with the reference: Pearson r and Spearman rank correlation, the
mean over images and seeds. The table gives, per variant, the fewest masks
reaching r ≥ 0.95 and rank correlation ≥ 0.95, and the deletion and
insertion AUC at N = 500, 1000, 2000 and 4000.

The reference is itself noisy: the script also prints how well a second
32 000-mask plain map (another seed) agrees with it, which caps what any
variant can reach.

Usage:
    python benchmarks/efficiency.py [--seeds 2] [--json efficiency.json]
"""

import argparse
import json
import pathlib

import numpy as np
from faithfulness import bundled_images

import keras_rise
from keras_rise import metrics

VARIANTS = {
    "plain": {},
    "centred": {"centered_scores": True},
    "complementary": {"complementary_masks": True},
    "stratified": {"mask_sampling": "stratified"},
    "centred + stratified": {"centered_scores": True, "mask_sampling": "stratified"},
    "complementary + stratified": {
        "complementary_masks": True,
        "mask_sampling": "stratified",
    },
}
COUNTS = (125, 250, 500, 1000, 2000, 4000, 8000)
AUC_COUNTS = (500, 1000, 2000, 4000)


def correlations(maps, reference):
    """Mean Pearson r and Spearman rank correlation over images."""
    pearson, spearman = [], []
    for map_, ref in zip(maps, reference):
        a, b = map_.ravel(), ref.ravel()
        pearson.append(np.corrcoef(a, b)[0, 1])
        ranks_a, ranks_b = a.argsort().argsort(), b.argsort().argsort()
        spearman.append(np.corrcoef(ranks_a, ranks_b)[0, 1])
    return float(np.mean(pearson)), float(np.mean(spearman))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args()

    model = keras_rise.load_demo_model()
    images, _, _ = bundled_images()
    classes = model.predict(images, verbose=0).argmax(axis=1)

    def explain(num_masks, seed, **options):
        explainer = keras_rise.RiseExplainer(
            model, num_masks=num_masks, seed=seed, **options
        )
        return explainer.explain(images, classes)

    reference = explain(32000, 12345)
    ceiling = correlations(explain(32000, 54321), reference)
    print(
        f"a second 32000-mask plain map vs the reference: r={ceiling[0]:.4f}, "
        f"rank={ceiling[1]:.4f}"
    )

    rows = []
    for name, options in VARIANTS.items():
        curve, aucs = {}, {}
        for count in COUNTS:
            runs = [explain(count, seed, **options) for seed in range(args.seeds)]
            scores = np.array([correlations(maps, reference) for maps in runs])
            curve[count] = scores.mean(axis=0).tolist()
            if count in AUC_COUNTS:
                deleted = [
                    metrics.deletion(model, images, m, classes).auc for m in runs
                ]
                inserted = [
                    metrics.insertion(model, images, m, classes).auc for m in runs
                ]
                aucs[count] = (float(np.mean(deleted)), float(np.mean(inserted)))
        needed = next(
            (n for n in COUNTS if curve[n][0] >= 0.95 and curve[n][1] >= 0.95), None
        )
        rows.append({"variant": name, "needed": needed, "curve": curve, "auc": aucs})
        print(
            f"{name}: needs {needed}; r/rank by N: "
            + ", ".join(f"{n}: {r:.3f}/{s:.3f}" for n, (r, s) in curve.items())
        )

    plain_needed = rows[0]["needed"]
    print()
    header = "variant                     masks for r,rank≥0.95  vs plain"
    header += "".join(f"  del/ins@{n}" for n in AUC_COUNTS)
    print(header)
    for row in rows:
        needed = row["needed"]
        ratio = f"{needed / plain_needed:.3f}" if needed and plain_needed else "-"
        cells = "".join(
            f"  {row['auc'][n][0]:.4f}/{row['auc'][n][1]:.4f}" for n in AUC_COUNTS
        )
        print(f"{row['variant']:<28}{str(needed or '>8000'):>20}  {ratio:>8}{cells}")
    if args.json:
        args.json.write_text(
            json.dumps({"ceiling": ceiling, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
