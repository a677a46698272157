"""Explain one bundled image with the bundled demo model, in Python.

Prints the predicted digit and where the saliency peaks, and writes the
heatmap overlay next to the current folder.

Usage:
    python examples/explain_image.py [--num-masks N] [--out FILE]
"""

import argparse
import json
import pathlib

import numpy as np
from PIL import Image

import keras_rise

IMAGES = pathlib.Path(__file__).resolve().parent / "images"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="digit_00.png")
    parser.add_argument("--num-masks", type=int, default=4000)
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("rise_overlay.png")
    )
    args = parser.parse_args()

    model = keras_rise.load_demo_model()
    image = np.asarray(Image.open(IMAGES / args.image).convert("RGB"), np.float32) / 255
    scores = model.predict(image[None], verbose=0)[0]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks)
    saliency = explainer.explain(image)  # the top class

    box = json.loads((IMAGES / "boxes.json").read_text())[args.image]["box"]
    peak = np.unravel_index(saliency.argmax(), saliency.shape)
    inside = box[0] <= peak[0] < box[2] and box[1] <= peak[1] < box[3]
    print(
        f"predicted digit {scores.argmax()} (score {scores.max():.3f}); "
        f"saliency peaks at {tuple(int(p) for p in peak)}, "
        f"{'inside' if inside else 'outside'} the digit's box {box}"
    )
    keras_rise.visualize.overlay(image, saliency).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
