"""The `keras-rise` command line.

    keras-rise explain [MODEL] IMAGE_OR_DIR... --out DIR [options]
    keras-rise evaluate [MODEL] IMAGE_OR_DIR... [--boxes FILE] [--json] [options]
    keras-rise export MODEL EXPORT_DIR [options]

Errors in what the user gave (paths, images, models, arguments) print one
line on stderr and exit with status 2; no partial output file is left.

On the CPU the command runs TensorFlow with its BFC allocator for host memory
(`TF_CPU_ALLOCATOR_USE_BFC=true`, unless that variable is already set): RISE
makes a masked batch of the same size at every step, and the default
allocator hands such large buffers back to the system and faults fresh
pages in at every step — about a third of the model's own time at 224×224
on our 2-core machines.
"""

import argparse
import collections
import functools
import contextlib
import os
import pathlib
import re
import sys
import warnings

import numpy as np

import keras_rise
from keras_rise import _startup

_EXIT_USAGE = 2


def _int_at_least(minimum, what):
    """An argparse type: an int >= `minimum`, else "must be `what`"."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _probability(text):
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _positive_float(text):
    """`--tolerance`: a finite float > 0, as the API takes."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _grid_size(text):
    """`7`, or one number per masked axis: `4,7,7`."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or one per axis (e.g. 4,7,7), got {text}"
        ) from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return values[0] if len(values) == 1 else values


_YES, _NO = ("yes", "true", "1", "on"), ("no", "false", "0", "off")


def _axis_flags(text):
    """`--binary-masks-per-axis`: one yes/no per masked axis, as `no,yes`."""
    flags = []
    for part in text.lower().split(","):
        if part.strip() not in _YES + _NO:
            raise argparse.ArgumentTypeError(
                f"give one yes or no per masked axis, e.g. no,yes (the steps blended, "
                f"each channel whole), got {text}"
            )
        flags.append(part.strip() in _YES)
    return tuple(flags)


def _region(text):
    """`--region`: 2, 4 or 6 ints, starts then stops."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 4, 6):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the box's starts then stops as ints, top,left,bottom,right "
            "(start,stop for steps)"
        )
    return values


def _fill_value(text):
    if text.lower().endswith(".npy"):
        # An array broadcastable to one input: a table's baseline row, a
        # per-channel colour. Its shape is checked against the model's input.
        from keras_rise import _checks

        try:
            value = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise argparse.ArgumentTypeError(
                f"could not read {text}: {_checks.error_summary(error)}"
            ) from None
        if not np.issubdtype(value.dtype, np.number):
            raise argparse.ArgumentTypeError(
                f"{text} holds {value.dtype} values; a fill takes numbers"
            )
        return value.astype(np.float32)
    try:
        value = float(text)
    except ValueError:
        # mean, blur, or a fill word for texts (checked with the model).
        from keras_rise import _checks

        try:
            return _checks.fill_word(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a number, mean, blur, a .npy file or (for texts) one word, "
                f"got {text!r}"
            ) from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def _substrate(text):
    """`evaluate --substrate`: blur, or a finite number."""
    if text == "blur":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be blur or a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def add_rise_options(parser, tolerance=True):
    """The RISE options every subcommand shares, read from `RiseConfig`; the
    Beam pipeline's command takes them too. `explainer_args` reads them.

    Each option's flag, default, choices and help come from its field: an
    int or float option takes a value (`--num-masks N`), a bool one is a
    switch (`--score-regression` / `--no-score-regression`).
    """
    from keras_rise.config import RiseConfig

    checks = {
        "keep_prob": _probability,
        "seed": int,
        "fill_value": _fill_value,
        "grid_size": _grid_size,
    }
    for field in RiseConfig.fields():
        if not field.metadata["flag"]:
            continue
        flag = "--" + field.name.replace("_", "-")
        default, choices = field.default, field.metadata["choices"]
        shown = (
            f" (default: {default})"
            if default is not None and not field.metadata["shows_default"]
            else ""
        )
        help_text = field.metadata["help"]
        target = parser
        if field.name == "binary_masks":  # a switch, or one yes/no per masked axis
            target = parser.add_mutually_exclusive_group()
            target.add_argument(
                flag + "-per-axis",
                dest=field.name,
                type=_axis_flags,
                default=default,
                metavar="YES_OR_NO,...",
                help="--binary-masks for some masked axes only: one yes or no per "
                "axis, e.g. no,yes for a map per step and channel of multivariate "
                "series (the steps blended, each channel kept or replaced whole)",
            )
        if isinstance(default, bool) or field.name == "binary_masks":
            # A switch; `None` (decided by the model) when neither is given.
            target.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text + (" (default)" if default else ""),
            )
        elif choices:
            parser.add_argument(flag, choices=choices, default=default, help=help_text)
        else:
            parser.add_argument(
                flag,
                type=checks.get(field.name, _positive_int),
                default=default,
                metavar=field.name.upper(),
                help=help_text + shown,
            )
    if tolerance:
        parser.add_argument(
            "--tolerance",
            type=_positive_float,
            default=None,
            metavar="T",
            help=(
                "stop adding masks once the map's relative standard error is below "
                "T; --num-masks is then the ceiling"
            ),
        )


def add_input_options(parser):
    """Adds `--input-range LOW HIGH` and `--preprocess MODE` to a parser.

    How image files become model inputs (`keras_rise.Preprocessing`); the
    Beam pipeline's command takes them too. `preprocessing_of` reads them.
    """
    from keras_rise._checks import PREPROCESSING_MODES

    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--input-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help=(
            "the range the model takes pixels in: [0, 255] maps linearly to "
            "[LOW, HIGH] (default: 0 1; 0 255 for a model of uint8 images or "
            "one that starts with Rescaling(1/255) or a Normalization of such pixels)"
        ),
    )
    which.add_argument(
        "--preprocess",
        choices=PREPROCESSING_MODES,
        help=(
            "the keras.applications preprocessing the model expects: tf ([-1, 1]: "
            "MobileNet, Inception), torch (DenseNet), caffe (VGG, ResNet50)"
        ),
    )


def preprocessing_of(args, model):
    """The `keras_rise.Preprocessing` that parsed `add_input_options` give
    for `model`: without either flag, `Preprocessing.for_model` ([0, 1], or
    [0, 255] for a model that scales its pixels itself)."""
    from keras_rise.preprocessing import Preprocessing, rescales_pixels_itself

    # A model that scales its pixels itself takes them as they are, [0, 255]:
    # any other scaling is refused (field tests: --preprocess tf, and
    # --input-range 0 1 for MobileNetV3's Rescaling(1/127.5, -1), gave such
    # models other images, a wrong class, exit 0).
    if args.preprocess:
        given = ("--preprocess", args.preprocess)
    elif args.input_range is not None and tuple(args.input_range) != (0.0, 255.0):
        given = ("--input-range", " ".join(f"{value:g}" for value in args.input_range))
    else:
        given = None
    if given and rescales_pixels_itself(model):
        raise ValueError(
            f"{given[0]} {given[1]}: this model scales its pixels itself (its first layer "
            "is a Rescaling or Normalization of pixels in [0, 255]), so it takes them as "
            f"they are; leave out {given[0]}."
        )
    if args.preprocess:
        return Preprocessing(mode=args.preprocess)
    if args.input_range is None:
        return Preprocessing.for_model(model)
    try:
        return Preprocessing(input_range=args.input_range)
    except ValueError as error:
        raise ValueError(str(error).replace("`input_range`", "--input-range")) from None


def add_model_options(parser):
    """Adds `--model-output NAME` (which output of a multi-output model is
    explained) and `--custom-objects MODULE` (where a Keras file's custom
    layers are defined), `keras_rise.loading.load_model`'s `model_output`
    and `custom_objects`, to a parser; the Beam pipeline's command takes
    them too."""
    parser.add_argument(
        "--model-output",
        metavar="NAME",
        help=(
            "for a model of several outputs, the one explained: a key of its dict "
            "of outputs, an output layer's name or an index into its list of "
            "outputs (a SavedModel: a key of serving_default's outputs)"
        ),
    )
    parser.add_argument(
        "--custom-objects",
        action="append",
        metavar="MODULE",
        help=(
            "a module name or .py file defining the model's custom layers, models "
            "or losses, imported before the model is loaded (repeatable)"
        ),
    )


def _add_region_option(parser):
    """`--region`, for models of one dense output (`_dense_as_classes`)."""
    parser.add_argument(
        "--region",
        type=_region,
        metavar="BOX",
        help=(
            "for a segmenter's (batch, h, w, classes) or a tagger's (batch, steps, "
            "classes) output: a class's mean score over this box of output "
            "positions, top,left,bottom,right (start,stop for steps; default: the "
            "whole output) is what is explained"
        ),
    )


def _add_labels_option(parser):
    parser.add_argument(
        "--labels",
        type=pathlib.Path,
        metavar="FILE",
        help=(
            "class names for tables and captions: a text file with one name a line, "
            "or JSON (a list, or {id: name})"
        ),
    )


def _labels(args):
    from keras_rise import loading

    return loading.load_labels(args.labels) if args.labels else {}


def _check_labels(args, labels, num_classes):
    """A labels file must name each of the model's classes, no more."""
    if labels and sorted(labels) != list(range(num_classes)):
        raise ValueError(
            f"{args.labels}: names classes {min(labels)} to {max(labels)} "
            f"({len(labels)} labels); the model has {num_classes} classes."
        )


def _check_class_id(class_id, num_classes):
    if not 0 <= class_id < num_classes:
        hint = (
            " The model's one output unit is not a sigmoid, so it is read as one "
            "score, class 0; if it is a binary classifier's logit, its map is class "
            "1's, and class 0's is its negative."
            if num_classes == 1 else ""
        )
        raise ValueError(
            f"--class-id {class_id} is outside the model's {num_classes} classes "
            f"(0 to {num_classes - 1}).{hint}"
        )


def _output_stems(files, out):
    """Each input's output name below --out, without suffix; refuses inputs
    whose outputs would overwrite each other or an input.

    Outputs are named after the input's stem (`x.png` and `x.npy` for
    `a/x.jpg`). Where inputs of several folders share a stem (class folders
    `cat/0001.png`, `dog/0001.png`), the folders below their common one are
    mirrored instead (`cat/0001.png`, `cat/0001.npy`). An input in the --out
    folder could be replaced by its own heatmap: refused.

    Returns:
        A dict from input path to its stem below --out (`"0001"`, `"cat/0001"`).
    """
    stems = _relative_stems(files)
    by_stem = {}
    for path in files:
        other = by_stem.setdefault(stems[path], path)
        if other != path:
            raise ValueError(
                f"{other} and {path} would write the same outputs ({stems[path]}.png, "
                f"{stems[path]}.npy) in --out {out}; rename one, or explain them into "
                "different --out folders."
            )
    outputs = {
        (out / f"{stem}{suffix}").resolve() for stem in by_stem for suffix in (".png", ".npy")
    }
    for path in files:
        if path.resolve() in outputs:
            raise ValueError(
                f"--out {out} would overwrite the input {path} with an output of the "
                "same name; give another --out folder."
            )
    return stems


def _relative_stems(files):
    """Each file's stem, or, where files of several folders share one, its
    path below their common folder without suffix (`cat/0001`)."""
    stems = {path: path.stem for path in files}
    if len(set(stems.values())) < len(stems):
        # The folders' own paths: a file may be a link to another folder's.
        folders = {path: path.parent.resolve() for path in files}
        base = pathlib.Path(os.path.commonpath([str(f) for f in folders.values()]))
        stems = {
            path: (folders[path].relative_to(base) / path.stem).as_posix()
            for path in files
        }
    return stems


def _shown(path, stems):
    """An input's name in reports: its file name, or its path below the
    common folder where outputs mirror the folders."""
    return f"{stems[path]}{path.suffix}" if "/" in stems[path] else path.name


def _output_paths(args, stem, *suffixes):
    """`--out/stem.suffix` for each suffix, their folder made."""
    paths = [args.out / f"{stem}{suffix}" for suffix in suffixes]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    return paths


def _make_out(path):
    """Creates the --out folder, or says why it cannot (a file in its way is
    answered before the model loads, by `_unwritable_folder`)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"--out {path}: cannot make the folder ({error.strerror or error})."
        ) from error


MIN_SCORE = 0.5  # the lowest detection score explained, unless --min-score says


def _add_detection_options(parser):
    parser.add_argument(
        "--min-score",
        type=_probability,
        default=None,
        metavar="S",
        help=f"with --detections, the lowest detection score explained (default: {MIN_SCORE})",
    )


def _min_score(args):
    """`--min-score`, which only --detections reads: refused without it."""
    if args.min_score is None:
        return MIN_SCORE
    if not args.detections:
        raise ValueError("--min-score is for detectors: pass it with --detections.")
    return args.min_score


def explainer_args(args):
    """The `RiseExplainer` arguments the shared options give."""
    from keras_rise.config import RiseConfig

    return {
        field.name: getattr(args, field.name)
        for field in RiseConfig.fields()
        if field.metadata["flag"]
    }


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, like every other user error.

    Args:
        error_prefix: what the line starts with, before `: error:`, the
            same for a command's usage errors as for its other errors
            (default: the parser's `prog`).
    """

    def __init__(self, *args, error_prefix=None, **kwargs):
        # A flag's prefix is no flag: `--model m.keras` was taken as
        # `--model-output m.keras` (field test).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.error_prefix = error_prefix or self.prog

    def error(self, message):
        if re.search(r"unrecognized arguments:.* --model\b(?!-)", message):
            message += (
                "; the model is given first, without a flag: "
                f"{self.prog} model.keras ..."
            )
        self.exit(
            _EXIT_USAGE, f"{self.error_prefix}: error: {message} (see {self.prog} --help)\n"
        )


def _build_parser():
    from keras_rise import __version__

    parser = OneLineParser(
        prog="keras-rise",
        description=(
            "Explain Keras models' predictions on images with RISE saliency maps "
            "(classifiers, and detectors with D-RISE)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"keras-rise {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND",
        parser_class=functools.partial(OneLineParser, error_prefix="keras-rise"),
    )
    explain = commands.add_parser(
        "explain",
        help="write a heatmap overlay (PNG) and a saliency map (.npy) per image",
        description=(
            "Explain each image's prediction. MODEL is a .keras, .h5 or .hdf5 file or a "
            "SavedModel folder; without it the bundled demo model (digits on photographs) "
            "is used. Images are resized to the model input and their pixels "
            "scaled to [0, 1] (or --input-range, --preprocess); maps and overlays "
            "are written at each image's own size (--map-size input: the model's); "
            "each overlay's colours span its own map's min to max (the .npy holds "
            "the values, for one scale across maps). "
            "A model of other inputs (signals, token ids, volumes, videos) reads .npy "
            "files of model inputs, one input or a batch each, and writes a map and a "
            "picture per input; a model of strings reads .txt files, one text each, and "
            "writes a map (one value per word) and an HTML page of the coloured words."
        ),
    )
    explain.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL] IMAGE_OR_DIR",
        help="optional model, then image files or folders of images (a folder of class "
        "folders gives every image below it; where file names repeat across folders, "
        "--out mirrors the folders: cat/0001.png)",
    )
    explain.add_argument(
        "--out",
        required=True,
        type=pathlib.Path,
        metavar="DIR",
        help="folder for the outputs (created if missing)",
    )
    explain.add_argument(
        "--map-size",
        choices=("source", "input"),
        default="source",
        help="write maps and overlays at the image file's size or the model input's "
        "(default: source)",
    )
    explain.add_argument(
        "--json", action="store_true", help="print the results as JSON, not a table"
    )
    _add_labels_option(explain)
    explain.add_argument(
        "--feature-names",
        type=pathlib.Path,
        metavar="FILE",
        help=(
            "names of a table's features for its pictures (a model whose Dense "
            "layers read its .npy vectors): a text file with one name a line, or "
            "a JSON list"
        ),
    )
    _add_region_option(explain)
    add_model_options(explain)
    add_input_options(explain)
    add_rise_options(explain)
    which = explain.add_mutually_exclusive_group()
    which.add_argument(
        "--class-id",
        type=int,
        metavar="K",
        help="explain class K instead of the top prediction (a sigmoid unit's "
        "classes are 0, 1 - p, and 1, p; a one-channel segmenter's default is 1, "
        "its foreground)",
    )
    which.add_argument(
        "--top-k",
        type=_positive_int,
        default=1,
        metavar="K",
        help="explain the K top classes of each input (default: 1)",
    )
    which.add_argument(
        "--detections",
        action="store_true",
        help=(
            "MODEL is a detector (default: the bundled digit detector): explain each "
            "detection with D-RISE and draw its box on its overlay"
        ),
    )
    _add_detection_options(explain)

    evaluate = commands.add_parser(
        "evaluate",
        help="score RISE maps: deletion and insertion AUC, pointing game",
        description=(
            "Explain each image's class (--class-id, else the label of its --boxes "
            "entry, else the top predicted class) and score the map "
            "with the deletion AUC (lower is better), the insertion AUC (higher is "
            "better) and, given --boxes, the pointing game (15-pixel tolerance). "
            "MODEL is optional, as for explain."
        ),
    )
    evaluate.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL] IMAGE_OR_DIR",
        help="optional model, then image files or folders of images",
    )
    evaluate.add_argument(
        "--boxes",
        type=pathlib.Path,
        metavar="FILE",
        help=(
            "JSON of object boxes by image file name (or path below the folders, "
            "cat/0001.png, where names repeat), {name: [top, left, bottom, "
            'right]} or {name: {"box": [...], "label": K}}, in the file\'s pixels; '
            "a label (a class id, or a name of --labels) is the class explained"
        ),
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print the results as JSON, not a table"
    )
    evaluate.add_argument(
        "--substrate",
        type=_substrate,
        default="blur",
        metavar="blur|VALUE",
        help=(
            "what the insertion curve starts from: a blurred copy of the image "
            "(default), or every input value set to VALUE, in the model's input "
            "values as --fill-value (e.g. 0 for black on inputs in [0, 1])"
        ),
    )
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument(
        "--class-id", type=int, metavar="K", help="explain and score class K"
    )
    which.add_argument(
        "--detections",
        action="store_true",
        help=(
            "MODEL is a detector (default: the bundled digit detector): explain each "
            "detection and score its map by its own detection score; the pointing "
            "game asks whether the map's peak falls in the detection's box"
        ),
    )
    _add_detection_options(evaluate)
    _add_labels_option(evaluate)
    _add_region_option(evaluate)
    add_model_options(evaluate)
    add_input_options(evaluate)
    add_rise_options(evaluate)

    export = commands.add_parser(
        "export",
        help="write a SavedModel explainer for TF Serving",
        description=(
            "Export MODEL (a .keras, .h5 or .hdf5 file) with RISE as a SavedModel in "
            "EXPORT_DIR/<version>/, with the serving_default and explain_class "
            "signatures and, for an image model, explain_image, which maps an encoded "
            "image's pixels as --input-range or --preprocess say. A binary segmenter's one "
            "sigmoid channel is served as class 1, its mean probability over "
            "--region, and a regressor's one value as its saliency and score (neither "
            "has explain_class)."
        ),
    )
    export.add_argument("model", type=pathlib.Path, metavar="MODEL")
    export.add_argument("export_dir", type=pathlib.Path, metavar="EXPORT_DIR")
    export.add_argument(
        "--version", type=_non_negative_int, default=1, help="version folder (default: 1)"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing version folder"
    )
    _add_region_option(export)
    add_model_options(export)
    add_input_options(export)
    add_rise_options(export, tolerance=False)
    parser.commands = commands.choices  # each command's own parser, by name
    return parser


def _export_command(args):
    import tensorflow as tf

    from keras_rise import _checks, loading, scores
    from keras_rise.export import export_explainer

    if args.model.is_dir():
        raise loading.LoadError(
            f"{args.model}: export needs a Keras model file (.keras, .h5); a "
            "SavedModel cannot be re-exported here. In Python, wrap it, "
            "keras.Model(inputs, keras.layers.TFSMLayer(DIR)(inputs)), and pass that "
            "to keras_rise.export_explainer."
        )
    # Any one-input model: images, signals, token ids, volumes, videos.
    model, _ = loading.load_model(
        args.model,
        images_only=False,
        grid_size=args.grid_size,
        model_output=args.model_output,
        custom_objects=args.custom_objects,
    )
    try:
        detector = scores.holds_detections(model.output)
    except (AttributeError, ValueError):  # a subclassed model: told by the export
        detector = False
    if detector and args.model_output is None:
        raise ValueError(
            f"{args.model}: a detector (its outputs include \"boxes\"); keras-rise "
            "export serves a model's class scores. Export a detector's explainer in "
            "Python, one box and class per SavedModel: keras_rise.export_explainer("
            "model, EXPORT_DIR, score=keras_rise.scores.DetectionScore(box, class_id))."
        )
    outputs = getattr(model, "outputs", None) or ()
    # A binary segmenter's one sigmoid channel serves class 1 (the channel's
    # mean probability over --region), as `keras-rise explain` explains it:
    # the top class of the two over a whole output is mostly the background.
    foreground = (
        len(outputs) == 1 and len(outputs[0].shape) >= 3 and scores.is_sigmoid_output(model)
    )
    model = _dense_as_classes(args, model)
    # A regressor's one value (a linear unit, or a region's mean of a dense
    # output of one channel) is served as the value and its map, as
    # `keras-rise explain` reports it, not as the top of one class.
    outputs = getattr(model, "outputs", None) or ()
    value = len(outputs) == 1 and tuple(outputs[0].shape[1:]) == (1,)
    if args.grid_size is None and loading.grayscale_hint(model):
        shape = tuple(model.inputs[0].shape[1:])
        raise loading.LoadError(
            f"{args.model}: its {shape} inputs could be series ({shape[0]} steps of "
            f"{shape[1]} channels) or grayscale images without a channel axis; pass "
            "--grid-size 7 for series, or --grid-size 7,7 for images."
        )
    target = args.export_dir / str(args.version)
    if target.exists() and not target.is_dir():
        raise ValueError(
            f"EXPORT_DIR {args.export_dir}: a file is where version {args.version}'s "
            f"folder goes ({target}); remove it or pass another --version."
        )
    if target.exists() and any(target.iterdir()) and not args.overwrite:
        raise ValueError(
            f"{target} already holds a SavedModel; pass --overwrite or another --version."
        )
    try:
        path = export_explainer(
            model,
            args.export_dir,
            version=args.version,
            overwrite=args.overwrite,
            score=(
                scores.ClassScore(1) if foreground else scores.OutputScore() if value else None
            ),
            preprocessing=preprocessing_of(args, model),
            **explainer_args(args),
        )
    except tf.errors.OpError as error:  # e.g. a folder that cannot be made
        raise ValueError(
            f"EXPORT_DIR {args.export_dir}: the SavedModel could not be written: "
            f"{_checks.error_summary(error)}"
        ) from error
    print(f"wrote a SavedModel with signatures {', '.join(_signatures(path))} to {path}")


def _signatures(path):
    """The serving signatures of the SavedModel in folder `path`."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    names = proto.meta_graphs[0].signature_def
    return sorted(name for name in names if not name.startswith("__"))


def _command_model(args):
    """The model `explain` or `evaluate` runs: MODEL, else the bundled one
    (its detector with --detections), loaded for inputs of any kind.

    Returns:
        `(MODEL or None, the input paths, the model's path, the model, its
        input shape)`.
    """
    from keras_rise import demo, loading

    model_path, input_paths = _split_model(args.paths)
    _min_score(args)
    path = model_path or (
        demo.demo_detector_path() if args.detections else demo.demo_model_path()
    )
    model, input_shape = loading.load_model(
        path,
        images_only=False,
        grid_size=args.grid_size,
        model_output=args.model_output,
        custom_objects=args.custom_objects,
    )
    return model_path, input_paths, path, model, input_shape


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


def _dense_as_classes(args, model):
    """A model of one dense output — a segmenter's `(batch, h, w, classes)`,
    a tagger's `(batch, steps, classes)` — as a classifier of each class's
    mean score over `--region` (default: the whole output), so that the rest
    of the command (top classes, --class-id, the table) reads it as class
    scores: its maps are `keras_rise.scores.RegionScore`'s. A binary
    classifier's one sigmoid unit becomes its two classes
    (`sigmoid_as_two_classes`), and so does a binary segmenter's one sigmoid
    channel: class 1's mean probability over the region, `m`, and class 0's,
    `1 - m`; without --class-id or --top-k, such a segmenter's class 1 (its
    own channel) is explained, not the top class, which over a whole output
    is mostly the background. Other models are returned as they are."""
    import keras
    import tensorflow as tf

    from keras_rise import loading, scores

    if args.region is not None and isinstance(model, loading._SavedModelSignature):
        # A SavedModel's dense output, declared by its signature.
        model = model.as_keras_model() or model
    outputs = getattr(model, "outputs", None)
    detector = getattr(args, "detections", False)
    # A model of strings is left alone: its declared output shape may hold
    # an axis for the (batch, 1) strings that its outputs do not.
    if (
        detector or _takes_strings(model) or not outputs or len(outputs) != 1
        or len(outputs[0].shape) < 3
    ):
        if args.region is not None:
            shapes = (
                ", ".join(
                    "(" + ", ".join(["batch", *map(str, o.shape[1:])]) + ")" for o in outputs
                )
                if outputs else "not declared (not a Keras model)"
            )
            raise ValueError(
                "--region is for a Keras model of one dense output, (batch, h, w, "
                f"classes) or (batch, steps, classes); this model's outputs are {shapes}."
            )
        if detector or _takes_strings(model):
            return model
        if outputs and len(outputs) == 1 and len(outputs[0].shape) == 1:
            # A regressor's (batch,) value: one "class", the value itself, as
            # a (batch, 1) unit is (the maps are OutputScore's).
            value = keras.layers.Reshape((1,), name="value")(outputs[0])
            return keras.Model(model.inputs, value)
        return sigmoid_as_two_classes(model)
    spatial = tuple(outputs[0].shape[1:-1])
    shown = "x".join("?" if size is None else str(size) for size in spatial)
    if None in spatial:
        raise ValueError(
            f"the model's output has positions of unknown size ({shown}); explain it "
            "in Python with keras_rise.scores.RegionScore."
        )
    region = args.region if args.region is not None else (0,) * len(spatial) + spatial
    if len(region) != 2 * len(spatial):
        raise ValueError(
            f"--region {','.join(map(str, region))}: the model's output has "
            f"{len(spatial)} axes of positions ({shown}); give {2 * len(spatial)} ints, "
            f"{scores.RegionScore._BOXES[len(spatial)]}."
        )
    try:
        weights = scores.RegionScore(0, region).weights(spatial)
    except ValueError as error:
        raise ValueError(f"--region: {error}") from None
    axes = list(range(1, len(spatial) + 1))
    means = keras.layers.Lambda(
        lambda dense: tf.tensordot(
            tf.cast(dense, tf.float32), tf.constant(weights), [axes, list(range(len(axes)))]
        ),
        name="region_means",
    )
    region_means = means(outputs[0])
    if scores.is_sigmoid_output(model):
        region_means = _two_classes()(region_means)
        if getattr(args, "class_id", 0) is None and getattr(args, "top_k", 1) == 1:
            args.class_id = 1  # the foreground: the channel the model outputs
    return keras.Model(model.inputs, region_means)


def _two_classes():
    """A layer that makes class 1's probability `p`, `(batch, 1)`, the two
    classes `[1 - p, p]`."""
    import keras

    return keras.layers.Lambda(
        lambda p: keras.ops.concatenate([1.0 - p, p], axis=-1), name="binary_classes"
    )


def sigmoid_as_two_classes(model):
    """A binary classifier — one output unit `(batch, 1)` made by a sigmoid
    — as a classifier of its two classes, `[1 - p, p]`, so that the
    commands (and the Beam model handler) explain and report each input's
    predicted class and take class 0 or 1 (--class-id, labels): its maps
    are `keras_rise.scores.BinaryScore`'s. Other models (a regressor's one
    linear unit) are returned as they are."""
    import keras

    from keras_rise import scores

    if not scores.is_sigmoid_unit(model):
        return model
    return keras.Model(model.inputs, _two_classes()(model.outputs[0]))


def _predict(explainer, images):
    """The model's outputs on `(B, H, W, C)` images (or texts), called as
    RISE calls it; a model failing on them is a `ValueError`
    (`keras_rise.inputs.ModelInputs.probe`)."""
    if explainer._reads_text(images):
        from keras_rise import text

        return text.call(explainer.model, list(images))
    return explainer.engine.inputs.probe(np.asarray(images))


CLASSIFIERS_HINT = (
    "For a detector pass --detections; pick one head of several with --model-output; "
    "for other outputs use the Python API with a score from keras_rise.scores."
)


# What `class_scores` tells a model of values to do instead.
VALUES_HINT = "pass --class-id K to explain value K (or class K, if they are class scores)"

# Inputs per forward pass of `class_scores`.
SCORED_AT_ONCE = 64


def class_scores(
    explainer, inputs, command="keras-rise", hint=CLASSIFIERS_HINT, class_id=None,
    values_hint=VALUES_HINT,
):
    """The model's class scores `(B, K)` on `inputs`; a `ValueError` for a model
    with other outputs (several heads, a segmentation, a regression), whose
    last sentence is `hint`, and, unless `class_id` names one, for values of
    a model trained with a regression loss (`scores.refuse_values_as_classes`,
    ending with `values_hint`). Both commands (`keras-rise` and `python -m
    keras_rise.beam`) ask it before they explain. Inputs are scored
    `SCORED_AT_ONCE` at a time (a `.npy` file may hold many)."""
    from keras_rise import scores

    if isinstance(inputs, (list, np.ndarray)) and len(inputs) > SCORED_AT_ONCE:
        parts = [
            class_scores(
                explainer, inputs[start:start + SCORED_AT_ONCE], command, hint, class_id,
                values_hint,
            )
            for start in range(0, len(inputs), SCORED_AT_ONCE)
        ]
        return np.concatenate(parts)
    outputs = _predict(explainer, inputs)
    if class_id is None and not isinstance(outputs, (dict, list, tuple)):
        scores.refuse_values_as_classes(explainer.model, outputs, values_hint)
    if isinstance(outputs, (dict, list, tuple)):
        heads = (
            f"a dict of outputs {sorted(outputs)}" if isinstance(outputs, dict)
            else f"a list of {len(outputs)} outputs"
        )
        shape = None
    else:
        shape = np.shape(outputs)
        heads = f"one output of shape {('batch',) + tuple(shape[1:])}"
    if shape is None or len(shape) != 2:
        raise ValueError(
            f"{command} explains a classifier here, whose output is (batch, "
            f"num_classes) class scores; this model returns {heads}. {hint}"
        )
    return np.asarray(outputs)


def _detect(explainer, images, min_score):
    """Each image's detections, as `keras_rise.scores.Detection` lists."""
    from keras_rise import scores

    outputs = _predict(explainer, np.stack(images))
    if not isinstance(outputs, dict):
        raise ValueError(
            "--detections needs a detector that returns a dict of \"boxes\" and "
            f"\"class_probs\" (or \"classes\" and \"confidence\"); the model returns "
            f"{type(outputs).__name__}."
        )
    return scores.detections(outputs, min_score=min_score)


def _detection_maps(args, read, explainer, found, count):
    """Detects the objects of each image `read` yields (`_read_images`) and
    explains each detection by its own D-RISE score, an image at a time.

    Args:
        found: a list that takes `(path, detections)` of each image.
        count: the number of images, which a progress bar runs over
            (`_mask_verbosity`).

    Yields:
        `(path, photo, image, index, detection, score, saliency)` per detection.
    """
    from keras_rise import scores

    verbose = _mask_verbosity(args, count)
    for path, photo, image in read:
        detections = _detect(explainer, [image], _min_score(args))[0]
        found.append((path, detections))
        for index, detection in enumerate(detections):
            score = scores.DetectionScore(detection.box, detection.class_id)
            with _warnings_about(f"{path.name}, detection {index}"):
                saliency = explainer.explain(
                    image, targets=score, tolerance=args.tolerance, verbose=verbose
                )
            yield path, photo, image, index, detection, score, saliency


def _shows_progress(args):
    """Progress bars go to a terminal only, and never with --json."""
    return sys.stdout.isatty() and not getattr(args, "json", False)


def _progress_verbosity(args, count=2):
    """A progress bar over `count` images or detections; none for one item
    (its masks have their own bar, `_mask_verbosity`)."""
    return 1 if _shows_progress(args) and count > 1 else 0


def _mask_verbosity(args, count):
    """`explain`'s `verbose`: a bar over masks on long calls ("auto") when no
    bar over the images runs (`_progress_verbosity`), else none."""
    return "auto" if _shows_progress(args) and count <= 1 else 0


def _read_images(args, files, input_shape, model, skipped=None):
    """`(path, photo, image)` for each file, one at a time: its photo at its
    own size and the model input made from it, so a folder of large photos
    is never held in memory at once.

    The files are checked and the first one read before this returns, so
    that a bad command is answered before any output is made.

    Args:
        skipped: a list that takes the error of each file, of several, that is
            no readable image, which is then passed over with a warning;
            `None` (or a single file) raises it.

    Returns:
        An iterator of `(path, photo, image)`.
    """
    from keras_rise import loading

    for path in files:
        if pathlib.Path(path).suffix.lower() in loading.MODEL_SUFFIXES:
            # A model among the images is a slip in the command, not a bad
            # file: refused (with where models go) before any work.
            loading.load_photo(path, input_shape[-1])
    items = _each_image(args, files, input_shape, model, skipped)
    first = next(items, None)
    return _after([] if first is None else [first], items)


def _after(head, items):
    """`head`'s one item, then `items`', the head dropped once it is yielded
    (`itertools.chain` would hold it, a photo, to the end)."""
    while head:
        yield head.pop()
    yield from items


def _pass_over(error, count, skipped):
    """A file of `count` that could not be read (`loading.UnreadableFileError`):
    raised for a lone file (or where `skipped` is `None`), else added to
    `skipped` with a one-line warning; the command's status says so at the
    end (`_refuse_skipped`)."""
    if skipped is None or count == 1:
        raise error
    skipped.append(error)
    warnings.warn(f"skipped {first_line(error)}", stacklevel=3)


def _each_image(args, files, input_shape, model, skipped):
    """`_read_images`' iterator."""
    from keras_rise import loading

    preprocessing = preprocessing_of(args, model)
    for path in files:
        try:
            photo = loading.load_photo(path, input_shape[-1])
        except loading.UnreadableImageError as error:
            _pass_over(error, len(files), skipped)
            continue
        yield path, photo, loading.model_input(photo, input_shape, preprocessing, path)


def _with_bar(read, bar, skipped):
    """`read`'s items (`_read_images`), `bar` advanced as each is done, the
    files `skipped` counted as done too."""
    done = 0
    for item in read:
        yield item
        done += 1
        bar.update(done + len(skipped))
    if skipped:  # the last files, skipped after the last one read
        bar.update(bar.target)


def _skipped_rows(skipped, stems, key="image"):
    """--json's entries of the files `_read_images` (or the texts' reading)
    skipped, named as the rows of the files explained are (`_shown`)."""
    return [
        {key: _shown(error.path, stems), "error": first_line(error)} for error in skipped
    ]


def _refuse_skipped(skipped, count, done):
    """After the readable files are done, a `LoadError` naming the files
    that were not (the command's exit status then says it did not do all)."""
    from keras_rise import loading

    if skipped:
        names = ", ".join(str(error.path) for error in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise loading.LoadError(
            f"{len(skipped)} of {count} files could not be read ({names}{more}); "
            f"{done}."
        )


def _output_size(args, photo, image):
    """`(height, width)` of what `explain` writes for a photo (--map-size)."""
    return (photo.height, photo.width) if args.map_size == "source" else image.shape[:2]


def _write_outputs(args, stem, photo, image, saliency, boxes=(), captions=()):
    """Writes `stem.png` (the overlay on the photo) and `stem.npy` (the map).

    Returns:
        The two paths.
    """
    from PIL import Image

    from keras_rise import loading, visualize

    height, width = _output_size(args, photo, image)
    if (photo.height, photo.width) != (height, width):
        photo = photo.resize((width, height), Image.BILINEAR)
    saliency = visualize.resize_map(saliency, (height, width))
    picture = visualize.overlay(photo, saliency)
    if boxes:
        picture = visualize.draw_boxes(picture, boxes, captions)
    elif captions:
        picture = visualize.caption(picture, captions[0])
    overlay_path, map_path = _output_paths(args, stem, ".png", ".npy")
    loading.save_png(overlay_path, picture)
    loading.save_map(map_path, saliency)
    return overlay_path, map_path


def _explain_detections(args, files, stems, read, skipped, explainer, labels):
    """`explain --detections`: one overlay with its box per detection.

    `read` yields `(path, photo, image)` per file (`_read_images`); each
    file is detected, explained and written before the next is read.
    """
    import json

    progress = _image_bar(args, len(files))
    rows, found = [], []
    detected = _detection_maps(
        args, _with_bar(read, progress, skipped), explainer, found, len(files)
    )
    for path, photo, image, index, detection, _, saliency in detected:
        height, width = _output_size(args, photo, image)
        scale = np.array([width, height, width, height]) / np.array(
            [image.shape[1], image.shape[0]] * 2
        )
        box = [float(v) for v in np.asarray(detection.box) * scale]
        name = labels.get(detection.class_id, str(detection.class_id))
        overlay_path, map_path = _write_outputs(
            args,
            f"{stems[path]}_det{index}",
            photo,
            image,
            saliency,
            boxes=[box],
            captions=[f"{name} {detection.score:.2f}"],
        )
        rows.append(
            {
                "image": _shown(path, stems),
                "detection": index,
                "class_id": detection.class_id,
                **({"label": name} if labels else {}),
                "score": detection.score,
                "box_xyxy": [round(v, 1) for v in box],
                "overlay": str(overlay_path),
                "map": str(map_path),
                "num_masks": int(explainer.last_num_masks),
            }
        )
    if found:  # an image without a detection is an answer, not an error
        _check_detected(args, *zip(*found), refuse_none=False)
    written = f"wrote {_written(len(rows), 'overlay')} to {args.out}"
    if args.json:
        print(json.dumps(
            {"detections": rows, "skipped": _skipped_rows(skipped, stems)}, indent=2
        ))
        _refuse_skipped(skipped, len(files), written)
        return
    label_header = f" {'label':<16}" if labels else ""
    lines = []
    for row in rows:
        box = " ".join(f"{v:.0f}" for v in row["box_xyxy"])
        label = f" {row['label'][:16]:<16}" if labels else ""
        lines.append(
            f"{row['image']:<24} {row['detection']:>3} {row['class_id']:>5}{label} "
            f"{row['score']:>6.3f}  {box}"
        )
    _print_table(
        f"{'image':<24} {'det':>3} {'class':>5}{label_header} {'score':>6}  box (x1 y1 x2 y2)",
        lines, written, skipped,
    )
    _refuse_skipped(skipped, len(files), written)


def _print_table(header, lines, summary, skipped=None):
    """Prints a table's `header` and `lines`, then `summary`. Nothing over
    no lines (a header alone read as output lost): only `summary`, and not
    even that where files were `skipped`, since the error that follows says
    what was written."""
    if lines:
        print(header)
        for line in lines:
            print(line)
    if lines or not skipped:
        print(summary)


def _check_detected(args, files, found, refuse_none=True):
    """Warns of the images in which no detection scored `--min-score`; a
    `ValueError` when that is every image, with `refuse_none` (`evaluate`:
    there is nothing to score; `explain` writes nothing and says so)."""
    missing = [pathlib.Path(path).name for path, kept in zip(files, found) if not kept]
    if not missing:
        return
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    message = f"no detection scored {_min_score(args)} or more in {shown}"
    if len(missing) == len(found) and refuse_none:
        raise ValueError(f"{message}; lower --min-score.")
    them = "it" if len(missing) == 1 else "them"
    warnings.warn(f"{message}; lower --min-score to explain {them} too.", stacklevel=2)


def _written(number, picture):
    """`1 overlay and map`, `2 overlays and maps`."""
    plural = "" if number == 1 else "s"
    return f"{number} {picture}{plural} and map{plural}"


def _report_classes(args, rows, key, labels, summary, one_value=False, skipped=None):
    """Prints `explain`'s rows: JSON under `key + "s"` with --json (and the
    `skipped` files' entries, `_skipped_rows`, under "skipped"), else a
    table of each row's `key`, rank, class and score (for a model of
    `one_value`, a regressor's, the value alone), then `summary`."""
    import json

    if args.json:
        extra = {} if skipped is None else {"skipped": skipped}
        print(json.dumps({f"{key}s": rows, **extra}, indent=2))
        return
    # With --tolerance, the masks each map took before it was reached.
    stopped = getattr(args, "tolerance", None) is not None and all(
        "num_masks" in row for row in rows
    )
    masks_header = f" {'masks':>6}" if stopped else ""

    def masks(row):
        return f" {row['num_masks']:>6}" if stopped else ""

    if one_value and not labels:  # no classes to rank
        lines = [f"{row[key]:<24} {row['score']:>10.4f}{masks(row)}" for row in rows]
        _print_table(f"{key:<24} {'value':>10}{masks_header}", lines, summary, skipped)
        return
    label_header = f" {'label':<20}" if labels else ""
    lines = []
    for row in rows:
        label = f" {row['label'][:20]:<20}" if labels else ""
        lines.append(
            f"{row[key]:<24} {row['rank']:>4} {row['class_id']:>5}{label} "
            f"{row['score']:>7.4f}{masks(row)}"
        )
    _print_table(
        f"{key:<24} {'rank':>4} {'class':>5}{label_header} {'score':>7}{masks_header}",
        lines, summary, skipped,
    )


def _takes_images(model, input_shape):
    """Whether a loaded model's input is an image (else .npy arrays are read)."""
    from keras_rise import loading

    inputs = getattr(model, "inputs", None)
    return loading.takes_images(inputs[0]) if inputs else len(input_shape) == 4


def _folder_kinds(path):
    """`(arrays, images)`: whether a folder holds `.npy` arrays, image files."""
    from keras_rise import loading

    suffixes = {p.suffix.lower() for p in path.iterdir()}
    return (
        bool(suffixes & set(loading.ARRAY_SUFFIXES)),
        bool(suffixes & set(loading.IMAGE_SUFFIXES)),
    )


def _holds_arrays(paths):
    """Whether `paths` give `.npy` arrays: files, or folders of them and no images."""
    from keras_rise import loading

    def arrays(path):
        if path.is_dir():
            arrays, images = _folder_kinds(path)
            return arrays and not images
        return path.suffix.lower() in loading.ARRAY_SUFFIXES

    return bool(paths) and all(arrays(pathlib.Path(path)) for path in paths)


def _refuse_mixed_folders(paths):
    """Refuses a folder of both images and `.npy` arrays, either of which a
    (height, width) model could take: explaining one kind would leave the
    other out without a word."""
    for path in map(pathlib.Path, paths):
        if path.is_dir() and all(_folder_kinds(path)):
            raise ValueError(
                f"{path} holds both images and .npy arrays, and this model could take "
                "either; put them in separate folders and explain one kind at a time."
            )


def _refuse_image_flags(args, message, *more, top_k=False):
    """Refuses the flags of image files (and `more` `(flag, given)` pairs)
    for inputs read otherwise; `message` names the flag as `{flag}`.
    `top_k`: `--top-k` is taken too."""
    for flag, given in (
        ("--detections", args.detections),
        ("--input-range", args.input_range is not None),
        ("--preprocess", args.preprocess is not None),
        ("--top-k", args.top_k != 1 and not top_k),
        *more,
    ):
        if given:
            raise ValueError(message.format(flag=flag))


def _explain_classes(args, explainer, inputs, labels, count):
    """`(scores, classes, maps)` of inputs that are not image files: the
    class scores, the class explained for each (`--class-id`, else its top
    class) and its map; `count` inputs in all for the progress."""
    scores = class_scores(explainer, inputs, class_id=args.class_id)
    _check_labels(args, labels, scores.shape[1])
    if args.class_id is not None:
        _check_class_id(args.class_id, scores.shape[1])
    classes = (
        np.full(len(inputs), args.class_id) if args.class_id is not None
        else scores.argmax(axis=1)
    )
    maps = explainer.explain(
        inputs, targets=classes, tolerance=args.tolerance,
        verbose=_mask_verbosity(args, count),
    )
    return scores, classes, maps


def _explain_top_classes(args, explainer, inputs, labels, count):
    """`_explain_classes` with `--top-k`: `(scores, classes, maps)`, the
    classes explained for each input `(batch, k)` (its `k` top classes, or
    `--class-id`) and their maps, the classes on the last axis."""
    if args.top_k == 1 or args.class_id is not None:
        scores, classes, maps = _explain_classes(args, explainer, inputs, labels, count)
        return scores, classes[:, None], np.asarray(maps)[..., None]
    scores = class_scores(explainer, inputs, class_id=args.class_id)
    _check_labels(args, labels, scores.shape[1])
    if args.top_k > scores.shape[1]:
        raise ValueError(
            f"--top-k {args.top_k} is more than the model's {scores.shape[1]} classes; "
            f"pass at most {scores.shape[1]}."
        )
    classes = np.argsort(-scores, axis=1, kind="stable")[:, : args.top_k]
    maps = explainer.explain(
        inputs, targets="all", tolerance=args.tolerance, verbose=_mask_verbosity(args, count)
    )
    axes = (1,) * (np.ndim(maps) - 2)
    return scores, classes, np.take_along_axis(maps, classes.reshape(len(inputs), *axes, -1), -1)


def _takes_strings(model):
    """Whether a loaded model declares one string input (texts)."""
    from keras_rise import text

    return bool(getattr(model, "inputs", None)) and text.takes_text(model)


def _explain_texts(args, model, paths):
    """`explain` for a model of strings: each `.txt` file holds one text,
    explained word by word (`keras_rise.text`); each gets its map (`.npy`,
    one value per word) and the text with its words coloured (`.html`)."""
    from keras_rise import loading, visualize
    from keras_rise import text as text_lib
    from keras_rise.explainer import RiseExplainer

    _refuse_image_flags(
        args,
        "{flag} does not apply to texts: the model takes strings, read here from .txt "
        "files.",
        top_k=True,
    )
    text_lib.masked_word(args.fill_value, "--fill-value", 0.0)  # a word, or none
    found = loading.find_texts(paths, exclude=args.out)
    stems = _output_stems(found, args.out)
    # A file that cannot be read is passed over with a warning, as images
    # are; the exit status says so at the end.
    files, texts, skipped = [], [], []
    for path in found:
        try:
            texts.append(loading.load_text(path))
        except loading.UnreadableFileError as error:
            _pass_over(error, len(found), skipped)
            continue
        files.append(path)
    if not texts:
        _refuse_skipped(skipped, len(found), "nothing was explained")
    labels = _labels(args)
    explainer = RiseExplainer(model, **explainer_args(args))
    scores, top, maps = _explain_top_classes(args, explainer, texts, labels, len(texts))
    _make_out(args.out)
    rows = []
    every = [
        (index, path, text, rank, int(class_id))
        for index, (path, text) in enumerate(zip(files, texts))
        for rank, class_id in enumerate(top[index])
    ]
    for index, path, text, rank, class_id in every:
        words = text.split()
        saliency = np.asarray(maps[index])[..., rank][: len(words)]
        name = labels.get(class_id, str(class_id))
        page = visualize.highlight_tokens(words, saliency)
        stem = stems[path] if top.shape[1] == 1 else f"{stems[path]}_class{class_id}"
        html_path, map_path = _output_paths(args, stem, ".html", ".npy")
        loading.write_atomically(
            html_path,
            lambda handle, page=page: handle.write(
                f'<!DOCTYPE html>\n<meta charset="utf-8">\n<p>{page}</p>\n'.encode()
            ),
        )
        loading.save_map(map_path, saliency)
        rows.append(
            {
                "input": _shown(path, stems),
                "rank": 1 + int(np.sum(scores[index] > scores[index, class_id])),
                "class_id": class_id,
                **({"label": name} if labels else {}),
                "score": float(scores[index, class_id]),
                "words": words,
                "saliency": [float(value) for value in saliency],
                "page": str(html_path),
                "map": str(map_path),
                "num_masks": int(np.ravel(explainer.last_num_masks)[index]),
            }
        )
    written = f"wrote {_written(len(rows), 'page')} to {args.out}"
    _report_classes(
        args, rows, "input", labels, written, one_value=scores.shape[-1] == 1,
        skipped=_skipped_rows(skipped, stems, "input"),
    )
    _refuse_skipped(skipped, len(found), written)


def _explain_arrays(args, model, paths):
    """`explain` for a model of other inputs — signals, token ids, volumes,
    videos: each `.npy` file holds one input or a batch; each input gets its
    map (`.npy`) and its picture (`.png`, `keras_rise.visualize.picture`)."""
    from keras_rise import inputs as inputs_lib
    from keras_rise import loading, visualize
    from keras_rise.explainer import RiseExplainer

    # As the model declares it: a Keras model's inputs or a SavedModel's
    # signature (a grayscale model's (H, W), without the added channel).
    shape = inputs_lib.ModelInputs(model).model_image_shape()
    _refuse_image_flags(
        args,
        f"{{flag}} is for image files; the model's {tuple(shape)} "
        "inputs are read here from .npy files, one map each (for --class-id, or the top "
        "class, or --top-k's)."
        + loading.grayscale_hint(model).replace("{", "{{").replace("}", "}}"),
        top_k=True,
    )
    try:
        files = loading.find_arrays(paths, exclude=args.out)
    except loading.LoadError as error:
        raise loading.LoadError(f"{error}{loading.grayscale_hint(model)}") from None
    stems = _output_stems(files, args.out)
    labels = _labels(args)
    explainer = RiseExplainer(model, **explainer_args(args))
    # Bars for a table's features (unless --no-binary-masks masks them as a
    # signal), a strip per channel for a series masked per step and channel.
    table = explainer.engine.inputs.masked_as_table(args.binary_masks)
    kind = explainer.engine.inputs.picture_kind(args.binary_masks)
    feature_names = _feature_names(args, explainer, table)
    _make_out(args.out)
    rows, skipped = [], []
    for path in files:
        # A file that cannot be read, or whose inputs the model does not
        # take, is passed over with a warning among several (as images are).
        try:
            inputs, single = explainer.engine.inputs.check(loading.load_array(path))
        except loading.UnreadableFileError as error:
            _pass_over(error, len(files), skipped)
            continue
        except (TypeError, ValueError) as error:
            _pass_over(loading.UnreadableFileError(f"{path}: {error}", path), len(files),
                       skipped)
            continue
        scores, top, maps = _explain_top_classes(
            args, explainer, inputs, labels, len(files) * len(inputs)
        )
        every = [
            (index, one, maps[index][..., rank], int(class_id))
            for index, one in enumerate(inputs)
            for rank, class_id in enumerate(top[index])
        ]
        for index, one, saliency, class_id in every:
            stem = stems[path] if single else f"{stems[path]}_{index:03d}"
            stem = stem if top.shape[1] == 1 else f"{stem}_class{class_id}"
            name = labels.get(class_id, str(class_id))
            picture = visualize.picture(one, saliency, kind=kind, names=feature_names)
            if labels:
                picture = visualize.caption(picture, f"{name} {scores[index, class_id]:.2f}")
            picture_path, map_path = _output_paths(args, stem, ".png", ".npy")
            loading.save_png(picture_path, picture)
            loading.save_map(map_path, saliency)
            rows.append(
                {
                    "input": _shown(path, stems) if single
                    else f"{_shown(path, stems)}[{index}]",
                    "rank": 1 + int(np.sum(scores[index] > scores[index, class_id])),
                    "class_id": class_id,
                    **({"label": name} if labels else {}),
                    "score": float(scores[index, class_id]),
                    "picture": str(picture_path),
                    "map": str(map_path),
                    "num_masks": int(np.ravel(explainer.last_num_masks)[index]),
                }
            )
    if not rows:
        _refuse_skipped(skipped, len(files), "nothing was explained")
    written = f"wrote {_written(len(rows), 'picture')} to {args.out}"
    _report_classes(
        args, rows, "input", labels, written, one_value=scores.shape[-1] == 1,
        skipped=_skipped_rows(skipped, stems, "input"),
    )
    _refuse_skipped(skipped, len(files), written)


def _refuse_feature_names(args, what):
    if args.feature_names is not None:
        raise ValueError(
            f"--feature-names names a table's features (a vector that the model's "
            f"Dense layers read, from .npy files); this model takes {what}."
        )


def _feature_names(args, explainer, table):
    """`--feature-names` as a list, checked against the model's vector, or
    `None`; `table`: whether the inputs are masked as a table's features."""
    from keras_rise import loading

    if args.feature_names is None:
        return None
    inputs = explainer.engine.inputs
    if not table:
        _refuse_feature_names(
            args, f"{tuple(inputs.model_image_shape())} inputs masked as a signal"
        )
    labels = loading.load_labels(args.feature_names)
    count = inputs.model_image_shape()[0]
    if sorted(labels) != list(range(count)):
        raise ValueError(
            f"--feature-names {args.feature_names}: gives {len(labels)} names; the "
            f"model's inputs have {count} features."
        )
    return [labels[index] for index in range(count)]


def _explain_command(args):
    from keras_rise import loading
    from keras_rise.explainer import RiseExplainer

    model_path, image_paths, _, model, input_shape = _command_model(args)
    model = _dense_as_classes(args, model)
    declared = getattr(model, "inputs", None)
    if declared and len(declared[0].shape) == 3 and len(input_shape) == 4:
        # --grid-size H,W on a (height, width) model: grayscale images
        # without a channel axis, from image files or from .npy arrays.
        if _holds_arrays(image_paths):
            return _explain_arrays(args, model, image_paths)
        _refuse_mixed_folders(image_paths)
    elif _takes_strings(model):
        _refuse_feature_names(args, "texts")
        return _explain_texts(args, model, image_paths)
    elif not _takes_images(model, input_shape):
        return _explain_arrays(args, model, image_paths)
    _refuse_feature_names(args, "images")
    if model_path is None and any(
        pathlib.Path(path).suffix.lower() in loading.ARRAY_SUFFIXES for path in image_paths
    ):
        raise ValueError(
            f"{args.paths[0]} is not a model (.keras, .h5, .hdf5 or a SavedModel folder), "
            "so the bundled demo model, which takes images, would explain them; give "
            "your model first: keras-rise explain MODEL INPUT.npy ..."
        )
    files = loading.find_images(image_paths, exclude=args.out)
    stems = _output_stems(files, args.out)
    labels = _labels(args)
    explainer = RiseExplainer(model, **explainer_args(args))
    skipped = []
    read = _read_images(args, files, input_shape, model, skipped)
    _make_out(args.out)
    if args.detections:
        return _explain_detections(args, files, stems, read, skipped, explainer, labels)

    progress = _image_bar(args, len(files))
    rows = []
    scores = None
    for path, photo, image in _with_bar(read, progress, skipped):
        first = scores is None
        scores = class_scores(explainer, image[None], class_id=args.class_id)[0]
        if first:
            _check_labels(args, labels, len(scores))
            if args.top_k > len(scores):
                raise ValueError(
                    f"--top-k {args.top_k} is more than the model's {len(scores)} "
                    f"classes; pass at most {len(scores)}."
                )
        if args.class_id is not None:
            _check_class_id(args.class_id, len(scores))
            classes = [args.class_id]
        else:
            classes = list(np.argsort(-scores, kind="stable")[: args.top_k])
        with _warnings_about(_shown(path, stems)):
            maps = explainer.explain(
                image,
                targets="all" if len(classes) > 1 else classes[0],
                tolerance=args.tolerance,
                verbose=_mask_verbosity(args, len(files)),
            )
        for class_id in classes:
            class_id = int(class_id)
            saliency = maps[..., class_id] if len(classes) > 1 else maps
            stem = stems[path] if len(classes) == 1 else f"{stems[path]}_class{class_id}"
            name = labels.get(class_id, str(class_id))
            score = float(scores[class_id])
            captions = [f"{name} {score:.2f}"] if labels else ()
            overlay_path, map_path = _write_outputs(
                args, stem, photo, image, saliency, captions=captions
            )
            rows.append(
                {
                    "image": _shown(path, stems),
                    # The class's place among the model's scores (1: the top
                    # class), also for a class chosen with --class-id.
                    "rank": 1 + int(np.sum(scores > scores[class_id])),
                    "class_id": class_id,
                    **({"label": name} if labels else {}),
                    "score": score,
                    "overlay": str(overlay_path),
                    "map": str(map_path),
                    "num_masks": int(explainer.last_num_masks),
                }
            )

    written = f"wrote {_written(len(rows), 'overlay')} to {args.out}"
    _report_classes(
        args, rows, "image", labels, written,
        one_value=scores is not None and np.shape(scores)[-1] == 1,
        skipped=_skipped_rows(skipped, stems),
    )
    _refuse_skipped(skipped, len(files), written)


def _scaled_box(box, file_size, input_size):
    """A box in a file's pixels, moved to the model-input pixels."""
    (file_height, file_width), (height, width) = file_size, input_size
    top, left, bottom, right = box
    scaled = [
        int(np.floor(top * height / file_height)),
        int(np.floor(left * width / file_width)),
        int(np.ceil(bottom * height / file_height)),
        int(np.ceil(right * width / file_width)),
    ]
    return [
        min(max(v, 0), limit)
        for v, limit in zip(scaled, (height - 1, width - 1, height, width))
    ]


def _evaluate_detections(args, files, shown, model, read, skipped, explainer):
    """`evaluate --detections`: deletion, insertion and pointing game per
    detection; `read` yields `(path, photo, image)` per file
    (`_read_images`), each detected and explained before the next is read,
    and `skipped` takes the errors of the files that are no readable image."""
    import json

    from keras_rise import metrics

    rows, found = [], []
    detected = _detection_maps(args, read, explainer, found, len(files))
    for path, _, image, index, detection, score, saliency in detected:
        common = {"targets": score, "batch_size": args.batch_size}
        with _warnings_about(f"{path.name}, detection {index}"):
            inserted = metrics.insertion(
                model, image, saliency, substrate=args.substrate, **common
            ).auc
        height, width = image.shape[:2]
        x1, y1, x2, y2 = detection.box
        box = [
            min(max(int(y1), 0), height - 1),
            min(max(int(x1), 0), width - 1),
            min(max(int(np.ceil(y2)), 1), height),
            min(max(int(np.ceil(x2)), 1), width),
        ]
        rows.append(
            {
                "image": shown[path],
                "detection": index,
                "class_id": detection.class_id,
                "score": detection.score,
                "box_xyxy": [round(v, 1) for v in detection.box],
                "deletion_auc": float(
                    metrics.deletion(
                        model, image, saliency, fill_value=args.fill_value, **common
                    ).auc
                ),
                "insertion_auc": float(inserted),
                "pointing_hit": bool(
                    metrics.pointing_game(saliency, box, tolerance=0).hits
                ),
                "num_masks": int(explainer.last_num_masks),
            }
        )
    if not found:
        _refuse_skipped(skipped, len(files), "nothing was evaluated")
    _check_detected(args, *zip(*found))
    done = f"evaluated the other {len(found)}"
    summary = {
        "detections": len(rows),
        "images": len(found),
        "num_masks": args.num_masks,
        "seed": args.seed,
        **_metric_means(rows),
    }
    if args.json:
        print(json.dumps(
            {"summary": summary, "per_detection": rows,
             "skipped": _skipped_rows(skipped, _relative_stems(files))},
            indent=2,
        ))
        _refuse_skipped(skipped, len(files), done)
        return
    print(
        f"{'image':<24} {'det':>3} {'class':>5} {'score':>6} {'deletion':>9} "
        f"{'insertion':>9} {'pointing':>8}"
    )
    for row in rows:
        print(
            f"{row['image']:<24} {row['detection']:>3} {row['class_id']:>5} "
            f"{row['score']:>6.3f} {row['deletion_auc']:>9.4f} "
            f"{row['insertion_auc']:>9.4f} {'hit' if row['pointing_hit'] else 'miss':>8}"
        )
    print(
        f"{'mean':<24} {'':>3} {'':>5} {'':>6} {summary['deletion_auc']:>9.4f} "
        f"{summary['insertion_auc']:>9.4f} {summary['pointing_game']:>8.3f}"
    )
    print(
        "scores are D-RISE detection scores; deletion: lower is better; insertion "
        "and pointing game: higher is better"
    )
    _refuse_skipped(skipped, len(files), done)


def _metric_means(rows, pointing=True):
    """`evaluate`'s summary of its `rows`: the mean deletion and insertion
    AUC and, with `pointing`, the pointing game's share of hits (else
    `None`)."""
    return {
        "deletion_auc": float(np.mean([row["deletion_auc"] for row in rows])),
        "insertion_auc": float(np.mean([row["insertion_auc"] for row in rows])),
        "pointing_game": (
            float(np.mean([row["pointing_hit"] for row in rows])) if pointing else None
        ),
    }


def _box_class(args, label, name, labels, num_classes):
    """The class a boxes file's `"label"` names: an id, or a name of --labels."""
    from keras_rise import loading

    if isinstance(label, str):
        ids = {text: class_id for class_id, text in labels.items()}
        if label not in ids:
            raise loading.LoadError(
                f"{args.boxes}: the label of {name!r} is {label!r}, "
                + (f"not a class name of {args.labels}; give a class id or one of its "
                   "names." if labels else
                   "a name; give the class ids, or --labels FILE naming the model's "
                   "classes.")
            )
        return ids[label]
    if label >= num_classes:
        raise loading.LoadError(
            f"{args.boxes}: the label of {name!r} is class {label}, outside the "
            f"model's {num_classes} classes (0 to {num_classes - 1})."
        )
    return label


def _evaluate_command(args):
    import json

    from keras_rise import loading, metrics
    from keras_rise.explainer import RiseExplainer

    _, image_paths, model_file, model, _ = _command_model(args)
    input_shape = loading.image_input_shape(
        model, model_file, args.grid_size,
        hint="keras-rise evaluate takes image models; the metrics of other inputs are "
        "in Python: keras_rise.metrics.deletion and insertion.",
    )
    model = _dense_as_classes(args, model)
    files = loading.find_images(image_paths)
    stems = _relative_stems(files)
    shown = {path: _shown(path, stems) for path in files}
    boxes, box_labels = (
        loading.load_boxes(args.boxes, with_labels=True) if args.boxes else (None, {})
    )
    # A file's entry: by its path below the folders (cat/0001.png), or its
    # name where no other file has it.
    keys = {
        path: shown[path] if boxes and shown[path] in boxes else path.name for path in files
    }
    if boxes is not None:
        names = collections.Counter(path.name for path in files)
        shared = [path for path in files if keys[path] != shown[path] and names[path.name] > 1]
        if shared:
            raise loading.LoadError(
                f"{args.boxes}: the box of {shared[0].name!r} would serve every file of "
                f"that name, e.g. {shown[shared[0]]}; key the boxes by the path below "
                "the folders."
            )
        missing = [shown[path] for path in files if keys[path] not in boxes]
        if missing:
            raise loading.LoadError(
                f"{args.boxes}: no box for {missing[0]}"
                + (f" and {len(missing) - 1} more images." if len(missing) > 1 else ".")
            )
    # Each file is read, explained and scored before the next is read, so
    # that a folder of large photos is never held in memory at once; one
    # that is no readable image, of several, is passed over (and said).
    skipped = []
    read = _read_images(args, files, input_shape, model, skipped)
    labels = _labels(args)
    explainer = RiseExplainer(model, **explainer_args(args))
    if args.detections:
        return _evaluate_detections(args, files, shown, model, read, skipped, explainer)

    # With --json, stdout carries only the JSON document.
    progress = _image_bar(args, len(files))
    rows = []
    for path, _, image in _with_bar(read, progress, skipped):
        scores = class_scores(explainer, image[None], class_id=args.class_id)[0]
        if not rows:  # the model's classes, known from its first image
            _check_labels(args, labels, len(scores))
            if args.class_id is not None:
                _check_class_id(args.class_id, len(scores))
            # The labels of every file are checked before the first map is made.
            box_classes = {} if args.class_id is not None else {
                keys[path]: _box_class(args, box_labels[keys[path]], keys[path], labels,
                                       len(scores))
                for path in files if keys[path] in box_labels
            }
        class_id = (
            args.class_id if args.class_id is not None
            else box_classes.get(keys[path], int(scores.argmax()))
        )
        with _warnings_about(shown[path]):  # a curve that falls is said of its image
            saliency = explainer.explain(
                image,
                targets=int(class_id),
                tolerance=args.tolerance,
                verbose=_mask_verbosity(args, len(files)),
            )
            common = {"targets": int(class_id), "batch_size": args.batch_size}
            deleted = metrics.deletion(
                model, image, saliency, fill_value=args.fill_value, **common
            ).auc
            inserted = metrics.insertion(
                model, image, saliency, substrate=args.substrate, **common
            ).auc
        hit = None
        if boxes is not None:
            box = _scaled_box(boxes[keys[path]], loading.image_size(path), image.shape[:2])
            hit = bool(metrics.pointing_game(saliency[None], [box]).hits[0])
        rows.append({
            "image": shown[path],
            "class_id": int(class_id),
            **({"label": labels.get(int(class_id), str(class_id))} if labels else {}),
            "score": float(scores[class_id]),
            "deletion_auc": float(deleted),
            "insertion_auc": float(inserted),
            "pointing_hit": hit,
            "num_masks": int(explainer.last_num_masks),
        })
    done = f"evaluated the other {len(rows)}"
    if not rows:
        _refuse_skipped(skipped, len(files), "nothing was evaluated")
    summary = {
        "images": len(rows),
        "num_masks": args.num_masks,
        "tolerance": args.tolerance,
        "seed": args.seed,
        **_metric_means(rows, pointing=boxes is not None),
    }
    if args.json:
        print(json.dumps(
            {"summary": summary, "per_image": rows, "skipped": _skipped_rows(skipped, stems)},
            indent=2,
        ))
        _refuse_skipped(skipped, len(files), done)
        return
    label_header = f" {'label':<16}" if labels else ""
    print(
        f"{'image':<24} {'class':>5}{label_header} {'score':>7} {'deletion':>9} "
        f"{'insertion':>9} {'pointing':>8}"
    )
    for row in rows:
        hit = {None: "-", True: "hit", False: "miss"}[row["pointing_hit"]]
        label = f" {row['label'][:16]:<16}" if labels else ""
        print(
            f"{row['image']:<24} {row['class_id']:>5}{label} {row['score']:>7.4f} "
            f"{row['deletion_auc']:>9.4f} {row['insertion_auc']:>9.4f} {hit:>8}"
        )
    pointing = f"{summary['pointing_game']:>8.3f}" if boxes is not None else f"{'-':>8}"
    print(
        f"{'mean':<24} {'':>5}{' ' * len(label_header)} {'':>7} {summary['deletion_auc']:>9.4f} "
        f"{summary['insertion_auc']:>9.4f} {pointing}"
    )
    print("deletion: lower is better; insertion and pointing game: higher is better")
    _refuse_skipped(skipped, len(files), done)


# A `grid_size=` value in the library's messages, e.g. `grid_size=(7, 7)`.
_GRID_SIZE_VALUE = re.compile(r"grid_size=(\(\s*\d+(?:\s*,\s*\d+)*\s*,?\s*\)|\d+)")
# A `model_output=` or `custom_objects=` value in `keras_rise.loading`'s
# messages, e.g. `model_output='probs'`, or a single `fill_value=` (a number
# or a name such as 'mean'; a value per channel is left as Python's).
_LOADING_VALUE = re.compile(
    r"(model_output|custom_objects|fill_value|tolerance|substrate)=(?:'([^']*)'|(-?[\w.]+))"
)


# A `binary_masks=` value in the library's messages: True, False or one per axis.
_BINARY_MASKS_VALUE = re.compile(r"binary_masks=(True|False|\((?:\s*(?:True|False)\s*,?)+\))")


def _binary_masks_flag(match):
    value = match.group(1)
    if value in ("True", "False"):
        return "--binary-masks" if value == "True" else "--no-binary-masks"
    flags = re.findall(r"True|False", value)
    return "--binary-masks-per-axis " + ",".join(
        "yes" if flag == "True" else "no" for flag in flags
    )


# `keras_rise.scores`' advice to a model of several outputs, which the command
# line follows with --model-output.
_SCORE_OUTPUT = re.compile(r"pass `output=` to the score \(\w+\(\.\.\., output=(\w+)\)\)")


def first_line(what):
    """An error's or a warning's message as one line for the command line,
    `grid_size=`, `model_output=`, `custom_objects=`, `tolerance=`,
    `substrate=` and single `fill_value=` values in it spelled as the
    command's flags (`--grid-size 7,7`, `--model-output probs`, `--fill-value
    99.0`), `num_masks` as `--num-masks`, and a score's `output=` as
    `--model-output`."""
    text = str(what).strip()
    line = text.splitlines()[0] if text else repr(what)
    line = _LOADING_VALUE.sub(
        lambda match: "--" + match.group(1).replace("_", "-") + " "
        + (match.group(2) or match.group(3)),
        line,
    )
    line = line.replace("`num_masks`", "`--num-masks`").replace("`fill_value`", "`--fill-value`")
    line = _BINARY_MASKS_VALUE.sub(_binary_masks_flag, line)
    line = _SCORE_OUTPUT.sub(r"pass --model-output \1", line)
    return _GRID_SIZE_VALUE.sub(
        lambda match: "--grid-size " + ",".join(re.findall(r"\d+", match.group(1))), line
    )


# The input whose explanation is running, named in its warnings.
_WARNINGS_ABOUT = []


@contextlib.contextmanager
def _warnings_about(name):
    """Warnings raised inside the block are about input `name`.

    Each input's warnings are shown even where an earlier input's read the
    same: Python shows a warning once per place and text, and two images
    whose maps could not reach a tolerance may be warned of in equal words.
    (A change of the filters, here one that acts as the default does, makes
    Python forget the warnings it has shown.)
    """
    _WARNINGS_ABOUT.append(name)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("default", append=True)
            yield
    finally:
        _WARNINGS_ABOUT.pop()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """`warnings.showwarning` of the command: `keras-rise: warning: ...`,
    after the input it is about, if one is being explained; on a line of
    its own where a progress bar is drawn on the terminal."""
    del category, filename, lineno, line
    about = f"{_WARNINGS_ABOUT[-1]}: " if _WARNINGS_ABOUT else ""
    if _BARS_DRAWN and any(_mid_line(bar) for bar in _BARS_DRAWN):
        sys.stdout.write("\n")  # the bar redraws itself on the next line
        sys.stdout.flush()
    print(f"keras-rise: warning: {about}{first_line(message)}", file=file or sys.stderr)


# The progress bars over images that draw on the terminal (`_image_bar`).
_BARS_DRAWN = []


def _mid_line(bar):
    """Whether a Keras `Progbar` has drawn its line and not ended it."""
    seen = getattr(bar, "_seen_so_far", 0)
    return bar.verbose == 1 and 0 < seen and (bar.target is None or seen < bar.target)


def _image_bar(args, count, unit_name="image"):
    """A `keras.utils.Progbar` over `count` images (`_progress_verbosity`),
    known to the command's warnings so that none is printed on its line."""
    import keras

    bar = keras.utils.Progbar(
        count, unit_name=unit_name, verbose=_progress_verbosity(args, count)
    )
    if bar.verbose == 1:
        _BARS_DRAWN.append(bar)
    return bar


def _missing_path(args):
    """What to say of the first file or folder the command reads that does not
    exist (its inputs, model, --boxes, --labels), or `None`."""
    for path in [*getattr(args, "paths", ()), getattr(args, "model", None)]:
        if path is not None and not pathlib.Path(path).exists():
            return f"{path}: no such file or folder."
    for option in ("boxes", "labels"):
        path = getattr(args, option, None)
        if path is not None and not path.exists():
            return f"--{option} {path}: no such file."
    return None


def _unwritable_folder(args):
    """What to say of an output folder (--out, EXPORT_DIR) that cannot be
    made — a file in its place or on its path, a folder not writable —, or
    `None`. Checked before the model loads; nothing is created."""
    from keras_rise import _checks

    for option, name in (("out", "--out"), ("export_dir", "EXPORT_DIR")):
        path = getattr(args, option, None)
        if path is None:
            continue
        existing = _checks.existing_ancestor(path)
        if existing.exists() and not existing.is_dir():
            where = "" if existing == pathlib.Path(path) else f" ({existing} is a file)"
            return f"{name} {path}: a file is there{where}; give a folder."
        if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
            return f"{name} {path}: {existing} is not writable."
    return None


# A shell's status for a command stopped by SIGPIPE (128 + 13).
_EXIT_BROKEN_PIPE = 141


def main(argv=None):
    """Entry point of the `keras-rise` console script."""
    _BARS_DRAWN.clear()  # a run cut short by an error may have left one mid-line
    # Read by TensorFlow when it makes its CPU allocator, at the first op.
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    # TensorFlow is imported once the arguments are read (`--help` and usage
    # errors need none of it), with its start-up log kept off stderr.
    with _startup.quiet_tensorflow_startup():
        parser = _build_parser()
        # Paths may come after options too ("explain MODEL --detections
        # DIR"): argparse leaves those over; they join the paths.
        args, extra = parser.parse_known_args(argv)
        if extra:
            if not hasattr(args, "paths") or any(item.startswith("-") for item in extra):
                # Said by the command's own parser: its --help lists its options.
                parser.commands.get(getattr(args, "command", None), parser).error(
                    f"unrecognized arguments: {' '.join(extra)}"
                )
            args.paths += extra
        missing = _missing_path(args) or _unwritable_folder(args)
        if missing:
            # Said before TensorFlow is imported: a mistyped path is answered
            # at once, in the words the loaders would use.
            print(f"keras-rise: error: {missing}", file=sys.stderr)
            return _EXIT_USAGE
        keras_rise._import_all()
        _startup.compile_once_with_xla()
    # An --out folder this run makes is not left behind empty by a failure.
    out = getattr(args, "out", None)
    fresh = out is not None and not os.path.lexists(out)
    try:
        with warnings.catch_warnings():
            # A warning is one line on the command line, as an error is,
            # without the source line Python's default format shows.
            warnings.showwarning = _show_warning
            # The command scales the pixels it reads itself (--input-range,
            # --preprocess, or as the model tells).
            from keras_rise.inputs import PixelRangeWarning

            warnings.simplefilter("ignore", PixelRangeWarning)
            if args.command == "explain":
                _explain_command(args)
            elif args.command == "evaluate":
                _evaluate_command(args)
            elif args.command == "export":
                _export_command(args)
    except BrokenPipeError:
        # The reader of stdout stopped early (`keras-rise explain ... --json |
        # head`), as for other Unix tools: nothing to say, and Python must not
        # flush into the closed pipe again at exit.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured)
            pass
        return _EXIT_BROKEN_PIPE
    except (ValueError, TypeError, OSError) as error:
        print(f"keras-rise: error: {first_line(error)}", file=sys.stderr)
        if fresh and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        return _EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
