"""Argument checks shared by the public entry points.

Each check returns the value as a plain Python object, or raises a
`TypeError`/`ValueError` that names the argument, shows what was received and
says what is expected.

TensorFlow is imported by the checks that use it, not with the module: the
command line reads its arguments with these checks (through
`keras_rise.config`) before it imports TensorFlow.
"""

import numbers
import os
import pathlib
import random
import re
import sys

import numpy as np

# The modes of `keras.applications.imagenet_utils.preprocess_input` that
# `keras_rise.Preprocessing` applies (its `mode`, the CLI's `--preprocess`).
PREPROCESSING_MODES = ("caffe", "torch", "tf")


def outside_stacklevel():
    """The `stacklevel` that makes a warning point at the first caller
    outside keras_rise, for `warnings.warn` called by this function's caller."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def integer(name, value, minimum=None):
    """Returns `value` as an `int`, checking its type and lower bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an int. Received: {name}={value!r} "
            f"(of type {type(value).__name__})."
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value}.")
    return value


def seed(value):
    """Returns a seed that fits the 64-bit Philox key; `None` draws one at
    random from Python's `random`, as Keras' `seed=None` does (so that
    `keras.utils.set_random_seed` makes it the same from run to run)."""
    if value is None:
        return random.getrandbits(63)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            "`seed` must be an int, or None for one drawn at random. "
            f"Received: seed={value!r} (of type {type(value).__name__})."
        )
    value = int(value)
    if not -(2**63) <= value < 2**63:
        raise ValueError(
            f"`seed` must fit in a signed 64-bit integer. Received: seed={value}."
        )
    return value


def keep_prob(value):
    """Returns the cell keep probability, a float in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            "`keep_prob` must be a float in (0, 1). "
            f"Received: keep_prob={value!r} (of type {type(value).__name__})."
        )
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(
            "`keep_prob` must be in the open interval (0, 1). "
            f"Received: keep_prob={value}."
        )
    return value


def finite_float(name, value):
    """Returns `value`, a real number, as a finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a float. Received: {name}={value!r} "
            f"(of type {type(value).__name__})."
        )
    if not np.isfinite(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value}.")
    return float(value)


def unit_interval(name, value):
    """Returns `value`, a probability or an overlap, as a float in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a float in [0, 1]. Received: {name}={value!r} "
            f"(of type {type(value).__name__})."
        )
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}.")
    return value


def box_format(value, formats):
    """Returns `value` if it names one of `formats`, the box formats of
    `keras.utils.bounding_boxes` that the detector scores read."""
    if not isinstance(value, str) or value not in formats:
        raise ValueError(
            f"`box_format` must be one of {formats}. Received: box_format={value!r}."
        )
    return value


def image_size(value):
    """Returns the masks' shape, `(length,)`, `(height, width)` or
    `(depth, height, width)`, as a tuple of positive ints."""
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3:
        raise ValueError(
            "`image_size` must be the masks' shape: (length,), (height, width) or "
            f"(depth, height, width). Received: image_size={value!r}."
        )
    return tuple(integer("image_size", side, minimum=1) for side in value)


def grid_size(value, size=None, binary=False):
    """Returns the grid size: `None`, an int or a tuple of one int per axis.

    With `size` (the masked axes of the inputs, e.g. `(height, width)`),
    checks that the grid has one entry per axis and fits in each; `None`
    stands for 7 per axis (one per position on a shorter axis), or one cell
    per position for `binary` masks. With `binary` one bool per axis, some
    true (a series' channels kept whole), those axes have one cell per
    position: an int is the other axes' cells, and a tuple must give those
    axes their length.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()  # a 1-D array as a list, a 0-d one as a number
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if not value:
            raise ValueError("`grid_size` must not be an empty tuple.")
        for cells in value:
            try:
                integer("grid_size", cells, minimum=1)
            except (TypeError, ValueError) as error:
                raise type(error)(
                    "`grid_size` must hold ints >= 1, one per masked axis. Received: "
                    f"grid_size={tuple(value)!r}."
                ) from None
        value = tuple(int(cells) for cells in value)
    else:
        value = integer("grid_size", value, minimum=1)
    if size is None or None in tuple(size):
        return value
    size = tuple(int(axis) for axis in size)
    if isinstance(value, tuple) and len(value) != len(size):
        raise ValueError(
            f"`grid_size` must give one number of cells per masked axis {size} "
            f"({len(size)} of them), or one int for all. Received: grid_size={value}."
        )
    whole = binary if isinstance(binary, tuple) and any(binary) else (False,) * len(size)
    if isinstance(value, tuple) and any(
        flag and c != axis for c, axis, flag in zip(value, size, whole)
    ):
        fitted = tuple(axis if flag else c for c, axis, flag in zip(value, size, whole))
        raise ValueError(
            "`grid_size` must give an axis kept whole by `binary_masks` one cell per "
            f"position, its length: grid_size={fitted} for masked axes of shape {size} "
            f"and binary_masks={binary}. Received: grid_size={value}."
        )
    cells = value if isinstance(value, tuple) else (value,) * len(size)
    if any(c > axis and not flag for c, axis, flag in zip(cells, size, whole)):
        if any(whole):
            raise ValueError(
                "`grid_size` must not exceed the length of a blended axis (an int is "
                "their cells, the axes kept whole having one per position). Received: "
                f"grid_size={value} for masked axes of shape {size} and "
                f"binary_masks={binary}."
            )
        _grid_misfit(value, size)
    return value


def _grid_misfit(value, size):
    """Raises the error for a grid with more cells than an axis has positions."""
    if len(size) == 2 and not isinstance(value, tuple):
        raise ValueError(
            "`grid_size` must not exceed the image's smaller side. "
            f"Received: grid_size={value} for images of "
            f"{size[0]}x{size[1]} pixels."
        )
    hint = ""
    if not isinstance(value, tuple):
        fitted = tuple(min(value, axis) for axis in size)
        hint = f" Pass one per axis, e.g. grid_size={fitted}."
    raise ValueError(
        f"`grid_size` must not exceed the length of any masked axis. "
        f"Received: grid_size={value} for masked axes of shape {size}.{hint}"
    )


def boolean(name, value):
    """Returns `value`, checking that it is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be a bool. Received: {name}={value!r} "
            f"(of type {type(value).__name__})."
        )
    return bool(value)


def binary_axes(name, value):
    """Returns `value`, checking that it is a bool or a tuple (or list, or
    1-D array) of bools, one per masked axis (returned as a tuple)."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype == bool:
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        if not value or not all(isinstance(flag, (bool, np.bool_)) for flag in value):
            raise TypeError(
                f"`{name}` must be a bool, or a tuple of bools with one per masked "
                f"axis, e.g. (False, True). Received: {name}={value!r}."
            )
        return tuple(bool(flag) for flag in value)
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` must be a bool, or a tuple of bools with one per masked axis, "
            f"e.g. (False, True). Received: {name}={value!r} (of type "
            f"{type(value).__name__})."
        )
    return bool(value)


def strategy(value):
    """Returns `value`, checking it is `None` or a `tf.distribute.Strategy`."""
    import tensorflow as tf

    if value is not None and not isinstance(value, tf.distribute.Strategy):
        raise TypeError(
            "`strategy` must be None or a tf.distribute.Strategy. Received: "
            f"{value!r} (of type {type(value).__name__})."
        )
    return value


def sampling(value, name="sampling", keep_prob=None, auto=False):
    """Returns the mask sampling scheme: "independent", "stratified" or
    "orthogonal" (which needs `keep_prob=0.5`, checked when given), or with
    `auto` also "auto" (see `keras_rise.masks.auto_sampling`)."""
    choices = ("independent", "stratified", "orthogonal")
    if auto:
        choices = ("auto",) + choices
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}."
        )
    if value == "orthogonal" and keep_prob is not None and keep_prob != 0.5:
        raise ValueError(
            f'`{name}="orthogonal"` needs `keep_prob=0.5`: its code keeps every cell '
            f"in half of each run of masks. Received: keep_prob={keep_prob}."
        )
    return value


def complementary(value, keep_prob, name="complementary"):
    """Checks the complementary-masks flag: a bool, true only with `keep_prob=0.5`."""
    value = boolean(name, value)
    if value and keep_prob != 0.5:
        raise ValueError(
            f"`{name}=True` needs `keep_prob=0.5`: only then is the complement "
            f"1 - mask itself a RISE mask. Received: keep_prob={keep_prob}."
        )
    return value


# The axes a fill may cover: one image's, or the whole batch's.
_IMAGE_AXES = {3: "(height, width, channels)", 4: "(batch, height, width, channels)"}


def _axes_text(ndim):
    """How messages name the axes a fill covers."""
    return _IMAGE_AXES.get(ndim, "shape")


def fill_value(value, name="fill_value", max_ndim=3, words=False):
    """Returns a finite float, or a float32 array for per-pixel fills.

    `max_ndim` bounds the array's rank: 3 for a fill shared by every image,
    4 to allow one per image, 5 for one per volume or video; whether it fits
    the inputs is checked with them (`fill_broadcasts`). With `words`, any
    other string is a fill word for texts (`fill_word`).
    """
    from keras_rise.inputs import FILL_MODES

    if isinstance(value, str):
        if value in FILL_MODES:
            return value
        if words:
            return fill_word(value, name)
        raise ValueError(
            f'`{name}` must be a float, an array, "mean" or "blur". '
            f"Received: {name}={value!r}."
        )
    if isinstance(value, bool) or value is None:
        raise TypeError(f"`{name}` must be a float or an array. Received: {value!r}.")
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"`{name}` must be finite. Received: {name}={value}.")
        return value
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{name}` must be a float or an array broadcastable to the images' "
            f"{_axes_text(max_ndim)}. Received: {value!r}."
        ) from None
    if array.ndim > max_ndim:
        raise ValueError(
            f"`{name}` must broadcast to the images' {_axes_text(max_ndim)}. "
            f"Received an array of shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite; it contains NaN or inf.")
    return array


def fill_word(value, name="fill_value"):
    """Checks a fill word for texts: one word, no whitespace.

    Raises:
        ValueError: for an empty string or one with whitespace.
    """
    if not value or len(value.split()) != 1 or value.strip() != value:
        raise ValueError(
            f"`{name}` as a string other than \"mean\" or \"blur\" is the word that "
            "takes each masked word's place in a text: one word without spaces, e.g. "
            f'"[UNK]" or "[MASK]". Received: {name}={value!r}.'
        )
    return value


def image_fill(value, name="fill_value"):
    """Refuses a fill word (`fill_word`) for inputs that are not texts.

    Raises:
        ValueError: for a string other than "mean" or "blur".
    """
    from keras_rise.inputs import FILL_MODES

    if isinstance(value, str) and value not in FILL_MODES:
        raise ValueError(
            f"`{name}={value!r}` is a fill word, for models of strings (texts); "
            'other inputs take a number or an array ("mean" or "blur" too for '
            "real values; token ids take a token id, e.g. the pad token's)."
        )


def token_fill(value, name="fill_value"):
    """Checks a fill for token ids: whole numbers >= 0, not "mean" or "blur".

    Args:
        value: a `fill_value` as `fill_value` returned it.
        name: the argument's name, for the message.

    Raises:
        ValueError: for anything but token ids.
    """
    if (
        isinstance(value, str)
        or not np.all(np.asarray(value) == np.round(value))
        or np.any(np.asarray(value) < 0)
    ):
        raise ValueError(
            f"`{name}` must be a token id (an int >= 0, e.g. the pad or mask token) "
            f"for a model that takes token ids: masked tokens are replaced by it. "
            f"Received: {name}={_whole(value)!r}."
        )


def _whole(value):
    """A float that holds a whole number as that int, for messages (a fill
    given as -1 reads -1 there, not -1.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def fill_broadcasts(value, image_shape, name="fill_value"):
    """Checks that an array fill (from `fill_value`) broadcasts to `image_shape`."""
    if isinstance(value, np.ndarray):
        image_shape = tuple(image_shape)
        try:
            if None in image_shape:  # a dynamic size: the rank can be checked
                fits = value.ndim <= len(image_shape)
            else:
                fits = np.broadcast_shapes(value.shape, image_shape) == image_shape
        except ValueError:
            fits = False
        if not fits:
            hint = ""
            if value.ndim > len(image_shape):
                hint = (
                    " One fill per image is for RiseExplainer; a layer or an "
                    "export takes one fill for every image."
                )
            raise ValueError(
                f"`{name}` of shape {value.shape} does not broadcast to the "
                f"inputs' {_axes_text(len(image_shape))} = {image_shape}.{hint}"
            )


def images(value, model=None):
    """Returns `(images, single)`: a 4-D float array, and whether one image was given.

    The checks of `keras_rise.inputs.ModelInputs.check` for a model with one
    image input (or none known).
    """
    from keras_rise.inputs import ModelInputs

    return ModelInputs(model).check(value)


def targets(value, batch, num_classes):
    """Resolves `targets` into `(class_ids or None, all_classes)`.

    With `num_classes=None` only the form is checked, not the range.

    Returns:
        `(None, False)` for each image's top class, `(None, True)` for every
        class, or `(int32 array (batch,), False)` for given classes.
    """
    if value is None:
        return None, False
    if isinstance(value, str):
        if value == "all":
            return None, True
        raise ValueError(
            'A string `targets` must be "all". Received: targets='
            f'{value!r}. Pass None, an int, a sequence of ints or "all".'
        )
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        ids = np.full((batch,), int(value), dtype=np.int64)
    else:
        import tensorflow as tf

        if tf.is_tensor(value):
            value = value.numpy()
        ids = np.asarray(value)
        if _class_vectors(ids, batch):
            # One-hot or probability vectors (as xplique and Keras' categorical
            # losses take them, and `labels` reads them): their argmax.
            vectors = ids.reshape(-1, ids.shape[-1])
            if len(vectors) != batch:
                raise ValueError(
                    "`targets` as one-hot or probability vectors must give one per "
                    f"image: expected {batch}, received shape {ids.shape}."
                )
            if num_classes is not None and vectors.shape[1] != num_classes:
                raise ValueError(
                    "`targets` as one-hot or probability vectors must have one value "
                    f"per class of the model's {num_classes}: expected shape ({batch}, "
                    f"{num_classes}), received {ids.shape}."
                )
            _check_class_vectors(vectors.astype(np.float64), "targets")
            ids = np.argmax(vectors, axis=-1)
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            shown = _array_text(value, ids)
            raise TypeError(
                '`targets` must be None, an int, a sequence of ints, "all", one-hot '
                "or probability vectors (batch, num_classes) of floats, or one score "
                "(a keras_rise.scores.Score or a function of the outputs; a "
                "ClassScore([3, 5]) explains several classes at once). Received: "
                f"targets={shown}."
            )
        if ids.ndim == 0:  # a scalar tensor or array: one class for every image
            ids = np.full((batch,), int(ids), dtype=np.int64)
        if ids.ndim != 1 or len(ids) != batch:
            raise ValueError(
                f"`targets` must give one class per image: expected {batch} "
                f"ints, received shape {ids.shape}."
            )
    if num_classes is None:  # the form only
        return ids.astype(np.int32), False
    class_range("targets", ids, num_classes)
    return ids.astype(np.int32), False


def _class_vectors(array, batch):
    """Whether class `targets` are floats of one vector over the classes per
    image: `(batch, K)`, or `(K,)` for one image."""
    if array.dtype == bool or not np.issubdtype(array.dtype, np.floating):
        return False
    if array.ndim == 2:
        return array.shape[1] > 1
    return array.ndim == 1 and batch == 1 and array.size > 1


def _array_text(value, array):
    """How a refused array reads in a message: short, with its dtype."""
    if array.dtype == object:
        return repr(value)
    if array.size > 8:
        return f"an array of shape {array.shape} and dtype {array.dtype}"
    return f"{value!r} (dtype {array.dtype})"


def class_range(name, ids, num_classes):
    """Raises when class ids `ids` (array-like ints) fall outside a model's
    `num_classes` classes, naming the first and the valid range."""
    ids = np.asarray(ids)
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if bad.size:
        hint = ""
        if num_classes == 1:
            hint = (
                " A binary classifier's one sigmoid unit is p, class 1's probability: "
                "keras_rise.scores.BinaryScore() explains class 0 (1 - p) or 1 (p)."
            )
        raise ValueError(
            f"`{name}` holds class index {int(bad[0])}, outside the model's "
            f"{num_classes} classes (valid: 0 to {num_classes - 1}).{hint}"
        )


def labels(value, num_classes, batch=None, binary=False):
    """Resolves a dataset's labels into the class ids they name.

    Args:
        value: array-like labels: class ids (ints; for two classes also
            0.0 and 1.0, as `label_mode="binary"` gives them), or one-hot or
            probability vectors over the classes, whose argmax is the class.
        num_classes: int, the classes the model scores.
        batch: int, the images the labels go with, or `None` for the label
            of one image (a class id, or one vector `(num_classes,)`).
        binary: bool, the model is a binary classifier's one sigmoid unit:
            its labels are 0 or 1, ints or floats (as Keras' binary
            cross-entropy takes them), `()` or `(1,)` per image.

    Returns:
        int32 class ids `(batch,)`, or `(1,)` for one image's label.
    """
    import tensorflow as tf

    if tf.is_tensor(value):
        value = value.numpy()
    array = np.asarray(value)
    leading = () if batch is None else (batch,)
    numeric = array.dtype != bool and (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    )
    integers = numeric and np.issubdtype(array.dtype, np.integer)
    floats = numeric and not integers
    if binary and numeric and array.shape in (leading, leading + (1,)):
        ids = array.reshape(-1)
        bad = ids[(ids != 0) & (ids != 1)]
        if bad.size:
            raise ValueError(
                "`labels` for a binary classifier's one sigmoid unit must be 0 or 1 "
                f"(its two classes). Received {bad[0]!r}."
            )
        ids = ids.astype(np.int64)
    elif integers and array.shape in (leading, leading + (1,)):
        ids = array.reshape(-1)  # (batch, 1) too, as Keras' sparse losses take them
    elif (
        floats and num_classes == 2 and array.shape in (leading, leading + (1,))
        and np.all((array == 0) | (array == 1))
    ):
        # `label_mode="binary"` of `image_dataset_from_directory`: 0.0 and 1.0,
        # `(batch, 1)`, the two classes of a two-class softmax as of a sigmoid.
        ids = array.reshape(-1).astype(np.int64)
    elif floats and num_classes == 1 and array.shape in (leading, leading + (1,)):
        # One output unit: read as vectors over one class, any label would
        # name class 0, whatever it holds.
        raise ValueError(
            f"`labels` of dtype {array.dtype} and shape {array.shape} are not classes of "
            "a model of one output unit: a regressor's targets name no class (explain "
            "the inputs alone, e.g. dataset.map(lambda x, y: x), or pass "
            "targets=keras_rise.scores.OutputScore()); for a binary classifier, "
            "targets=keras_rise.scores.BinaryScore() explains each input's predicted "
            "class."
        )
    elif numeric and array.shape == leading + (num_classes,):
        _check_class_vectors(array.reshape(-1, num_classes).astype(np.float64), "labels")
        ids = np.argmax(array, axis=-1).reshape(-1)
    else:
        if batch is None:
            expected = (
                "one class id (an int) or a one-hot or probability vector of "
                f"shape ({num_classes},)"
            )
        else:
            expected = (
                f"class ids (ints) of shape ({batch},) or one-hot or probability "
                f"vectors of shape ({batch}, {num_classes})"
            )
        raise ValueError(
            f"`labels` must be {expected}, for the model's {num_classes} classes. "
            f"Received shape {array.shape} and dtype {array.dtype}."
        )
    class_range("labels", ids, num_classes)
    return ids.astype(np.int32)


def _check_class_vectors(rows, name):
    """Refuses `labels` or `targets` vectors that are not one-hot or
    probability vectors (in [0, 1], each summing to 1): a forecaster's future
    values or several labels per row, whose argmax would name a class
    silently."""
    sums = rows.sum(axis=-1)
    bad = np.flatnonzero(
        (rows.min(axis=-1) < -1e-6) | (rows.max(axis=-1) > 1 + 1e-6) | (np.abs(sums - 1) > 1e-2)
    )
    if not bad.size:
        return
    row = rows[bad[0]]
    alone = (
        "explain the inputs alone, dataset.map(lambda x, y: x), with" if name == "labels"
        else "pass"
    )
    raise ValueError(
        f"`{name}` are not one-hot or probability vectors over the model's "
        f"{rows.shape[-1]} classes, so they name no class: row {bad[0]} holds "
        f"{row.min():.4g} to {row.max():.4g}, summing to {sums[bad[0]]:.4g}. For a "
        f"regressor's (a forecaster's) values, {alone} "
        "targets=keras_rise.scores.OutputScore(index=k) for value k; for several "
        'classes per row, pass `targets=` a class, "all" or a score.'
    )


def tolerance(value):
    """The early-stopping tolerance as a float32 tensor, or `None` (never
    stop: the loop is then traced without the check, which on a GPU reads
    the sums back after every step)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`tolerance` must be None or a float > 0. Received: {value!r} "
            f"(of type {type(value).__name__})."
        )
    if not (np.isfinite(value) and value > 0):
        raise ValueError(
            f"`tolerance` must be a finite float > 0. Received: tolerance={value}."
        )
    import tensorflow as tf

    return tf.constant(float(value))


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
# A graph op named in a shape error: " for '{{node mul}} = Mul[T=...](a, b)'".
_GRAPH_NODE = re.compile(r" for '\{\{node [^}]*\}\}[^']*'")


def error_summary(error, limit=300):
    """The line of a TensorFlow error that says what failed.

    Graph errors open with "Graph execution error:" and the Python frames of
    the failing op; the cause is the first line after them. Keras' "Exception
    encountered when calling Layer.call()" gets the line that says what,
    without its terminal colours, TensorFlow's `{{function_node ...}}` and
    the graph op a shape error names (`for '{{node ...}} = ...'`).
    """
    lines = [
        _GRAPH_NODE.sub("", _FUNCTION_NODE.sub("", _TERMINAL_CODES.sub("", line)))
        for line in str(error).strip().splitlines()
    ]
    causes = [
        line
        for line in lines
        if line.strip()
        and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    summary = (causes or lines or [""])[0]
    if summary.startswith("Exception encountered when calling") and len(causes) > 1:
        summary = f"{summary} {causes[1]}"
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"


def output_folder(name, path):
    """Refuses an output folder that cannot be made because a file is at
    `path` or on its way; `name` is the option as the caller shows it."""
    existing = existing_ancestor(path)
    if existing.exists() and not existing.is_dir():
        raise ValueError(
            f"{name} {path}: {existing} is a file; give a folder (made if missing) for "
            "the maps."
        )


def existing_ancestor(path):
    """`path` if it exists, else its nearest parent that does: where a
    folder to be made at `path` would start. A file there means no folder
    can be made (what the output options' checks tell)."""
    existing = pathlib.Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing
