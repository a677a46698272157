"""The `keras-rise` command line.

    keras-rise explain [MODEL] IMAGE_OR_DIR... --out DIR [options]
    keras-rise export MODEL EXPORT_DIR [options]

Errors in what the user gave (paths, images, models, arguments) print one
line on stderr and exit with status 2; no partial output file is left.
"""

import argparse
import io
import pathlib
import sys

import numpy as np

_EXIT_USAGE = 2


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_rise_options(parser):
    """The RISE options every subcommand shares."""
    parser.add_argument(
        "--num-masks",
        type=_positive_int,
        default=4000,
        metavar="N",
        help="random masks per image (default: 4000)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="mask seed; equal seeds give equal maps (default: 0)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=100,
        metavar="B",
        help="masked images per forward pass (default: 100)",
    )


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-rise",
        description="Explain image classifiers with RISE saliency maps.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        help="write a heatmap overlay (PNG) and a saliency map (.npy) per image",
        description=(
            "Explain each image's prediction. MODEL is a .keras file or a SavedModel "
            "folder; without it the bundled demo model (digits on photographs) is used. "
            "Images are resized to the model input and scaled to [0, 1]."
        ),
    )
    explain.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL] IMAGE_OR_DIR",
        help="optional model, then image files or folders of images",
    )
    explain.add_argument(
        "--out",
        required=True,
        type=pathlib.Path,
        metavar="DIR",
        help="folder for the outputs (created if missing)",
    )
    _add_rise_options(explain)
    which = explain.add_mutually_exclusive_group()
    which.add_argument(
        "--class-id",
        type=int,
        metavar="K",
        help="explain class K instead of the top prediction",
    )
    which.add_argument(
        "--top-k",
        type=_positive_int,
        default=1,
        metavar="K",
        help="explain the K top classes of each image (default: 1)",
    )

    export = commands.add_parser(
        "export",
        help="write a SavedModel explainer for TF Serving",
        description=(
            "Export MODEL (a .keras file) with RISE as a SavedModel in "
            "EXPORT_DIR/<version>/, with the serving_default, explain_class and "
            "explain_image signatures."
        ),
    )
    export.add_argument("model", type=pathlib.Path, metavar="MODEL")
    export.add_argument("export_dir", type=pathlib.Path, metavar="EXPORT_DIR")
    export.add_argument(
        "--version", type=int, default=1, help="version folder (default: 1)"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing version folder"
    )
    _add_rise_options(export)
    return parser


def _export_command(args):
    from keras_rise import loading
    from keras_rise.export import export_explainer

    if args.model.is_dir():
        raise loading.LoadError(
            f"{args.model}: export needs a .keras file; a SavedModel cannot be re-exported."
        )
    model, _ = loading.load_model(args.model)
    path = export_explainer(
        model,
        args.export_dir,
        version=args.version,
        overwrite=args.overwrite,
        num_masks=args.num_masks,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    print(
        f"wrote a SavedModel with signatures serving_default, explain_class and "
        f"explain_image to {path}"
    )


def _split_model(paths):
    """Returns `(model_path or None, image paths)`."""
    from keras_rise import loading

    if loading.is_model_path(paths[0]):
        if len(paths) == 1:
            raise loading.LoadError(
                "give at least one image or folder after the model."
            )
        return paths[0], paths[1:]
    return None, paths


def _explain_command(args):
    import keras

    from keras_rise import demo, loading, visualize
    from keras_rise.explainer import RiseExplainer

    model_path, image_paths = _split_model(args.paths)
    files = loading.find_images(image_paths)
    model, input_shape = loading.load_model(model_path or demo.demo_model_path())
    images = [loading.load_image(path, input_shape) for path in files]

    explainer = RiseExplainer(
        model, num_masks=args.num_masks, batch_size=args.batch_size, seed=args.seed
    )
    args.out.mkdir(parents=True, exist_ok=True)
    progress = keras.utils.Progbar(len(files), unit_name="image")
    results = []
    for path, image in zip(files, images):
        scores = np.asarray(model(image[None], training=False))[0]
        if args.class_id is not None:
            classes = [args.class_id]
        else:
            classes = list(np.argsort(-scores)[: args.top_k])
        maps = explainer.explain(
            image, targets="all" if len(classes) > 1 else classes[0]
        )
        for rank, class_id in enumerate(classes):
            saliency = maps[..., class_id] if len(classes) > 1 else maps
            stem = path.stem if len(classes) == 1 else f"{path.stem}_class{class_id}"
            picture = visualize.overlay(image, saliency)
            loading.write_atomically(
                args.out / f"{stem}.png", lambda f: picture.save(f, format="PNG")
            )
            buffer = io.BytesIO()
            np.save(buffer, saliency.astype(np.float32))
            loading.write_atomically(
                args.out / f"{stem}.npy", lambda f: f.write(buffer.getvalue())
            )
            results.append(
                (path.name, rank + 1, int(class_id), float(scores[class_id]))
            )
        progress.add(1)

    print(f"{'image':<24} {'rank':>4} {'class':>5} {'score':>7}")
    for name, rank, class_id, score in results:
        print(f"{name:<24} {rank:>4} {class_id:>5} {score:>7.4f}")
    print(f"wrote {len(results)} overlays and maps to {args.out}")


def main(argv=None):
    """Entry point of the `keras-rise` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explain":
            _explain_command(args)
        elif args.command == "export":
            _export_command(args)
    except (ValueError, TypeError, OSError) as error:
        message = (
            str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        )
        print(f"keras-rise: error: {message}", file=sys.stderr)
        return _EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
