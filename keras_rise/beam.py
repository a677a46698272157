"""RISE over many files with Apache Beam: `RunInference` and a ready pipeline.

Needs the `beam` extra: `pip install "keras-rise[beam]"`.

`RiseModelHandler` plugs RISE into Beam's `RunInference`: each worker loads
the model once and explains batches of images. The ready pipeline reads
image files, explains them and writes, per image, `DIR/<stem>.npy` (the
map, at the file's own size, as the command line writes it) and
`DIR/<stem>.png` (the overlay) — in subfolders as the files lie below the
pattern's folder, e.g. `DIR/cat/0001.npy` for "photos/*/*.png" — plus
`DIR/index.csv` (`image,class_id,score`); files that cannot be read go to
a dead-letter output, `DIR/errors.csv` (`image,error`), and the pipeline
still finishes (the command's exit status is then 2, as `keras-rise
explain`'s). A rerun into the same folder writes every map again
(`keras_rise.explain_dataset` resumes instead):

    python -m keras_rise.beam --model MODEL --input "images/*.png" --output DIR \\
        [--num-masks N] [--seed S] [--batch-size B] [--all-classes] [any Beam pipeline option]

The same command runs on Dataflow, Flink or Spark by pipeline options only
(`--runner DataflowRunner --project ... --region ... --temp_location gs://...`).
Without `--runner` it runs on this machine with Beam's `FnApiRunner`: Beam's
`DirectRunner` first tries its Prism runner, a binary it downloads from
GitHub (and on a machine without internet access leaves a `beam-temp*`
folder behind before it falls back to the same `FnApiRunner`).
"""

import difflib
import os
import pathlib
import sys

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
)

from keras_rise import _checks, cli, dataset, loading
from keras_rise.config import RiseConfig
from keras_rise.preprocessing import Preprocessing


class RiseModelHandler(ModelHandler):
    """A Beam `ModelHandler` that answers images with RISE results.

    Elements are what `keras_rise.explain_dataset` reads: one image
    `(height, width, channels)` or a batch `(batch, height, width,
    channels)` the model takes (told apart by rank against the model's
    input), or a tuple `(images, labels)` to explain the classes the labels
    name: class ids (an int per image) or one-hot or probability vectors
    `(num_classes,)` per image, explained by their argmax. Each
    `PredictionResult.inference` is a `keras_rise.RiseResult` of its
    element (saliency, class_ids, scores, stderr, num_masks), with a batch
    axis for a batch. The elements of one call share every mask batch.
    With `targets="all"` the elements without labels get every class's map,
    `(height, width, num_classes)` per image (`class_ids`: the top class).
    A binary classifier's one sigmoid unit is read as its two classes, 0
    and 1 (`keras_rise.cli.sigmoid_as_two_classes`), as the command line
    reads it.

    Args:
        model_path: str, a `.keras` file or SavedModel folder, readable from
            every worker.
        max_batch_size: int, most elements explained together (a batch
            counts as one). Defaults to `8`.
        targets: `None` (default) to explain each unlabelled element's top
            class, or `"all"` for every class of a classifier.
        model_output: for a model of several outputs, the classifier output
            explained: a dict key, an output layer's name or a list index
            (`keras_rise.loading.load_model`). Defaults to `None` (a model
            of one output).
        custom_objects: module names or `.py` paths (importable on every
            worker) defining the model's custom layers, or a dict of them
            (`keras_rise.loading.load_model`). Defaults to `None`.
        **explainer_args: `RiseExplainer` arguments (`num_masks`, `seed`, …).

    Example:

    >>> handler = KeyedModelHandler(RiseModelHandler("model.keras", num_masks=2000))
    >>> results = keyed_images | RunInference(handler)  # (key, image) or (key, (image, label))
    """

    def __init__(
        self,
        model_path,
        max_batch_size=8,
        targets=None,
        model_output=None,
        custom_objects=None,
        **explainer_args,
    ):
        super().__init__()
        self._model_path = str(model_path)
        self._max_batch_size = _checks.integer("max_batch_size", max_batch_size, 1)
        if targets is not None and not (isinstance(targets, str) and targets == "all"):
            raise ValueError(
                '`targets` must be None (each image\'s top class) or "all" (every '
                f"class). Received: targets={targets!r}."
            )
        self._targets = targets
        self._model_output = model_output
        self._custom_objects = custom_objects
        self._explainer_args = RiseConfig.from_dict(explainer_args).arguments()

    def load_model(self):
        from keras_rise.explainer import RiseExplainer

        # Any one-input model: the elements are model inputs (images,
        # signals, token ids, volumes), read by `dataset.read_element`.
        model, _ = loading.load_model(
            self._model_path,
            images_only=False,
            model_output=self._model_output,
            custom_objects=self._custom_objects,
        )
        # A sigmoid unit's two classes, as the command line reads them.
        model = cli.sigmoid_as_two_classes(model)
        return RiseExplainer(model, **self._explainer_args)

    def run_inference(self, batch, model, inference_args=None):
        elements = [dataset.read_element(model, example) for example in batch]
        results = [None] * len(batch)
        # Elements with labels are explained for their classes, the others
        # for their top classes: one call for each kind.
        for labelled in (False, True):
            group = [
                index
                for index, (_, labels, _) in enumerate(elements)
                if (labels is not None) == labelled
            ]
            if group:
                explained = _explain(
                    model, [elements[index] for index in group], labelled, self._targets
                )
                for index, result in zip(group, explained):
                    results[index] = result
        return [
            PredictionResult(example, result) for example, result in zip(batch, results)
        ]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self._max_batch_size}


def _explain(explainer, elements, labelled, targets=None):
    """Explains elements from `dataset.read_element` together; a result for each.

    Labelled elements are explained for their labels' classes, the others for
    `targets` (`None`: their top classes, `"all"`: every class)."""
    images = np.concatenate([part for part, _, _ in elements])
    classes = targets
    if labelled:
        classes = np.concatenate(
            [
                dataset.class_ids(explainer, part, labels, single)
                for part, labels, single in elements
            ]
        )
    result = explainer.explain_result(images, classes, verbose=0)  # on workers
    results = []
    first = 0
    for part, _, single in elements:
        rows = first if single else slice(first, first + len(part))
        first += len(part)
        results.append(
            type(result)(
                *(tf.nest.map_structure(lambda x: x[rows], field) for field in result)
            )
        )
    return results


class _LoadImage(beam.DoFn):
    """Reads an image file for the model; unreadable ones go to "errors"."""

    def __init__(self, model_path, preprocessing=None, grid_size=None, custom_objects=None):
        self._model_path = model_path
        self._preprocessing = preprocessing
        self._grid_size = grid_size  # two axes: grayscale images without channels
        self._custom_objects = custom_objects
        self._input_shape = None

    def setup(self):
        model, self._input_shape = loading.load_model(
            self._model_path, grid_size=self._grid_size, custom_objects=self._custom_objects
        )
        if self._preprocessing is None:
            self._preprocessing = Preprocessing.for_model(model)
        del model

    def process(self, path):
        try:
            yield path, loading.load_image(path, self._input_shape, self._preprocessing)
        except (ValueError, OSError) as error:
            yield beam.pvalue.TaggedOutput("errors", (path, str(error)))


class _WriteOutputs(beam.DoFn):
    """Writes the map and the overlay of one image, at the image file's size,
    the overlay on the photo itself; yields its index row."""

    def __init__(self, output_dir, input_base=""):
        self._output_dir = output_dir
        self._input_base = input_base

    def process(self, keyed_result):
        from keras_rise import visualize

        path, prediction = keyed_result
        result = prediction.inference
        name = relative_name(path, self._input_base)
        output_dir = pathlib.Path(self._output_dir) / pathlib.PurePosixPath(name).parent
        output_dir.mkdir(parents=True, exist_ok=True)
        stem = pathlib.PurePosixPath(name).stem
        photo = loading.load_photo(path, prediction.example.shape[-1])
        saliency = visualize.resize_map(result.saliency, (photo.height, photo.width))
        # A score of another task than classes (a regressor's value) names
        # no class: -1, as in explain_dataset's index.
        class_id = -1 if np.size(result.class_ids) == 0 else int(result.class_ids)
        score = result.scores
        shown = saliency
        if saliency.ndim == 3:  # every class: the overlay and index show the top one
            shown, score = saliency[..., class_id], score[class_id]
        loading.save_map(output_dir / f"{stem}.npy", saliency)
        loading.save_png(output_dir / f"{stem}.png", visualize.overlay(photo, shown))
        yield name, class_id, float(score)


def input_base(pattern):
    """The folder of a file pattern before its first wildcard: `"photos/"`
    for `"photos/*/*.jpg"`, `"gs://bucket/x/"` for `"gs://bucket/x/*.png"`."""
    wildcard = min(
        (index for index in (pattern.find(c) for c in "*?[") if index >= 0),
        default=len(pattern),
    )
    return pattern[: pattern.rfind("/", 0, wildcard) + 1]


def relative_name(path, base):
    """How outputs name an input file: its path below the pattern's folder
    `base` (`input_base`), with `/` between folders — `"cat/0001.png"` for
    `photos/cat/0001.png` matched by `"photos/*/*.png"`, so that files of one
    name in two folders get outputs of their own; the file's name where it
    is not below `base`."""
    path = str(path)
    if base and path.startswith(base):
        return path[len(base):]
    if base and "://" not in base and "://" not in path:
        relative = pathlib.Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base)))
        if not relative.parts or relative.parts[0] != "..":
            return relative.as_posix()
    return pathlib.PurePosixPath(path).name


def _write_csv(rows, path, header):
    """Writes the gathered rows, sorted, as one CSV file."""
    loading.write_csv(path, header, sorted(rows))


def build_pipeline(
    pipeline,
    model_path,
    input_pattern,
    output_dir,
    preprocessing=None,
    targets=None,
    model_output=None,
    custom_objects=None,
    **explainer_args,
):
    """Adds the read → explain → write steps to a Beam pipeline.

    Maps (`.npy`) and overlays (`.png`, drawn on the photo) are written at
    each image file's own size, named after the file's path below the
    pattern's folder (`out/cat/0001.npy` for `photos/cat/0001.png` matched
    by `"photos/*/*.png"`; `relative_name`), as `index.csv` names them.
    With `targets="all"` each `.npy` holds every class's map, `(height,
    width, num_classes)`; the overlay and `index.csv` show the top class.

    Args:
        pipeline: an `apache_beam.Pipeline`.
        model_path: str, `.keras`, `.h5`/`.hdf5` file or SavedModel folder.
        input_pattern: str, a file pattern (glob) of images.
        output_dir: str, folder for the outputs (must exist).
        preprocessing: a `keras_rise.Preprocessing`: how the files' pixels
            in [0, 255] become model inputs; `None` (default) scales them
            to [0, 1] (a model of uint8 images, or one that starts by
            rescaling its pixels, takes them as they are,
            `Preprocessing.for_model`).
        targets: `None` (default) for each image's top class, or `"all"`.
        model_output: the output explained of a model of several outputs
            (`RiseModelHandler`). Defaults to `None`.
        custom_objects: where the model's custom layers are defined
            (`RiseModelHandler`). Defaults to `None`.
        **explainer_args: `RiseExplainer` arguments.
    """
    handler = KeyedModelHandler(
        RiseModelHandler(
            model_path,
            targets=targets,
            model_output=model_output,
            custom_objects=custom_objects,
            **explainer_args,
        )
    )
    paths = (
        pipeline
        | "Match" >> fileio.MatchFiles(input_pattern)
        | "Paths" >> beam.Map(lambda metadata: metadata.path)
        | "Spread" >> beam.Reshuffle()
    )
    grid_size = RiseConfig.from_dict(explainer_args).grid_size
    loaded = paths | "Load" >> beam.ParDo(
        _LoadImage(model_path, preprocessing, grid_size, custom_objects)
    ).with_outputs("errors", main="images")
    base = input_base(input_pattern)
    rows = (
        loaded.images
        | "Explain" >> RunInference(handler)
        | "Write" >> beam.ParDo(_WriteOutputs(output_dir, base))
    )
    index_path = str(pathlib.Path(output_dir) / "index.csv")
    errors_path = str(pathlib.Path(output_dir) / "errors.csv")
    _ = (
        rows
        | "GatherIndex" >> beam.combiners.ToList()
        | "WriteIndex"
        >> beam.Map(_write_csv, index_path, ("image", "class_id", "score"))
    )
    _ = (
        loaded.errors
        | "ErrorRows" >> beam.Map(lambda item: (relative_name(item[0], base), item[1]))
        | "GatherErrors" >> beam.combiners.ToList()
        | "WriteErrors" >> beam.Map(_write_csv, errors_path, ("image", "error"))
    )


def _local_unless_told(pipeline_args):
    """The pipeline's options; without a `--runner`, Beam's `FnApiRunner`.

    Beam's default, `DirectRunner`, first tries its Prism runner, which
    downloads a binary from GitHub at run time (and, offline, leaves a temp
    folder behind before falling back to the `FnApiRunner`); the command
    goes to the `FnApiRunner` directly. A `--runner` given is kept.
    """
    options = PipelineOptions(pipeline_args)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "FnApiRunner"
    return options


class _StrictBeamParser(_BeamArgumentParser):
    """Beam's options parser, its errors raised (argparse would print Beam's
    whole usage, over a hundred lines, then exit)."""

    def error(self, message):
        raise ValueError(f"{message} (a Beam pipeline option).")


def _check_pipeline_args(pipeline_args, parser):
    """Refuses options that are neither the command's nor Beam's: Beam only
    logs them and runs on (a misspelt `--masks 100` ran with 4000 masks)."""
    beams = _StrictBeamParser(allow_abbrev=False)
    for options in {str(kind): kind for kind in PipelineOptions.__subclasses__()}.values():
        options._add_argparse_args(beams)
    _, unknown = beams.parse_known_args(pipeline_args)
    flags = [arg for arg in unknown if arg.startswith("-")]
    if flags or unknown:
        given = (flags or unknown)[0].split("=")[0]
        names = [
            option for known in (parser, beams) for action in known._actions
            for option in action.option_strings if option.startswith("--")
        ]
        spelled = {name.replace("-", "_"): name for name in names}
        close = difflib.get_close_matches(given.replace("-", "_"), list(spelled), n=1)
        guess = f" Did you mean {spelled[close[0]]}?" if close else ""
        what = "an option" if flags else "an argument"
        raise ValueError(
            f"{given} is not {what} of this command or of Beam's pipeline "
            f"(see --help).{guess}"
        )


def main(argv=None):
    """`python -m keras_rise.beam`: explain image files on any Beam runner."""
    parser = cli.OneLineParser(
        prog="python -m keras_rise.beam",
        description="Explain image files with RISE on Apache Beam: per file a map "
        "(.npy, at the file's size) and an overlay (.png) in --output, with index.csv "
        "and errors.csv; a rerun writes them all again. Other options go to the Beam "
        "pipeline (e.g. --runner, --direct_num_workers). Without --runner it runs "
        "here, on Beam's FnApiRunner.",
    )
    parser.add_argument("--model", required=True, help=".keras file or SavedModel")
    parser.add_argument("--input", required=True, help="file pattern of images")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--all-classes",
        action="store_true",
        help="write every class's map per image, (height, width, classes); the "
        "overlay and index.csv show the top class",
    )
    cli.add_model_options(parser)
    cli.add_rise_options(parser, tolerance=False)
    cli.add_input_options(parser)
    args, pipeline_args = parser.parse_known_args(argv)
    output = pathlib.Path(args.output)
    try:
        _check_pipeline_args(pipeline_args, parser)
        # The model and the options are checked here, before any worker
        # starts, so that a mistake is one line rather than a worker's trace.
        explainer_args = cli.explainer_args(args)
        explainer = RiseModelHandler(
            args.model,
            model_output=args.model_output,
            custom_objects=args.custom_objects,
            **explainer_args,
        ).load_model()
        loading.image_input_shape(
            explainer.model, args.model, args.grid_size,
            hint="The pipeline reads image files: explain .npy arrays with keras-rise "
            "explain, or elements of any shape with keras_rise.beam.RiseModelHandler "
            "in RunInference.",
        )
        preprocessing = cli.preprocessing_of(args, explainer.model)
        shape = tuple(getattr(explainer.model, "input_shape", (None, None))[1:])
        if shape and all(isinstance(size, int) for size in shape):
            # The pipeline explains classifiers: anything else is told now,
            # not by a worker's trace after the pipeline has started.
            cli.class_scores(
                explainer, np.zeros((1, *shape), np.float32), parser.prog,
                "For a detector use keras-rise explain --detections; pick one head "
                "of several with --model-output; for other outputs build the "
                "pipeline in Python (keras_rise.beam.RiseModelHandler with a score).",
                values_hint="build the pipeline in Python: keras_rise.beam.RiseModelHandler "
                "with the score keras_rise.scores.OutputScore(index=k) explains value k",
            )
        if not FileSystems.match([args.input])[0].metadata_list:
            raise ValueError(f"--input {args.input}: no file matches this pattern.")
        _checks.output_folder("--output", output)
        output.mkdir(parents=True, exist_ok=True)
        with beam.Pipeline(options=_local_unless_told(pipeline_args)) as pipeline:
            build_pipeline(
                pipeline,
                args.model,
                args.input,
                str(output),
                preprocessing=preprocessing,
                targets="all" if args.all_classes else None,
                model_output=args.model_output,
                custom_objects=args.custom_objects,
                **explainer_args,
            )
    except (ValueError, TypeError, OSError) as error:
        print(f"{parser.prog}: error: {cli.first_line(error)}", file=sys.stderr)
        return 2
    explained = max(0, len((output / "index.csv").read_text().splitlines()) - 1)
    errors_file = output / "errors.csv"
    failed = (
        max(0, len(errors_file.read_text().splitlines()) - 1)
        if errors_file.exists()
        else 0
    )
    print(
        f"explained {explained} image{'' if explained == 1 else 's'} into {output}; {failed} failed"
        + (f" (see {errors_file})" if failed else "")
    )
    # As keras-rise explain: a file not explained is a status of 2, for scripts.
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
