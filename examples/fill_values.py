"""How the fill value changes the question RISE answers.

RISE hides parts of the image and watches the score. What a hidden pixel
becomes (`RiseExplainer(model, fill_value=...)`, masked = image · mask +
fill · (1 − mask)) decides what "hidden" means:

- `0.0`, the default (black for images in [0, 1]): "what if this region
  were black, or absent?"
- the dataset's mean colour, one value per channel (an array of shape
  `(channels,)`, broadcast over every pixel): "what if this region were
  average?" Here it is the mean red, green and blue of the eight bundled
  images, which come from the model's test distribution; for your own
  model, take the per-channel mean of its training images.
- `"blur"`: a Gaussian blur of the image itself (11 pixels, sigma 5, the
  insertion metric's start image): "what if this region lost its detail but
  kept its colours?"

A fill is in the model's input units: a model of pixels in 0..255 needs
`fill_value=127.5` for mid-grey, and for a model of standardised inputs,
`(x − mean) / std`, the default 0 is already the mean colour.

The script explains two bundled images with the bundled demo model under
each fill and writes one picture: a row per image with the photo, then the
heatmap overlay for each fill. Under each overlay, `all filled` is the
model's score for the explained digit when every pixel takes the fill (the
score the map's regions are measured against) and `map` the map's range;
each overlay is scaled to its own range. The top row shows one random mask
and the first image under it with each fill.

Usage:
    python examples/fill_values.py [--images digit_01.png digit_06.png]
        [--num-masks N] [--out fill_values.png]
    (the README's figure is `--out examples/output/fill_values.png`)
"""

import argparse
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import keras_rise

HERE = pathlib.Path(__file__).resolve().parent
IMAGES = HERE / "images"
SCALE = 3  # the 64×64 images drawn 192×192
LINE_HEIGHT = 17


def _load(name):
    return np.asarray(Image.open(IMAGES / name).convert("RGB"), np.float32) / 255


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        return ImageFont.load_default()


def _tile(picture, lines, font):
    """A picture enlarged SCALE times, with two lines of caption underneath."""
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray((np.clip(picture, 0, 1) * 255).round().astype(np.uint8))
    width, height = picture.width * SCALE, picture.height * SCALE
    tile = Image.new("RGB", (width, height + 2 * LINE_HEIGHT + 4), "white")
    tile.paste(picture.resize((width, height), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(tile)
    for n, line in enumerate(lines):
        draw.text((4, height + 3 + n * LINE_HEIGHT), line, fill="black", font=font)
    return tile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["digit_01.png", "digit_06.png"])
    parser.add_argument("--num-masks", type=int, default=2000)
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("fill_values.png")
    )
    args = parser.parse_args()

    model = keras_rise.load_demo_model()  # (B, 64, 64, 3) in [0, 1] -> (B, 10)
    images = np.stack([_load(name) for name in args.images])
    bundled = np.stack([_load(path.name) for path in sorted(IMAGES.glob("*.png"))])
    mean_colour = bundled.mean(axis=(0, 1, 2))  # (3,): one value per channel
    blurred = keras_rise.metrics.gaussian_blur(images).numpy()
    # title: (fill_value, every image filled entirely, what the fill is)
    fills = {
        "fill 0 (black)": (0.0, np.zeros_like(images), ["black: 0, 0, 0"]),
        "fill = mean colour": (
            mean_colour,
            np.broadcast_to(mean_colour, images.shape),
            ["mean RGB of bundled", "images: " + " ".join(f"{c:.2f}" for c in mean_colour)],
        ),
        'fill = "blur"': ("blur", blurred, ["the image blurred:", "11 pixels, sigma 5"]),
    }

    probabilities = model.predict(images, verbose=0)
    digits = probabilities.argmax(axis=1)  # explain each image's top class
    font = _font(13)

    # The top row: one RISE mask, and the first image under it with each fill
    # (masked = image · mask + fill · (1 - mask)).
    mask = keras_rise.generate_masks(1, images.shape[1:3], seed=1)[0][..., None]
    rows = [
        [_tile(np.repeat(mask, 3, axis=-1), ["one random mask", "(white: kept)"], font)]
        + [
            _tile(images[0] * mask + filled[0] * (1 - mask), about, font)
            for _, filled, about in fills.values()
        ]
    ]

    columns = []
    for title, (fill_value, filled, _) in fills.items():
        explainer = keras_rise.RiseExplainer(
            model, num_masks=args.num_masks, fill_value=fill_value
        )
        maps = explainer.explain(images, targets=digits)
        # The model's score for each digit when every pixel takes the fill.
        baseline = model.predict(np.ascontiguousarray(filled), verbose=0)
        columns.append((maps, baseline[np.arange(len(images)), digits]))
        print(f"{title}: map ranges " + ", ".join(f"{m.min():.2f}-{m.max():.2f}" for m in maps))

    for i, name in enumerate(args.images):
        row = [
            _tile(images[i], [name, f"digit {digits[i]}, p = {probabilities[i].max():.2f}"], font)
        ]
        for maps, baseline in columns:
            low, high = maps[i].min(), maps[i].max()
            # A map with no contrast (every mask gives the same score) is drawn
            # flat; scaled to its own min and max it would show rounding noise.
            flat = high - low < 1e-3
            picture = keras_rise.visualize.overlay(
                images[i], np.zeros_like(maps[i]) if flat else maps[i]
            )
            caption = [
                f"all filled: p({digits[i]}) = {baseline[i]:.2f}",
                f"map {low:.2f} to {high:.2f}" + (" (flat)" if flat else ""),
            ]
            row.append(_tile(picture, caption, font))
        rows.append(row)

    # Compose: column titles, then the rows.
    tile_width, tile_height = rows[0][0].size
    header = 24
    titles = ["photo", *fills]
    figure = Image.new(
        "RGB", (tile_width * len(titles), header + tile_height * len(rows)), "white"
    )
    draw = ImageDraw.Draw(figure)
    for column, title in enumerate(titles):
        draw.text((column * tile_width + 4, 4), title, fill="black", font=_font(15))
    for r, row in enumerate(rows):
        for column, tile in enumerate(row):
            figure.paste(tile, (column * tile_width, header + r * tile_height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
