"""Peak memory of one explanation of a Keras application, in a fresh process.

    python benchmarks/memory.py --size 512 [--batch-size 20] [--num-masks 100]

Builds `keras.applications.<model>(weights=None)` (nothing is downloaded),
explains one random image and prints the process's peak resident memory
(`ru_maxrss`) and the seconds `explain` took. Run one configuration per
process: the peak is the process's whole life. The CPU allocator is BFC,
as the `keras-rise` command uses.
"""

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: the explainer's own"
    )
    parser.add_argument("--num-masks", type=int, default=100)
    args = parser.parse_args()

    import keras
    import numpy as np

    import keras_rise

    model = getattr(keras.applications, args.model)(
        input_shape=(args.size, args.size, 3), weights=None
    )
    image = np.random.default_rng(0).random((args.size, args.size, 3), np.float32)
    explainer = keras_rise.RiseExplainer(
        model, num_masks=args.num_masks, batch_size=args.batch_size
    )
    per_pass = explainer.config.batch_size_for((args.size, args.size))
    start = time.perf_counter()
    explainer.explain(image)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.model} {args.size}x{args.size}: {per_pass} masked inputs per pass, "
        f"{args.num_masks} masks, peak {peak:.0f} MiB, explain {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
