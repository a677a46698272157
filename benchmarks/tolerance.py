"""How far from its limit a map is when `tolerance` stops the loop.

For each model and image, a 40 000-mask map of the default estimator is the
reference; then `explain(image, tolerance=T)` runs over many seeds, and for
each stop this reports the masks used and the map's actual relative error
(the RMS difference from the reference over the map's spread across pixels,
the quantity the tolerance bounds by estimate) divided by `T`.

    cd benchmarks && python tolerance.py --models demo digits --seeds 12

Prints one line per tolerance: masks used (median, mean) and actual / T
(mean, the share of stops beyond 1, 1.5 and 2, the worst).
"""

import argparse
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import benchmark_models  # noqa: E402
import keras_rise  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "digits"],
                        choices=benchmark_models.MODELS)
    parser.add_argument("--num-images", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.3, 0.2, 0.15])
    parser.add_argument("--reference-masks", type=int, default=40000)
    parser.add_argument("--fer-weights", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # a tolerance missed on some seed is expected

    cases = []
    for name in args.models:
        subject = benchmark_models.load(name, args.num_images, args.fer_weights)
        if subject is None:
            continue
        for image, class_id in zip(subject.images, subject.classes):
            reference = keras_rise.RiseExplainer(
                subject.model, num_masks=args.reference_masks, seed=10**6
            ).explain(image, int(class_id), verbose=0)
            cases.append((subject.model, image, int(class_id), reference))
    print(f"{len(cases)} images of {', '.join(args.models)}, {args.seeds} seeds each")
    for tolerance in args.tolerances:
        used, ratios = [], []
        for model, image, class_id, reference in cases:
            for seed in range(args.seeds):
                explainer = keras_rise.RiseExplainer(model, num_masks=8192, seed=seed)
                saliency = explainer.explain(image, class_id, tolerance=tolerance, verbose=0)
                used.append(int(explainer.last_num_masks))
                error = np.sqrt(np.mean((saliency - reference) ** 2)) / saliency.std()
                ratios.append(error / tolerance)
        ratios = np.array(ratios)
        print(
            f"tolerance {tolerance}: masks median {np.median(used):.0f} mean "
            f"{np.mean(used):.0f}; actual / tolerance mean {ratios.mean():.2f}, "
            f"> 1: {np.mean(ratios > 1):.2f}, > 1.5: {np.mean(ratios > 1.5):.2f}, "
            f"> 2: {np.mean(ratios > 2):.2f}, "
            f"worst {ratios.max():.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
