"""`explain_dataset`: RISE maps for a whole dataset, written as they come.

The dataset may be batched or not, and its elements images or
`(images, labels)` pairs, as `tf.data` pipelines and
`keras.utils.image_dataset_from_directory` make them; a
`keras.utils.PyDataset` or arrays are read as `tf.data` datasets
(`as_dataset`). Maps are numbered by
the image's position in the dataset and written through a temporary file
and a rename, and `index.csv` gets a line only after its map is in place, so
a crash loses no finished map and leaves no half-written one; a rerun skips
what is done. Only one batch, or `images_per_call` single images, is held
at a time, however long the dataset.
"""

import contextlib
import csv
import hashlib
import inspect
import json
import os
import pathlib
import socket
import warnings
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks, _progress, loading, scores, text
from keras_rise.explainer import RiseExplainer

INDEX_HEADER = ("index", "class_id", "score")


class DatasetSummary(NamedTuple):
    """What `explain_dataset` did.

    Attributes:
        written: int, maps written by this call.
        skipped: int, maps already present from an earlier run.
    """

    written: int
    skipped: int


def _finished(output_dir):
    """Rows of `index.csv` whose map exists, `{index: (class_id, score,
    name)}` (the name `""` in an index without that column), and whether
    the index has a `name` column."""
    index_path = output_dir / "index.csv"
    rows, named = {}, False
    if index_path.exists():
        with open(index_path, newline="", encoding="utf-8") as file:
            for row in csv.reader(file):
                if row and row[0] == "index":
                    named = "name" in row
                    continue
                if len(row) not in (3, 4):
                    continue  # a line cut short by a crash
                try:
                    index, class_id, score = int(row[0]), int(row[1]), float(row[2])
                except ValueError:
                    continue
                if (output_dir / f"{index:06d}.npy").exists():
                    rows[index] = (class_id, score, row[3] if len(row) == 4 else "")
    return rows, named


def _rewrite_index(output_dir, rows, named):
    """`index.csv` cut to `rows` (from `_finished`), the maps in place, with
    the `name` column or without."""
    loading.write_csv(
        output_dir / "index.csv",
        INDEX_HEADER + (("name",) if named else ()),
        [(index, *rows[index][: 3 if named else 2]) for index in sorted(rows)],
    )


def _pipeline_graph(dataset):
    """The `tf.GraphDef` of a `tf.data.Dataset`'s pipeline: its operations
    (`ShuffleDataset`, `RepeatDataset`, ...) as nodes, the functions it maps
    in its library."""
    return tf.compat.v1.GraphDef.FromString(
        tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor).numpy()
    )


def _unordered(dataset):
    """`(why, how to fix it)` when a `tf.data.Dataset`'s elements do not come
    in its source's order, or `None` when they do: it shuffles them anywhere in its pipeline
    (`shuffle`, as `image_dataset_from_directory` does unless given
    `shuffle=False`), draws them at random from several datasets
    (`sample_from_datasets`), or gives the results of a parallel `map`,
    `interleave` or `batch` as they come (`deterministic=False`, or
    `tf.data.Options.deterministic = False`)."""
    graph = _pipeline_graph(dataset)
    nodes = list(graph.node)
    for function in graph.library.function:  # inside interleave, flat_map, ...
        nodes += list(function.node_def)
    operations = {node.op for node in nodes}
    if any("Shuffle" in operation for operation in operations):
        return (
            "shuffles its elements",
            "without shuffling (image_dataset_from_directory(..., shuffle=False))",
        )
    if "DirectedInterleaveDataset" in operations and any(
        operation.startswith("RandomDataset") for operation in operations
    ):
        return (
            "draws its elements at random from several datasets (sample_from_datasets)",
            "without sample_from_datasets",
        )
    orders = {
        node.attr["deterministic"].s.decode() for node in nodes if "deterministic" in node.attr
    }
    if "false" in orders or ("default" in orders and dataset.options().deterministic is False):
        return (
            "gives the results of parallel calls as they come (deterministic=False)",
            "with them in order (deterministic=None or True in map, interleave and batch, "
            "tf.data.Options.deterministic not False)",
        )
    return None


def _spec_of(value):
    """A `tf.TensorSpec` (or a structure of them) of `value`'s rank and
    dtype, every axis free: the batches of a `keras.utils.PyDataset`, or
    the rows of arrays, may differ in size."""
    def spec(part):
        tensor = tf.convert_to_tensor(part)
        return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)

    return tf.nest.map_structure(spec, value)


def _batch_of(py_dataset, index):
    """Batch `index` of a `keras.utils.PyDataset`, as Keras reads it: a list
    is a tuple `(x, y[, sample_weight])`, and a tuple of one is its `x`;
    labels and weights given as lists are arrays, a list of arrays as `x`
    the inputs of a model of several (a tuple), a list of texts an array."""
    batch = py_dataset[index]
    if isinstance(batch, list):
        batch = tuple(batch)
    if isinstance(batch, tuple) and len(batch) == 1:
        batch = batch[0]
    if isinstance(batch, tuple):
        inputs = batch[0]
        if isinstance(inputs, list):  # several inputs, or texts
            several = all(isinstance(item, (np.ndarray, tf.Tensor)) for item in inputs)
            inputs = tuple(inputs) if several else _as_array(inputs, "a batch's inputs")
        batch = (inputs,) + tuple(np.asarray(part) for part in batch[1:])
    return batch


def _from_generator(rows, count, first):
    """A `tf.data.Dataset` of `count` elements, `rows(i)` each; `first` is
    `rows(0)`, which gives the elements' structure and is not read again
    (a `PyDataset`'s batch may be files read from disk)."""
    def generate():
        yield first
        for index in range(1, count):
            yield rows(index)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=_spec_of(first))
    return dataset.apply(tf.data.experimental.assert_cardinality(count))


def _as_array(value, name):
    """A part of `explain_dataset`'s arrays as a NumPy array: a list of str
    (or bytes) an object array of texts, another list (labels, say) as NumPy
    reads it."""
    if isinstance(value, list) and value and all(
        isinstance(item, (str, bytes)) for item in value
    ):
        return np.array(value, dtype=object)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} could not be read as a NumPy array: {error}") from None


def _repeats_forever(dataset):
    """Whether a `tf.data.Dataset` of unknown length (a `filter` after a
    `repeat()`, say) repeats without end: a `repeat()` of its own pipeline
    (not inside a function it maps or interleaves) that no `take` follows."""
    try:
        graph = _pipeline_graph(dataset)
    except (tf.errors.OpError, ValueError, TypeError):
        return False
    nodes = {node.name: node for node in graph.node}

    def constant(name):
        node = nodes.get(name.split(":")[0])
        if node is None or node.op != "Const":
            return None
        value = tf.make_ndarray(node.attr["value"].tensor)
        return int(value) if np.ndim(value) == 0 else None

    consumers = {}
    for node in graph.node:
        for name in node.input[:1]:  # a dataset op's first input is its dataset
            consumers.setdefault(name.split(":")[0], []).append(node)
    for node in graph.node:
        if node.op != "RepeatDataset" or (constant(node.input[1]) or 0) >= 0:
            continue
        ended, pending = False, list(consumers.get(node.name, ()))
        while pending and not ended:
            after = pending.pop()
            if after.op == "TakeDataset" and (constant(after.input[1]) or -1) >= 0:
                ended = True
            pending += consumers.get(after.name, ())
        if not ended:
            return True
    return False


def _is_input_list(value, explainer):
    """Whether `value` is a list of a model's several inputs (arrays, for an
    explainer with `image_input`), not a list of images."""
    several = explainer is not None and explainer.image_input is not None
    return several and isinstance(value, list) and len(value) > 1 and all(
        isinstance(item, (np.ndarray, tf.Tensor)) for item in value
    )


def as_dataset(dataset, explainer=None):
    """`explain_dataset`'s `dataset` as a `tf.data.Dataset`.

    Takes a `tf.data.Dataset` (as it is), a `keras.utils.PyDataset` (one
    element per batch, in its index order, read in this process: its
    `workers` are not used), or arrays, as `keras.Model.predict` takes
    them: images `(num_images, height, width, channels)` (a NumPy array or
    tensor; texts, a list or array of str), a dict of arrays for the inputs
    of a model of several inputs, or a tuple `(images, labels)` (lists
    taken as arrays, but a list of arrays first: the inputs of a model of
    several, `([x1, x2], labels)`); one element per image. A Python
    generator is not taken (it can be read once only): make it a
    `tf.data.Dataset.from_generator` or a `keras.utils.PyDataset`.

    Args:
        dataset: as above.
        explainer: the `keras_rise.RiseExplainer` the images are for, or
            `None`; given, an array of one image (no batch axis) is told
            apart from a batch and refused.

    Raises:
        TypeError: `dataset` is none of these.
        ValueError: a dataset that repeats forever, an empty `PyDataset`,
            arrays whose first axes differ in length, or one image.
    """
    if isinstance(dataset, tf.data.Dataset):
        if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY) or (
            int(dataset.cardinality()) == int(tf.data.UNKNOWN_CARDINALITY)
            and _repeats_forever(dataset)
        ):
            raise ValueError(
                "`dataset` repeats forever (`.repeat()`), and explain_dataset writes a "
                "map for every image it yields; pass it without `.repeat()`, or "
                "`dataset.take(n)`."
            )
        return dataset
    if isinstance(dataset, keras.utils.PyDataset):
        count = dataset.num_batches
        if count is None:
            raise ValueError(
                "`dataset` is a keras.utils.PyDataset without an end (num_batches is "
                "None), and explain_dataset writes a map for every image; give it a "
                "length (`__len__`)."
            )
        if count < 1:
            raise ValueError(f"`dataset` is a keras.utils.PyDataset of {count} batches.")
        return _from_generator(
            lambda index: _batch_of(dataset, index), count, _batch_of(dataset, 0)
        )
    if isinstance(dataset, tuple) and len(dataset) == 1:
        dataset = dataset[0]  # `(x,)` is `x`, as Keras reads it
    if isinstance(dataset, list):
        if _is_input_list(dataset, explainer):
            raise TypeError(
                "`dataset` is a list of arrays, read as a model's several inputs, and a "
                "tuple element would be taken for (inputs, labels): pass the inputs as a "
                "dict by input name, or paired with labels, ([x1, x2], labels)."
            )
        if all(isinstance(item, (np.ndarray, tf.Tensor)) for item in dataset):
            dataset = _as_array(dataset, "`dataset`")  # images one by one: a batch
        elif not all(isinstance(item, (str, bytes)) for item in dataset):
            raise TypeError(
                "`dataset` as a list is one of texts (str); pass images as one array "
                "(num_images, height, width, channels), the inputs of a model of "
                "several inputs as a dict, and (images, labels) as a tuple. Received a "
                f"list of {sorted({type(item).__name__ for item in dataset})}."
            )
    if isinstance(dataset, (np.ndarray, tf.Tensor, dict, tuple, list)):
        if isinstance(dataset, dict):
            parts = {key: _as_array(value, f"`dataset[{key!r}]`") for key, value in dataset.items()}
        elif isinstance(dataset, tuple):
            parts = tuple(
                {
                    key: _as_array(value, f"`dataset[{index}][{key!r}]`")
                    for key, value in part.items()
                }
                if isinstance(part, dict)
                # A list of a model's inputs, as Keras takes `([x1, x2], y)`.
                else tuple(
                    _as_array(value, f"`dataset[{index}][{position}]`")
                    for position, value in enumerate(part)
                ) if index == 0 and _is_input_list(part, explainer)
                else _as_array(part, f"`dataset[{index}]`")
                for index, part in enumerate(dataset)
            )
        else:
            parts = _as_array(dataset, "`dataset`")
        lengths = {
            np.shape(part)[0] if np.ndim(part) else None for part in tf.nest.flatten(parts)
        }
        if None in lengths or len(lengths) != 1:
            raise ValueError(
                "`dataset`'s arrays must each hold one row per image, with as many "
                "rows each. Received first axes of "
                f"{tf.nest.map_structure(lambda part: np.shape(part)[:1], parts)}."
            )
        count = lengths.pop()
        if count < 1:
            raise ValueError("`dataset` holds no images (arrays of 0 rows).")
        _refuse_one_example(explainer, parts)

        def row(index):
            return tf.nest.map_structure(lambda part: part[index], parts)

        return _from_generator(row, count, row(0))
    hint = (
        " A generator is read once only: make it a tf.data.Dataset.from_generator(...) "
        "or a keras.utils.PyDataset."
        if inspect.isgenerator(dataset) or inspect.isasyncgen(dataset) else ""
    )
    raise TypeError(
        "`dataset` must be a tf.data.Dataset, a keras.utils.PyDataset or arrays "
        "(images, a dict of inputs, or an (images, labels) tuple). Received: "
        f"{type(dataset).__name__}.{hint}"
    )


def _refuse_one_example(explainer, parts):
    """Refuses arrays that hold one example without a batch axis: they are
    read a row at a time, so one image `(H, W, C)` would be `H` inputs."""
    if explainer is None:
        return
    try:
        shape = explainer.engine.inputs.image_shape()
    except (AttributeError, TypeError, ValueError):
        return
    inputs = parts[0] if isinstance(parts, tuple) else parts
    if isinstance(inputs, dict):
        key = explainer.image_input
        if key is None and len(inputs) == 1:
            key = next(iter(inputs))
        inputs = inputs.get(key) if isinstance(key, str) else None
    if shape is None or not isinstance(inputs, np.ndarray) or inputs.dtype == object:
        return
    rank = len(shape) - (1 if explainer.engine.inputs.adds_channel else 0)
    if inputs.ndim == rank:
        raise ValueError(
            f"`dataset`'s arrays are read one row per input, and the input array of shape "
            f"{inputs.shape} is one input of the model's rank (no batch axis): pass a "
            f"batch, e.g. x[None] for shape {(1,) + inputs.shape}."
        )


def _names(names, dataset):
    """`explain_dataset`'s `names` as a list of str, or `None`: the
    dataset's own `file_paths` when it has them and keeps their order."""
    if names is None:
        own = getattr(dataset, "file_paths", None)
        if own is None:
            return None
        unordered = _unordered(dataset)
        if unordered:
            warnings.warn(
                f"`dataset` {unordered[0]}, so its file_paths are not its order "
                f"and index.csv names no files; make it {unordered[1]} to have them.",
                stacklevel=3,
            )
            return None
        return [str(name) for name in own]
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise TypeError(
            "`names` must be a sequence of one name per image (e.g. a dataset's "
            f"file_paths). Received: {type(names).__name__}."
        )
    names = [os.fspath(name) if isinstance(name, os.PathLike) else name for name in names]
    wrong = [name for name in names if not isinstance(name, str)]
    if wrong:
        raise TypeError(
            "`names` must be str or paths, one per image. Received an item of "
            f"type {type(wrong[0]).__name__}."
        )
    unordered = _unordered(dataset)
    if unordered:
        raise ValueError(
            f"`names` follow the dataset's order, and `dataset` {unordered[0]}, so the "
            f"maps would be given other images' names; make it {unordered[1]}."
        )
    return names


def _request(explainer, targets, dataset):
    """What the maps of an output folder answer, as plain JSON values: the
    explainer's options, its image input, its model (name, weights' count
    and a digest of their values), `targets`, and a digest of the dataset's
    first input (a retrained model, other data or a shuffled dataset is
    not resumed into the maps of another), one key each."""
    if isinstance(targets, scores.CallableScore):
        targets = {"score": "function", **_function_identity(targets.function)}
    elif isinstance(targets, scores.Score):
        targets = {"score": type(targets).__name__, "config": targets.get_config()}
    return json.loads(json.dumps(
        {
            **explainer.config.to_dict(),
            "image_input": explainer.image_input,
            "model": _model_identity(explainer.model),
            "targets": targets,
            "data": _first_input_digest(explainer, dataset),
        },
        default=lambda value: np.asarray(value).tolist(),
    ))


def _function_identity(function):
    """A function by its name and code (Keras' serialization would warn about
    lambdas), so that a rerun with another function is told apart."""
    function = getattr(function, "python_function", function)  # a tf.function
    code = getattr(function, "__code__", None)
    return {
        "name": getattr(function, "__qualname__", type(function).__name__),
        "code": None if code is None else hashlib.sha1(
            code.co_code + repr(code.co_consts).encode()
        ).hexdigest(),
    }


def _model_identity(model):
    """A Keras model by its name, weights' count and a digest of their
    values; any other callable (a `tf.function`, Python code) as
    `_function_identity` tells functions apart."""
    if isinstance(model, keras.Model):
        digest = hashlib.sha1()
        for weight in model.weights:
            # The variable's own value (Keras' convert_to_numpy warns on NumPy 2).
            value = weight.value if hasattr(weight, "value") else weight
            digest.update(np.ascontiguousarray(np.asarray(value)).tobytes())
        return [model.name, int(model.count_params()), digest.hexdigest()]
    return _function_identity(model)


def _first_input_digest(explainer, dataset):
    """A digest of the dataset's first input (the first image of its first
    element, batched or not), or `None` for an empty dataset."""
    digest = hashlib.sha1()
    for element in dataset.take(1).as_numpy_iterator():
        try:
            images, _, _ = read_element(explainer, element)
        except (ValueError, TypeError) as error:
            raise type(error)(f"Dataset element 0: {error}") from None
        for value in tf.nest.flatten(images):
            array = np.asarray(value)[:1]
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes() if array.dtype != object else repr(array).encode())
        return digest.hexdigest()
    return None


LOCK_NAME = ".lock"


def _alive(pid):
    """Whether a process of this machine with id `pid` runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    except (OverflowError, ValueError):
        return False
    return True


# Folders this process writes now (its own locks; a lock naming this process
# otherwise is left from an earlier one of the same id, e.g. a restarted container).
_HELD = set()


@contextlib.contextmanager
def _claimed(output_dir):
    """Holds `output_dir/.lock` while maps are written, so that a second
    process given the same folder (two workers, one `output_dir`) is
    refused instead of overwriting the first's maps; a lock left by a
    process that died on this machine (a run killed midway) is taken over."""
    path = output_dir / LOCK_NAME
    mine = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(3):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = path.read_text().split()
            except FileNotFoundError:  # released meanwhile
                continue
            except OSError as error:  # not ours to read, or not a file
                raise ValueError(
                    f"`output_dir` {output_dir}: its lock {path} cannot be read "
                    f"({error.strerror or error}); another user's process may be "
                    "writing it: give this one its own output_dir."
                ) from None
            pid = int(holder[1]) if len(holder) == 2 and holder[1].isdigit() else None
            here = holder[:1] == mine.split()[:1] and pid is not None
            stale = here and (
                not _alive(pid) or (pid == os.getpid() and str(path) not in _HELD)
            )
            if stale:
                path.unlink(missing_ok=True)
                continue
            raise ValueError(
                f"`output_dir` {output_dir} is being written by another process "
                f"({' '.join(holder) or 'unknown'}, host and process id, in {path}); "
                "give each process its own output_dir (e.g. one per dataset shard). "
                f"If none is running, delete {path}."
            ) from None
        with os.fdopen(handle, "w") as lock:
            lock.write(mine)
        break
    else:
        raise ValueError(
            f"`output_dir` {output_dir}: could not take its lock {path} (other "
            "processes keep taking it); give each process its own output_dir."
        )
    _HELD.add(str(path))
    try:
        yield
    finally:
        _HELD.discard(str(path))
        try:
            if path.read_text() == mine:  # still ours: not taken over meanwhile
                path.unlink()
        except OSError:
            pass


def _check_request(output_dir, request, has_maps):
    """Records the request in `output_dir/request.json`, or raises if the
    maps already there (`has_maps`) answer another one: a resumed run must
    not mix them."""
    path = output_dir / "request.json"
    if has_maps and path.exists():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if isinstance(earlier, dict) and earlier != request:
            differs = sorted(
                key for key in set(earlier) | set(request) if earlier.get(key) != request.get(key)
            )
            hint = (
                " (the first input of the dataset differs: other data, or a shuffled "
                "dataset, e.g. image_dataset_from_directory without shuffle=False)"
                if "data" in differs else ""
            )
            if "seed" in differs and isinstance(earlier.get("seed"), int):
                hint += f" (its maps were made with seed={earlier['seed']}; pass it to resume)"
            raise ValueError(
                f"`output_dir` {output_dir} holds maps of another request (it differs "
                f"in {', '.join(differs)}){hint}; a rerun only resumes the same one. Give "
                "a new folder, or empty this one."
            )
    text = json.dumps(request, indent=1) + "\n"
    loading.write_atomically(path, lambda handle: handle.write(text.encode()))


def read_element(explainer, element):
    """The images of one element, with a batch axis, and its labels.

    The images go through `ModelInputs.check`, the one check of images in
    keras_rise: an element is one image or a batch by its rank against the
    model's input, and grayscale images may leave out a 1-channel model's
    channel axis. `explain_dataset` and the Beam `RiseModelHandler` read
    their elements with it.

    Args:
        explainer: the `keras_rise.RiseExplainer` the images are for.
        element: images, one `(height, width, channels)` or a batch
            `(batch, height, width, channels)`, or a tuple
            `(images, labels)` (or Keras' `(images, labels,
            sample_weights)`, the weights unread); for an explainer with
            `image_input`, the model's inputs (a dict, or a tuple in a
            pair) in place of images; for a model of one input, a dict
            of that one input too.

    Returns:
        `(images, labels, single)`: the images as a float array
        `(batch, height, width, channels)` (for a model of strings, texts:
        an object array of `str` `(batch,)`; for several inputs, a dict or
        list of them), the labels as given (`None` for images alone), and
        whether the element was one image.
    """
    if isinstance(element, tuple):
        if len(element) not in (2, 3):
            raise ValueError(
                "An element must be images, an (images, labels) pair or an (images, "
                f"labels, sample_weights) triple. Received a tuple of {len(element)}."
            )
        images, labels = element[:2]  # Keras' sample weights do not change a map
        declared = explainer.engine.inputs.input_names
        if len(declared) > 1 and explainer.image_input is not None and not isinstance(
            images, (dict, tuple, list)
        ):
            raise ValueError(
                f"A tuple element is read as (inputs, labels"
                f"{', sample_weights' if len(element) == 3 else ''}), and its inputs "
                "here are one array where the model takes "
                f"{len(declared)}; yield a dict of its inputs by name, "
                "or pair a tuple of them with labels: "
                "Dataset.from_tensor_slices(((images, other), labels))."
            )
    else:
        images, labels = element, None
    if (
        isinstance(images, dict) and len(images) == 1 and explainer.image_input is None
        and len(getattr(explainer.model, "inputs", None) or ()) == 1
    ):
        images = next(iter(images.values()))  # a model of one input, by its name
    if isinstance(images, (dict, tuple, list)) and explainer.image_input is None:
        kind = f"dict with keys {sorted(images)}" if isinstance(images, dict) else "tuple"
        raise TypeError(
            "An element must be images or an (images, labels) pair; the inputs of a "
            "model of several inputs (a dict, or a tuple paired with labels) need an "
            f"explainer with `image_input`. Received a {kind}."
        )
    if explainer._reads_text(images):
        given, others, key, keys = explainer._text_parts(images)
        texts, single = text.as_texts(given)
        texts = np.array(texts, dtype=object)
        if key is None:
            return texts, labels, single
        values = {other: value[None] if single else value for other, value in others.items()}
        values[key] = texts
        if isinstance(images, dict):
            return {name: values[name] for name in keys}, labels, single
        return [values[index] for index in keys], labels, single
    images, single = explainer.engine.inputs.check(images)
    return images, labels, single


def batch_length(images):
    """The number of examples in `images` from `read_element` (an array, or
    the dict or list of a model of several inputs)."""
    return len(tf.nest.flatten(images)[0])


def _rows(images, rows):
    """The examples `rows` of `images` (an array, or a dict or list of them)."""
    return tf.nest.map_structure(lambda x: x[rows], images)


def class_ids(explainer, images, labels, single, binary=False):
    """The classes that `labels` name for `images` (from `read_element`).

    `binary`: the model is a binary classifier's one sigmoid unit
    (`keras_rise.scores.is_sigmoid_unit`), whose labels are 0 or 1.

    Returns:
        int32 `(batch,)`: integer labels as they are, one-hot or probability
        labels (a last axis of the model's number of classes) by argmax.
    """
    batch = None if single else batch_length(images)
    if binary:
        return _checks.labels(labels, 2, batch, binary=True)
    return _checks.labels(labels, _num_classes(explainer, images), batch)


def _num_classes(explainer, images):
    """The number of classes the model scores, from its output on the first
    image (the explainer's probe, made once per input shape)."""
    outputs, _ = explainer._probe(images)
    try:
        selected = scores.ClassScore().select(outputs)
    except ValueError:
        selected = outputs
    shape = getattr(selected, "shape", None)
    if shape is None or len(shape) != 2:
        received = f"shape {tuple(shape)}" if shape is not None else type(outputs).__name__
        raise ValueError(
            "`labels` name classes: they need a model that returns class scores "
            f"(batch, num_classes); it returns {received}. Pass `targets=` (e.g. a "
            "keras_rise.scores.Score) to explain the images whatever their labels."
        )
    return int(shape[1])


def _takes_both(explainer, shape, other):
    """Whether the explainer's model takes inputs of both shapes (one input
    of the dataset's): its declared input leaves every axis where they
    differ free (`None`), as an LSTM's `keras.Input((None, 1))` does, or it
    declares none (a plain function)."""
    if not isinstance(shape, tuple) or not isinstance(other, tuple) or len(shape) != len(other):
        return False  # several inputs, or of several ranks
    # As RISE masks it: a series masked per step and channel is (T, C, 1).
    declared = explainer.engine.inputs.image_shape()
    if declared is None:  # a function that declares nothing: tried as it comes
        return True
    if len(declared) != len(shape):
        return False
    return all(a == b or size is None for a, b, size in zip(shape, other, declared))


def _has_labels(dataset):
    """Whether elements are `(images, labels)` pairs; checks their structure."""
    spec = dataset.element_spec
    if isinstance(spec, (tf.TensorSpec, dict)):
        return False
    if (
        isinstance(spec, tuple) and len(spec) in (2, 3)
        and all(isinstance(part, tf.TensorSpec) for part in spec[1:])
    ):
        inputs = spec[0]
        if isinstance(inputs, (tf.TensorSpec, dict)) or (
            isinstance(inputs, tuple) and all(isinstance(x, tf.TensorSpec) for x in inputs)
        ):
            return True
    raise ValueError(
        "`dataset` must yield images, one (height, width, channels) or a batch "
        "(batch, height, width, channels), or (images, labels) pairs (for a model "
        "of several inputs, a dict of its inputs, or (inputs, labels)). Received "
        f"elements of structure {spec}."
    )


def explain_dataset(
    explainer, dataset, output_dir, targets=None, images_per_call=8, verbose="auto",
    names=None,
):
    """Explains every image of a dataset; writes one `.npy` map per image.

    Writes `output_dir/000000.npy`, `000001.npy`, … (float32 maps, numbered
    by the image's position in the dataset, counting the images of every
    batch) and `output_dir/index.csv` with columns `index,class_id,score`
    (the class explained, -1 for scores of other tasks, and the score of
    the unmasked image), and `name` (each image's file) given `names` or a
    dataset that knows its files. Rerunning with the same arguments skips every map
    already written; a rerun with other options, model, weights, targets or
    data (told by the dataset's first input) raises instead of mixing its
    maps with the earlier ones (the request is kept in
    `output_dir/request.json`). One process writes a folder at a time
    (`output_dir/.lock` while it runs): workers that each explain a shard
    of a dataset need one folder each.

    The dataset may be batched or not, with labels or without: elements
    are one image `(height, width, channels)` or a batch
    `(batch, height, width, channels)` (told apart by rank against the
    model's input; grayscale images may leave out a 1-channel model's
    channel axis; single inputs of several sizes, for a model that leaves
    those axes free such as `keras.Input((None, 1))`, are explained a size
    at a time), or `(images, labels)` pairs, as
    `keras.utils.image_dataset_from_directory` yields them (pixels in
    [0, 255]: the model must take them as they are). Labels are class ids
    (ints, `()` per image, `(batch,)` per batch) or one-hot or probability
    vectors (`(num_classes,)` per image, `(batch, num_classes)` per batch),
    whose argmax is the class explained; they must number the classes as
    the model does (`image_dataset_from_directory` numbers its folders in
    alphabetical order unless given `class_names=`). For a binary classifier's one
    sigmoid unit (`Dense(1, "sigmoid")`) labels 0 and 1, ints or floats,
    are its two classes, explained as `keras_rise.scores.BinaryScore` does
    (class 0's map is that of `1 - p`). A batch is explained as it
    comes, in one call; single images are gathered `images_per_call` at a
    time. How the images are batched changes the maps only by float rounding.
    For a model of strings the elements are texts (one string, or a batch),
    as `keras.utils.text_dataset_from_directory` yields them, and each map
    has one value per word (`keras_rise.text.words`). For a model of
    several inputs (an explainer with `image_input`) the elements are dicts
    of its inputs, or `(inputs, labels)` pairs with a dict or tuple of
    inputs; one example or a batch, as the masked input tells.

    Args:
        explainer: a `keras_rise.RiseExplainer`.
        dataset: a `tf.data.Dataset` of images or `(images, labels)` pairs,
            as above (Keras' `(images, labels, sample_weights)` too: the
            weights are not read), or as `keras.Model.predict` takes them
            too: a `keras.utils.PyDataset` (its batches in index order,
            read in this process) or arrays (images `(num_images, height,
            width, channels)`, a list of texts, a dict of a model's inputs,
            or an `(images, labels)` tuple; see
            `keras_rise.dataset.as_dataset`). A dataset
            that repeats forever, and a Python generator (read once only),
            are refused. Maps are numbered in its order, which must be the
            same from run to run for resuming to be right, and the files'
            own (`dataset.file_paths`) to tell which map is whose:
            `image_dataset_from_directory` shuffles unless given
            `shuffle=False`.
        output_dir: str or path, created if missing.
        targets: what to explain. `None` (default) explains the class the
            labels name, or each image's top class when there are no
            labels. Given, it wins over the labels, which are then not
            read: an int, the class to explain for every image; `"all"`,
            every class of a classifier (each map `(height, width,
            num_classes)`, and `index.csv` names the top class and its
            score); or a `keras_rise.scores.Score` (or a function of the
            model's outputs, as `explain` takes) with one target per image
            (a regression output, a region, a detection, ...).
        images_per_call: int, single images explained together (they share
            every mask batch). Defaults to `8`. A batched dataset's batches
            are explained one per call, whatever their size.
        verbose: progress over the dataset's elements (images, or batches
            of a batched dataset), as Keras' `verbose`: `0` silent, `1` a
            `keras.utils.Progbar`, `2` one line at the end, `"auto"` the bar
            once the run has taken 2 seconds (where standard output is not
            a terminal or a notebook, the one line of `2`, for a run that
            took 2 seconds). The explanations inside print nothing.
            Defaults to `"auto"`.
        names: a sequence of str (or paths), one per image in the dataset's
            order, written as `index.csv`'s `name` column, e.g. the
            `file_paths` of an `image_dataset_from_directory` dataset made
            with `shuffle=False` (a dataset that shuffles, draws from
            several datasets at random or gives parallel results as they
            come, `deterministic=False`, is refused: its order is not its
            files'). Defaults to `None`: the dataset's own
            `file_paths` when it has them (a dataset straight from
            `image_dataset_from_directory`, unshuffled; `dataset.map`
            makes a new dataset without them), else no names. Names may be
            given on a rerun: the maps already written get theirs too.

    Returns:
        A `DatasetSummary(written, skipped)`, counting maps (images).

    Example:

    >>> dataset = keras.utils.image_dataset_from_directory(
    ...     "photos", image_size=(224, 224), shuffle=False)
    >>> files = dataset.file_paths  # index.csv names each map's file
    >>> dataset = dataset.map(lambda x, y: (x / 255, y))  # a model of pixels in [0, 1]
    >>> keras_rise.explain_dataset(explainer, dataset, "maps", names=files)
    DatasetSummary(written=100, skipped=0)
    >>> dataset = tf.data.Dataset.from_tensor_slices(images)  # (100, 224, 224, 3)
    >>> keras_rise.explain_dataset(explainer, dataset, "top_classes")
    DatasetSummary(written=100, skipped=0)
    >>> keras_rise.explain_dataset(explainer, (images, labels), "labelled")  # arrays
    DatasetSummary(written=100, skipped=0)
    """
    if not isinstance(explainer, RiseExplainer):
        raise TypeError(
            "`explainer` must be a keras_rise.RiseExplainer. Received: "
            f"{type(explainer).__name__}."
        )
    dataset = as_dataset(dataset, explainer)
    has_labels = _has_labels(dataset)
    # Labels of a binary classifier's one sigmoid unit are 0 or 1, ints or
    # floats: its two classes, as the explainer reads them (`BinaryScore`).
    binary = has_labels and targets is None and scores.is_sigmoid_unit(explainer.model)
    every_class = isinstance(targets, str) and targets == "all"
    if isinstance(targets, scores.Score) or callable(targets):
        targets = scores.as_score(targets, "targets")  # a function too, as explain takes
    elif targets is not None and not every_class:
        if isinstance(targets, str):
            raise ValueError(
                f'`targets` must be None, an int, "all" or a score. Received: '
                f"targets={targets!r}."
            )
        targets = _checks.integer("targets", targets, minimum=0)
    images_per_call = _checks.integer("images_per_call", images_per_call, minimum=1)
    verbose = _progress.check_verbose(verbose)
    names = _names(names, dataset)
    output_dir = pathlib.Path(output_dir)
    _checks.output_folder("`output_dir`", output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with _claimed(output_dir):
        return _explain_into(
            explainer, dataset, output_dir, targets, images_per_call, verbose,
            has_labels, binary, every_class, names,
        )


def _explain_into(
    explainer, dataset, output_dir, targets, images_per_call, verbose, has_labels, binary,
    every_class, names,
):
    """`explain_dataset`'s loop, once its arguments are checked and the
    folder is claimed."""
    done, named = _finished(output_dir)
    _check_request(output_dir, _request(explainer, targets, dataset), bool(done))
    if names is not None:  # the maps already written are named too (a name cut short anew)
        done = {
            index: (class_id, score, names[index] if index < len(names) else name)
            for index, (class_id, score, name) in done.items()
        }
    # An index that names the earlier maps' files, resumed without names:
    # said when the first map without a name is written.
    unnamed = named and names is None
    named = named or names is not None
    _rewrite_index(output_dir, done, named)
    written = skipped = 0

    def explain(positions, images, classes, where):
        """Explains the dataset's images at `positions`; writes their maps."""
        nonlocal written, unnamed
        if unnamed:
            warnings.warn(
                "index.csv names the files of the maps written before, and this run "
                "was given no names: the maps it adds have none. Pass names= as before.",
                stacklevel=4,
            )
            unnamed = False
        try:
            result = explainer.explain_result(
                images, classes if targets is None else targets, verbose=0
            )
            saliency, explained, unmasked = result.saliency, result.targets, result.scores
        except (ValueError, TypeError) as error:
            raise type(error)(f"{where}: {error}") from error
        if every_class:  # one map per class; the index names the top class
            unmasked = np.max(unmasked, axis=1)
        elif np.ndim(unmasked) != 1:
            raise ValueError(
                "explain_dataset writes one score per image; the score gives "
                f"{np.shape(unmasked)[1]} per image. Pass a score with one target, "
                'or targets="all" for every class of a classifier.'
            )
        # Class scores' targets are class ids; other scores' are not classes.
        if not (isinstance(explained, np.ndarray) and explained.ndim == 1):
            explained = np.full(len(positions), -1)
        with open(output_dir / "index.csv", "a", newline="", encoding="utf-8") as index_file:
            writer = csv.writer(index_file, lineterminator="\n")
            texts = explainer._text_parts(images)[0] if explainer._reads_text(images) else None
            for row, position in enumerate(positions):
                row_map = saliency[row]
                if texts is not None:  # a value per word, no NaN past the end
                    row_map = row_map[: len(texts[row].split())]
                loading.save_map(output_dir / f"{position:06d}.npy", row_map)
                writer.writerow(
                    (position, int(explained[row]), float(unmasked[row]))
                    + ((names[position] if names is not None else "",) if named else ())
                )
                index_file.flush()
                written += 1

    # Single images wait here to be explained `images_per_call` at a time.
    pending = []

    def flush():
        if pending:
            positions = [position for position, _, _ in pending]
            images = tf.nest.map_structure(
                lambda *parts: np.concatenate(parts), *[image for _, image, _ in pending]
            )
            classes = None
            if pending[0][2] is not None:
                classes = np.concatenate([class_id for _, _, class_id in pending])
            explain(positions, images, classes, f"Dataset elements {positions}")
            progress.add(len(pending))
            pending.clear()

    progress = None
    first = 0  # the position of the element's first image in the dataset
    shape = None
    for index, element in enumerate(dataset.as_numpy_iterator()):
        where = f"Dataset element {index}"
        try:
            images, labels, single = read_element(explainer, element)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{where}: {error}") from None
        if progress is None:
            cardinality = int(dataset.cardinality())
            progress = _progress.Progress(
                verbose,
                cardinality if cardinality >= 0 else None,
                unit_name="image" if single else "batch",
            )
        count = batch_length(images)
        positions = list(range(first, first + count))
        first += count
        if names is not None and first > len(names):
            raise ValueError(
                f"{where}: `names` has {len(names)} names, and the dataset more "
                "images than that; give one name per image."
            )
        rows = [row for row, position in enumerate(positions) if position not in done]
        skipped += len(positions) - len(rows)
        if not rows:
            progress.add(1)
            continue
        classes = None
        if has_labels and targets is None:
            try:
                classes = class_ids(explainer, images, labels, single, binary)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
        if single:
            shapes = tf.nest.map_structure(lambda x: x.shape[1:], images)
            if shape is None:
                shape = shapes
            elif shapes != shape:
                if not _takes_both(explainer, shape, shapes):
                    raise ValueError(
                        f"{where}: an input of shape {shapes}, but the earlier inputs "
                        f"are {shape}, and the model takes one size: give inputs of "
                        "the model's size."
                    )
                # A model of any length (or size) takes each as it comes:
                # those of one size are explained together.
                flush()
                shape = shapes
            pending.append((positions[0], images, classes))
            if len(pending) == images_per_call:
                flush()
            continue
        flush()  # single images met before this batch, to keep the index in order
        if len(rows) < len(positions):  # a run that stopped midway wrote the others
            images = _rows(images, rows)
            classes = None if classes is None else classes[rows]
        positions = [positions[row] for row in rows]
        explain(
            positions, images, classes, f"{where} (images {positions[0]} to {positions[-1]})"
        )
        progress.add(1)
    flush()
    if progress is not None:
        progress.close()
    return DatasetSummary(written, skipped)
