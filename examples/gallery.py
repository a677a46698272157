"""The README's two gallery figures, from what `keras-rise explain` writes.

1. `overlays.png`: the eight bundled photos above the overlays that the
   README's first command writes for them (`keras-rise explain
   examples/images --out DIR`), each digit's box from
   `examples/images/boxes.json` drawn in white.
2. `detections.png`: the overlays that `keras-rise explain --detections
   examples/detections --out DIR` writes, one per detection of the bundled
   detector, with its box, class and score.

The command runs here with its defaults (`--num-masks` is passed on, for a
quicker check); the figures only put its pictures side by side, enlarged.

Usage:
    python examples/gallery.py [--num-masks N] [--out-dir DIR]
    (the README's figures are `--out-dir examples/output`)
"""

import argparse
import contextlib
import io
import json
import pathlib
import tempfile

from PIL import Image

from keras_rise import cli, visualize

EXAMPLES = pathlib.Path(__file__).resolve().parent


def _explain(arguments):
    """Runs `keras-rise explain ARGUMENTS`, its table kept off the screen."""
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(["explain", *map(str, arguments)])
    if status:
        raise SystemExit(f"keras-rise explain {' '.join(map(str, arguments))} failed")


def _enlarged(picture, scale):
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def _grid(pictures, columns):
    """Pictures of one size in rows of `columns`."""
    width, height = pictures[0].size
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for index, picture in enumerate(pictures):
        sheet.paste(picture, ((index % columns) * width, (index // columns) * height))
    return sheet


def overlays_figure(num_masks, scale=3):
    """The photos (top row) and the command's overlays with boxes (below)."""
    images = EXAMPLES / "images"
    boxes = json.loads((images / "boxes.json").read_text())
    names = sorted(boxes)
    with tempfile.TemporaryDirectory() as out:
        options = [] if num_masks is None else ["--num-masks", num_masks]
        _explain([images, "--out", out, *options])
        photos, overlays = [], []
        for name in names:
            photos.append(_enlarged(Image.open(images / name).convert("RGB"), scale))
            top, left, bottom, right = (v * scale for v in boxes[name]["box"])
            overlay = _enlarged(Image.open(pathlib.Path(out) / f"{pathlib.Path(name).stem}.png"),
                                scale)
            overlays.append(visualize.draw_boxes(overlay, [(left, top, right, bottom)], width=2))
    return _grid(photos + overlays, len(names))


def detections_figure(num_masks, scale=2):
    """The command's overlay of every detection, four to a row."""
    with tempfile.TemporaryDirectory() as out:
        options = [] if num_masks is None else ["--num-masks", num_masks]
        _explain([EXAMPLES / "detections", "--detections", "--out", out, *options])
        pictures = [
            _enlarged(Image.open(path).convert("RGB"), scale)
            for path in sorted(pathlib.Path(out).glob("*_det*.png"))
        ]
    return _grid(pictures, 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=None,
                        help="masks per map (default: the command's own)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=pathlib.Path("."))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in (("overlays.png", overlays_figure), ("detections.png", detections_figure)):
        picture = figure(args.num_masks)
        picture.save(args.out_dir / name)
        print(f"wrote {args.out_dir / name} ({picture.width}x{picture.height})")


if __name__ == "__main__":
    main()
