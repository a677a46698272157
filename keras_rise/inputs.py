"""How RISE feeds a model: its inputs, which one is masked, how it is called.

`ModelInputs` is the one adapter between what a user passes to an explainer
and what the model takes. A model takes one tensor, a list or a dict of them
(`keras.Model(inputs=[...])` or `inputs={...}`); RISE masks one of them, the
*image* input, and holds the others fixed: each masked copy of an input
travels with the same other inputs. Every front end checks the data it is
given through `ModelInputs.check`, so all of them refuse the same bad input
with the same message, and calls the model through `ModelInputs.call`.

A model may also be Python code that returns NumPy arrays (a scikit-learn
pipeline, an ONNX Runtime session, a client of a model served elsewhere):
the first call, made eagerly on the first example, tells, and inside
compiled loops such a model is then called through `tf.numpy_function`.
"""

import inspect
import numbers
import re
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _startup
from keras_rise._checks import error_summary, outside_stacklevel


def _parameters(model):
    """The parameters `model` is called with, or `None` if unknown. A
    function restored from a SavedModel (`loaded.serve`, a signature) says
    them in its `function_type`; its Python function takes `*args, **kwargs`."""
    function_type = None
    if hasattr(model, "structured_input_signature") or hasattr(model, "input_signature"):
        try:
            function_type = model.function_type
        except (AttributeError, TypeError, ValueError):
            function_type = None
    if function_type is not None:
        return list(function_type.parameters.values())
    function = getattr(model, "python_function", model)  # a tf.function
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None


def _takes_training(model):
    """Whether `model(x, training=False)` is a valid call: a Keras layer, or
    code with a `training` argument. (`**kwargs` does not say so: a restored
    SavedModel's `__call__` has them and refuses `training`.)"""
    if isinstance(model, keras.layers.Layer):
        return True
    return any(p.name == "training" for p in _parameters(model) or ())


def _keywords_only(model):
    """The names of the inputs of a model called with keywords only (a
    SavedModel's signature: `signature(name=x)`), or `None`."""
    if isinstance(model, keras.layers.Layer):
        return None
    parameters = _parameters(model)
    if parameters and all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in parameters):
        return [p.name for p in parameters]
    return None


def _signature_inputs(model):
    """The inputs of a function traced for fixed inputs (a restored SavedModel
    function or signature, a tf.function with an input_signature) as
    `[(name, TensorSpec)]`, or `None`. (A signature's `inputs` are its graph's
    placeholders, captured weights included.)"""
    if isinstance(model, keras.layers.Layer):
        return None
    structured = getattr(model, "structured_input_signature", None)
    if structured is not None:
        args, kwargs = structured
        specs = [(getattr(x, "name", None), x) for x in tf.nest.flatten(args)]
        return specs + [(name, x) for name, x in sorted(kwargs.items())]
    signature = getattr(model, "input_signature", None)
    if signature:
        return [(getattr(x, "name", None), x) for x in tf.nest.flatten(signature)]
    return None


def _declared_inputs(model):
    """The model's declared inputs, `[(name, shape, dtype)]`, or `None` if unknown."""
    specs = _signature_inputs(model)
    if specs is not None:
        specs = [(name, x) for name, x in specs if isinstance(x, tf.TensorSpec)]
        return [(name, tuple(x.shape), x.dtype) for name, x in specs] or None
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return _built_input(model)
    if not inputs:
        return None
    return [
        (getattr(x, "name", None), tuple(x.shape), getattr(x, "dtype", None))
        for x in inputs
    ]


def _first_call_shape(model):
    """The shape of a subclassed Keras model's one input as its `build` (or
    first call, or `fit`) saw it, batch first, or `None`."""
    shapes = getattr(model, "_build_shapes_dict", None)
    if not isinstance(model, keras.Model) or not isinstance(shapes, dict) or len(shapes) != 1:
        return None
    shape = next(iter(shapes.values()))
    if not isinstance(shape, (tuple, list)) or len(shape) < 2 or not all(
        size is None or isinstance(size, numbers.Integral) for size in shape
    ):
        return None
    return tuple(shape)


def _built_input(model):
    """A subclassed Keras model's one input as its first call saw it
    (`_first_call_shape`): its rank and, for images and signals, its
    channels, `[(None, (None, ..., channels), None)]` — sizes and dtype
    unknown (the first call's sizes need not be the only ones it takes) —
    or `None`."""
    shape = _first_call_shape(model)
    if shape is None:
        return None
    if len(shape) == 2:
        return [(None, (None, None), None)]
    return [(None, (None,) * (len(shape) - 1) + (shape[-1],), None)]


def is_token_input(shape, dtype):
    """Whether inputs of this shape (batch first) and dtype are token ids: an
    integer `(batch, length)`. Integer inputs of other ranks (e.g. uint8
    images) are real-valued inputs, converted to float32."""
    return len(shape) == 2 and _is_integer(dtype)


def is_string_dtype(dtype):
    """Whether a declared dtype (a name, a `tf.DType` or `None`) is strings."""
    try:
        return dtype is not None and tf.as_dtype(dtype) == tf.string
    except TypeError:
        return False


def _is_integer(dtype):
    """Whether a declared dtype (a string, NumPy or TensorFlow dtype) is an integer type."""
    if dtype is None:
        return False
    try:
        return tf.as_dtype(dtype).is_integer
    except TypeError:
        return False


def _leaf_names(value):
    if isinstance(value, dict):
        return sorted(value)
    return list(range(len(value)))


def _consumer_table(model):
    """`{id(tensor): [(layer, node), ...]}`: the layers (and Keras ops) of a
    Sequential or functional `model` that take each tensor, with the node of
    that call; made once per walk."""
    table = {}
    for layer in getattr(model, "operations", None) or model.layers:
        for node in getattr(layer, "_inbound_nodes", ()):
            for item in {id(item): item for item in node.input_tensors}:
                table.setdefault(item, []).append((layer, node))
    return table


# Layers and Keras ops that move axes: what reads their output does not read
# the input's axes, even where the sizes agree (a Permute of a square input).
_REORDERS = re.compile(r"Permute|Transpose|Swapaxes|Moveaxis|Rot90")


def _data_format_reader(model, tensor):
    """`(name, data_format)` of the first layer of `model` with a
    `data_format` that reads `tensor` (through layers that keep its shape,
    such as `Rescaling` or `Normalization`, and into nested models; not
    through layers that move its axes), or `None` when none is found. A
    model that is no graph (subclassed) is read by its first layer with a
    `data_format`."""
    if tensor is None:
        try:
            if model.inputs:
                return None  # a graph that does not show the masked input
        except (AttributeError, ValueError):
            pass
        for layer in getattr(model, "layers", None) or ():
            data_format = getattr(layer, "data_format", None)
            if isinstance(data_format, str):
                return layer.name, data_format
        return None
    tables, seen, pending = {}, set(), [(model, tensor)]
    while pending:
        graph, item = pending.pop(0)
        if (id(graph), id(item)) in seen:
            continue
        seen.add((id(graph), id(item)))
        if id(graph) not in tables:
            tables[id(graph)] = _consumer_table(graph)
        for layer, node in tables[id(graph)].get(id(item), ()):
            data_format = getattr(layer, "data_format", None)
            if isinstance(data_format, str):
                return layer.name, data_format
            if isinstance(layer, keras.Model):
                pending += [(layer, inner) for inner in _fed_inputs(layer, node, item) or ()]
                continue
            if _REORDERS.search(type(layer).__name__):
                continue  # the axes it puts out are no longer the input's, whatever their sizes
            shape = tuple(getattr(item, "shape", ()))
            pending += [
                (graph, output) for output in node.output_tensors
                if tuple(getattr(output, "shape", ())) == shape
            ]
    return None


def _has_channels_first_layer(model, depth=0):
    """Whether `model` (or a model nested in it) has a layer with
    `data_format="channels_first"`."""
    if depth > 32:
        return False
    for layer in getattr(model, "layers", None) or ():
        if getattr(layer, "data_format", None) == "channels_first":
            return True
        if isinstance(layer, keras.Model) and _has_channels_first_layer(layer, depth + 1):
            return True
    return False


def looks_channels_first(shape):
    """Whether one image's shape (no batch axis) looks channels first: one
    or three channels before two axes of 16 or more (`None`, a free size,
    counts as large), as `(3, 32, 32)` or `(1, None, None)`; read channels
    last, it would be an image of 3 rows, and a map of 3 rows."""
    shape = tuple(shape)
    return (
        len(shape) == 3 and shape[0] in (1, 3)
        and all(size is None or size >= 16 for size in shape[1:])
    )


def _channels_last_advice(shape, keras_model, several):
    """How to explain a model of channels-first inputs `shape`."""
    rank = len(shape)
    order = (rank,) + tuple(range(1, rank))
    last = shape[1:] + shape[:1]
    if several:
        wrap = (
            f"a model whose masked input is channels last, {last}, through "
            f"keras.layers.Permute({order}) into this model"
        )
    elif keras_model:
        wrap = f"keras.Sequential([keras.Input({last}), keras.layers.Permute({order}), model])"
    else:
        wrap = (
            "a function that moves the channels first, "
            f"lambda x: model(tf.transpose(x, {(0,) + order}))"
        )
    return (
        f"Explain it through {wrap}, given channels-last inputs {last} "
        "(np.moveaxis(x, 1, -1) for a batch)."
    )


def _refuse_channels_first(model, declaration, tensor, several):
    """Refuses a model that reads its masked input channels first: RISE
    masks the axes before the channels, and `(channels, height, width)`
    would be masked as an image of `channels` rows (a silent wrong map).
    Told by its first layer with a `data_format`, or where no such layer
    reads it by the shape alone (`looks_channels_first`: a model that moves
    the axes itself, a SavedModel's signature)."""
    if declaration is None or len(declaration[1]) < 3:
        return
    try:
        reader = _data_format_reader(model, tensor)
    except (AttributeError, TypeError, ValueError, RecursionError):
        reader = None
    shape = tuple(declaration[1][1:])
    if declaration[0] is None:  # a subclassed model: channels last assumed there
        shape = tuple((_first_call_shape(model) or declaration[1])[1:])
        # Its layers are read in the order they were made, not in the order
        # `call` uses them (which may move the axes first): refused only for
        # inputs whose first axis is the smallest, as channels are.
        if None in shape or not shape[0] < min(shape[1:]):
            return
    if reader is not None and reader[1] == "channels_first":
        reason = f"its layer {reader[0]!r} has data_format='channels_first'"
    elif reader is None and looks_channels_first(shape):  # no layer tells
        reason = f"a first axis of {shape[0]} before axes of {shape[1:]}"
    else:
        return
    names = {2: "(channels, steps)", 3: "(channels, height, width)"}
    raise ValueError(
        "The model reads its input "
        + (f"{declaration[0]!r} " if declaration[0] is not None else "")
        + f"channels first ({names.get(len(shape), '(channels, ...)')} = {shape}: "
        f"{reason}), and keras_rise masks the axes before the channels. "
        + _channels_last_advice(shape, isinstance(model, keras.layers.Layer), several)
    )


def _fed_inputs(model, node, tensor):
    """The inputs of a nested `model` that `tensor` feeds in its call
    `node` (the given tensors and the model's inputs both flattened in
    Keras' order: a dict's keys sorted), or `None` when they do not pair."""
    given, inner = list(node.input_tensors), list(getattr(model, "inputs", None) or ())
    if len(given) != len(inner):
        return None
    return [inner[position] for position, item in enumerate(given) if item is tensor]


def _normalization_of(model, tensor):
    """The `keras.layers.Normalization` layer that alone reads `tensor` in
    `model` (directly, or as the first layer of a nested model), or `None`."""
    if tensor is None:
        return None
    consumers = _consumer_table(model).get(id(tensor), [])
    if len(consumers) != 1:
        return None
    layer, node = consumers[0]
    if isinstance(layer, keras.layers.Normalization):
        return layer
    inner = list(getattr(layer, "inputs", None) or ()) if isinstance(layer, keras.Model) else []
    if len(inner) == 1:
        return _normalization_of(layer, inner[0])
    return None


def _holds_a_vector(tensor):
    """Whether a tensor is a batch of vectors: `(batch, n)`, or `(batch, 1,
    ..., 1, n)` (a `Reshape((1, n))` for a recurrent or convolutional layer
    puts the positions on its channel axis, where they stay unordered)."""
    shape = tuple(getattr(tensor, "shape", ()))
    return len(shape) >= 2 and all(size == 1 for size in shape[1:-1])


def _dense_reads(model, tensor, tables=None, known=None):
    """Whether `tensor`, a `(batch, n)` vector inside `model`, reaches a
    `Dense` (or `EinsumDense`) layer on every path while it stays a vector
    (`_holds_a_vector`: through normalisations, activations, dropout,
    `Concatenate`, a `Lambda` or op of the same rank, slices, nested models,
    a `Reshape((1, n))` and the recurrent layer that reads it): its
    positions are then features, as a table's. A path that makes a sequence
    of it (`Reshape((n, 1))`, `expand_dims`, for a convolution or a
    recurrent layer) reads the positions in order: a signal. Each tensor is
    looked at once (`known`), so shared paths cost nothing more."""
    tables = {} if tables is None else tables
    known = {} if known is None else known
    key = (id(model), id(tensor))
    if key in known:
        return known[key]
    known[key] = False  # while it is being walked
    if id(model) not in tables:
        tables[id(model)] = _consumer_table(model)
    found = False
    for layer, node in tables[id(model)].get(id(tensor), ()):
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            found = True
            continue
        if isinstance(layer, keras.Model):
            fed = _fed_inputs(layer, node, tensor)  # the nested model's own inputs
            if fed is None or not all(_dense_reads(layer, inner, tables, known) for inner in fed):
                return False
            found = True
            continue
        outputs = list(node.output_tensors)
        if not outputs or not all(_holds_a_vector(x) for x in outputs):
            return False
        if not all(_dense_reads(model, x, tables, known) for x in outputs):
            return False
        found = True
    known[key] = found
    return found


class PixelRangeWarning(UserWarning):
    """Images of pixels in [0, 255] given to a model that may want them
    scaled (see `ModelInputs.check`)."""


class ModelInputs:
    """The inputs of a model as RISE sees them.

    Args:
        model: the `keras.Model` or callable to explain. Keras models (and
            callables that take a `training` argument) are called with
            `training=False`; other callables, such as a plain
            `tf.function`, are called with the inputs alone.
        image_input: which input to mask when the model takes several: a
            key of the dict, or an index or input name of the list, that
            `explain` is given. `None` (default) for a model with one
            input.
        masked_axes: how many axes the masks cover, when the caller knows
            it (`None`: read from the model's declared input). `2` for a
            model that declares its masked input as `(height, width)` of
            real numbers says that it is a grayscale image without a
            channel axis (as in many MNIST examples), not a series of
            `height` steps, so both axes are masked: the input is handled
            as `(height, width, 1)` — `check` adds the channel axis, `image`
            adds it to inputs that lack it — and `call` takes it off before
            the model sees it (`adds_channel`). An explanation's two-entry
            `grid_size`, e.g. `(7, 7)`, or a map of two axes asks for this.
        binary_masks: the explanation's `binary_masks`, when the caller
            knows it: `(False, True)` on such a model masks a series'
            channels whole (`whole_channels`), which is then no image.
    """

    def __init__(self, model, image_input=None, masked_axes=None, binary_masks=None):
        if image_input is not None and (
            isinstance(image_input, bool)
            or not isinstance(image_input, (str, numbers.Integral))
        ):
            raise TypeError(
                "`image_input` must be None, an input name (str) or an index "
                f"(int). Received: image_input={image_input!r} (of type "
                f"{type(image_input).__name__})."
            )
        if not callable(model):
            inner = getattr(model, "model", None)
            hint = (
                f" A {type(model).__name__} holds a model: pass its `.model`."
                if isinstance(inner, keras.Model) else ""
            )
            raise TypeError(
                "`model` must be a keras.Model or a callable. Received: "
                f"{type(model).__name__}.{hint}"
            )
        _check_variables_alive(model)
        self.model = model
        self.image_input = image_input
        self._takes_training = _takes_training(model)
        self._keywords = _keywords_only(model)
        self._declared = _declared_inputs(model)
        # Traced signatures hold their batch size; Keras models take any (one
        # built by a call on a batch records that batch's size).
        traced = not isinstance(model, keras.layers.Layer)
        for name, shape, _ in self._declared or () if traced else ():
            if shape and shape[0] is not None:
                raise ValueError(
                    f"The model takes a fixed batch of {shape[0]} (its input {name!r} "
                    f"has shape {tuple(shape)}); RISE runs masked copies in batches "
                    "of any size. Give it a batch of None (e.g. tf.TensorSpec("
                    f"{[None, *shape[1:]]}) in the exported signature), or wrap it in "
                    "a function that runs the rows one at a time."
                )
        # Functional models saved with `inputs=[x]` (as Keras 2 often wrote
        # them) expect a one-element list; given a tensor, Keras warns on
        # every call that the structure does not match.
        struct = getattr(model, "_inputs_struct", None)
        self._one_in_a_list = isinstance(struct, (list, tuple)) and len(struct) == 1
        # A model built on a dict of inputs takes a list too, in the order
        # Keras flattens the dict (its keys sorted), but warns on every call.
        self._dict_struct = struct if isinstance(struct, dict) else None
        self._check_image_input()
        self._told_of_vectors = False
        self._reads_features = None
        _refuse_channels_first(
            model, self._declaration_of(image_input), self._model_input_tensor(),
            len(self._declared or ()) > 1,
        )
        self.adds_channel = _is_channel_less_image(self._declaration_of(image_input), masked_axes)
        # A series (steps, channels) masked per step and channel: handled as
        # (steps, channels, 1), but its values are no pixels and its fills and
        # blurs run along the steps alone (`fill_axes`).
        self.whole_channels = self.adds_channel and keeps_channels_whole(binary_masks)
        self._binary_masks = binary_masks
        # TensorFlow's CPU kernels compute channels-first convolutions right in
        # a graph only (eagerly, and with XLA, a bias can land on the wrong
        # axis): such a model is probed in a graph, as `predict` and RISE's
        # loop call it, so that the class a probe picks is theirs.
        self.has_channels_first_layers = _has_channels_first_layer(model)
        self._graph_probe = None
        if self.has_channels_first_layers:
            this = weakref.ref(self)  # the function would otherwise hold its ModelInputs

            def call(inputs):
                return this().call(inputs)

            self._graph_probe = tf.function(call, reduce_retracing=True)

    def _check_image_input(self):
        """Refuses an `image_input` that names none of the inputs a model of
        several declares (a model that declares none is checked with its
        inputs, in `locate`)."""
        key, declared = self.image_input, self._declared
        if key is None or not declared:
            return
        if len(declared) == 1:
            if key == 0 or key == declared[0][0] or key in (self._dict_struct or ()):
                return
            # Refused here, not once inputs come: a text model's strings would
            # first be refused as not numbers (field test).
            raise ValueError(
                f"`image_input={key!r}` was given, but the model has one input "
                f"({declared[0][0]!r}), which is the one masked; leave `image_input` as None."
            )
        names = [name for name, *_ in declared]
        keys = list(self._dict_struct or ())
        if isinstance(key, str) and (key in names or key in keys):
            return
        if isinstance(key, numbers.Integral) and -len(declared) <= key < len(declared):
            return
        raise ValueError(
            f"`image_input` must name one of the model's {len(declared)} inputs: one "
            f"of {sorted(set(names + keys))} or an index below {len(declared)}. "
            f"Received: image_input={key!r}."
        )

    def _declaration_of(self, image_input):
        """The declaration of the input `image_input` names, before any data is seen."""
        if not self._declared:
            return None
        if len(self._declared) == 1:
            return self._declared[0]
        if isinstance(image_input, str):
            matches = [entry for entry in self._declared if entry[0] == image_input]
            return matches[0] if len(matches) == 1 else None
        count = len(self._declared)
        if isinstance(image_input, numbers.Integral) and -count <= image_input < count:
            return self._declared[image_input]
        return None

    def call(self, inputs):
        """Calls the model in inference mode on `inputs` (a tensor or a nest).

        A model that returns NumPy arrays gives tensors here too: eagerly its
        arrays are converted, and in a graph it runs through
        `tf.numpy_function` (`runs_python`)."""
        inputs = self._as_model_takes(inputs)
        signature = _NumpyOutputs.of(self.model)
        if signature is not None:
            if tf.executing_eagerly():
                return signature.tensors(self._invoke(_as_arrays(inputs)))
            return signature.call_in_graph(self._invoke, inputs)
        outputs = self._invoke(inputs)
        if tf.executing_eagerly() and _NumpyOutputs.returned(outputs):
            return _NumpyOutputs.remember(self.model, outputs).tensors(outputs)
        return _with_batch(outputs, tf.nest.flatten(inputs)[0].shape[:1])

    def _as_model_takes(self, inputs):
        """`inputs` in the structure the model declares (no channel axis for a
        channel-less image, a list for one input in a list, a dict)."""
        if self.adds_channel:
            image = self.image(inputs)
            inputs = self.assemble(inputs, image[..., 0], self.others(inputs))
        if isinstance(inputs, dict) and len(inputs) == 1 and self._dict_struct is None:
            # One input given by name to a model that does not take a dict:
            # Keras would warn on every call that the structures differ.
            inputs = next(iter(inputs.values()))
        if self._one_in_a_list and not isinstance(inputs, (list, tuple, dict)):
            inputs = [inputs]
        if self._dict_struct is not None and not isinstance(inputs, dict):
            # A list in the order Keras flattens the dict, or a lone tensor
            # for a dict of one input.
            given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            if len(given) == len(self._dict_struct):
                inputs = keras.tree.pack_sequence_as(self._dict_struct, given)
        return inputs

    def _invoke(self, inputs):
        if self._keywords is not None:  # a SavedModel's signature
            if isinstance(inputs, dict):
                return self.model(**inputs)
            if len(self._keywords) == 1:
                return self.model(**{self._keywords[0]: inputs})
            return self.model(**dict(zip(self._keywords, inputs)))
        if self._takes_training:
            return self.model(inputs, training=False)
        return self.model(inputs)

    @property
    def runs_python(self):
        """Whether the model is Python code returning NumPy arrays (known once
        it has been called eagerly): it cannot be compiled with XLA or saved."""
        return _NumpyOutputs.of(self.model) is not None

    def run(self, function, *args):
        """`function(*args)`, a compiled function that calls this model.

        Where the model is Python code and fails inside it, the model's own
        exception is raised as a one-line `ValueError` (TensorFlow would
        raise a graph error holding the Python traceback).
        """
        signature = _NumpyOutputs.of(self.model)
        if signature is None:
            return function(*args)
        signature.failure = None
        try:
            return function(*args)
        except tf.errors.OpError as error:
            failure = signature.failure
            if failure is None:
                raise
            raise ValueError(
                "The model (Python code, which RISE calls through tf.numpy_function) "
                f"failed: {type(failure).__name__}: {error_summary(failure)}"
            ) from error

    def locate(self, inputs):
        """Where the image is in `inputs`: `None` for a single tensor, else a key or index."""
        if not isinstance(inputs, (dict, list, tuple)):
            several = bool(self._declared) and len(self._declared) > 1
            if self.image_input is not None and (several or (
                self.image_input != 0 and not (
                    isinstance(self.image_input, str)
                    and self._image_name() == self.image_input
                )
            )):
                if self._declared and len(self._declared) == 1:
                    raise ValueError(
                        f"`image_input={self.image_input!r}` was given, but the model "
                        f"has one input ({self._declared[0][0]!r}), which is the one "
                        "masked; leave `image_input` as None."
                    )
                raise ValueError(
                    f"`image_input={self.image_input!r}` was given, but the inputs "
                    "are a single array; pass the structure the model takes (a "
                    "dict or list), or leave `image_input` as None."
                )
            if several:
                raise ValueError(
                    f"The model takes {len(self._declared)} inputs "
                    f"{list(self.input_names)}; received a single array. Pass them "
                    "all (a dict or list) with `image_input=` naming the one RISE "
                    "masks; the others are held fixed."
                )
            return None
        if isinstance(inputs, dict):
            self._check_keys(inputs)
            if self.image_input is None and len(inputs) == 1:
                return next(iter(inputs))
            if self.image_input not in inputs:
                index = isinstance(self.image_input, numbers.Integral)
                raise ValueError(
                    "`image_input` must name the input to mask, one of "
                    f"{_leaf_names(inputs)}. Received: image_input={self.image_input!r}"
                    + (
                        ", an index, which picks from a list of inputs; these are a "
                        "dict: name the input by its key."
                        if index else "."
                    )
                    + self._columns_hint()
                )
            return self.image_input
        if self._declared and len(self._declared) > 1 and len(inputs) != len(self._declared):
            names = [entry[0] for entry in self._declared]
            raise ValueError(
                f"The model takes {len(names)} inputs {names}; received a "
                f"{type(inputs).__name__} of {len(inputs)}. Pass them all (the others "
                "are held fixed)."
            )
        if self.image_input is None:
            if len(inputs) == 1:
                return 0
            raise ValueError(
                f"The inputs are a list of {len(inputs)} arrays; pass "
                "`image_input=` (an index or input name) to say which one RISE "
                f"masks.{self._columns_hint()}"
            )
        if isinstance(self.image_input, str):
            names = [name for name, *_ in self._declared or []]
            if self.image_input not in names:
                raise ValueError(
                    f"`image_input={self.image_input!r}` is not one of the model's "
                    f"input names {names}."
                )
            return names.index(self.image_input)
        if not -len(inputs) <= self.image_input < len(inputs):
            raise ValueError(
                f"`image_input={self.image_input}` is out of range for a list of "
                f"{len(inputs)} inputs."
            )
        return self.image_input % len(inputs)

    def _columns_hint(self):
        """For a model whose inputs are a table's columns, one real value
        each (as Keras' structured-data guides build them): how to explain
        the columns together; else ''."""
        declared = self._declared or ()
        columns = len(declared) > 1 and all(
            tuple(shape[1:]) in ((1,), ()) and not _is_integer(dtype)
            and not is_string_dtype(dtype)
            for _, shape, dtype in declared
        )
        if not columns:
            return ""
        names = [name for name, *_ in declared]
        return (
            f" Its {len(names)} inputs hold one value each, as a table's columns: to "
            f"explain them together, explain a model of one vector, vector = keras.Input"
            f"(({len(names)},)); table = keras.Model(vector, model({{name: vector[:, i:i "
            f"+ 1] for i, name in enumerate({names})}})): its map has one value per "
            "column, each column kept or filled alone."
        )

    def picture_kind(self, binary_masks):
        """The `kind` of `keras_rise.visualize.picture` for this input's maps:
        `"features"` for a table's (`masked_as_table`), `"signal"` (a strip
        per channel) for a series masked per step and channel, `"image"` for
        a grayscale image without a channel axis, else `None` (by shape)."""
        if self.masked_as_table(binary_masks):
            return "features"
        if self.whole_channels:
            return "signal"
        return "image" if self.adds_channel else None

    def fill_axes(self):
        """The axes of the checked inputs that a `"blur"` or `"mean"` fill
        runs over: those whose masks are blended where `binary_masks` keeps
        others whole (`[1]`, the steps, for a series masked per step and
        channel: a blur or mean across its channels would mix unrelated
        values), or `None` for every masked axis."""
        flags = self._binary_masks
        if not isinstance(flags, (tuple, list)) or len(set(map(bool, flags))) < 2:
            return None
        return [axis + 1 for axis, whole in enumerate(flags) if not whole]

    def _warn_if_raw_pixels(self, name, image):
        """Warns of pixels in the range a Keras model does not take.

        Pixels in [0, 255] (8-bit, or other numbers from 0 to beyond 1.5, as
        photos resized in [0, 255] are) given to a model that does not scale
        them itself: trained on scaled pixels, it reads them as a saturated
        image. Inputs mapped as keras.applications' "caffe" and "torch"
        modes are, or in [-1, 1], have negative values or stay within 1.5.
        And the mirror: floats in [0, 1] given to a model that scales pixels
        itself, which reads them as an almost black image. Either way the
        maps are of a wrong prediction (`keras_rise.preprocessing.
        rescales_pixels_itself` tells; a model that is not a Keras layer
        graph cannot be told). The message is the same for every batch of
        one dtype, so that Python shows it once."""
        from keras_rise import preprocessing

        if not isinstance(self.model, keras.Model) or image.size == 0:
            return
        if not np.issubdtype(image.dtype, np.number) or image.min() < 0:
            return
        high = image.max()
        scaled = np.issubdtype(image.dtype, np.floating) and 0 < high <= 1
        if image.dtype == np.uint8:
            raw = high > 1
        else:
            raw = 1.5 < high <= 255
        if not (raw or scaled):
            return
        rescales = preprocessing.rescales_pixels_itself(self.model)
        if raw and not rescales:
            message = (
                f"`{name}` holds pixels in [0, 255] ({image.dtype}, from 0 to beyond 1), "
                "and the model does not scale them itself (no Rescaling or Normalization "
                "layer first). If it was trained on scaled pixels, scale them as it was "
                "(e.g. images / 255, or keras.applications' preprocess_input; "
                "keras_rise.Preprocessing maps [0, 255] pixels to a model's inputs), or "
                "the maps explain a wrong prediction."
            )
        elif scaled and rescales:
            message = (
                f"`{name}` holds values in [0, 1] ({image.dtype}), but the model scales "
                "pixels itself (a Rescaling or Normalization layer of [0, 255] pixels "
                "first): it reads them as an almost black image. Give it the pixels "
                "unscaled, in [0, 255], or the maps explain a wrong prediction."
            )
        else:
            return
        warnings.warn(message, PixelRangeWarning, stacklevel=outside_stacklevel())

    def _image_name(self):
        if self._declared and len(self._declared) == 1:
            return self._declared[0][0]
        return None

    def image(self, inputs):
        """The image tensor in `inputs`, with the channel axis that
        `adds_channel` gives a `(batch, height, width)` input."""
        where = self.locate(inputs)
        image = inputs if where is None else inputs[where]
        if self.adds_channel and len(image.shape) == 3:
            image = image[..., None]
        return image

    def others(self, inputs):
        """Everything in `inputs` but the image, as a dict by position or key."""
        where = self.locate(inputs)
        if where is None:
            return {}
        keys = inputs if isinstance(inputs, dict) else range(len(inputs))
        return {key: inputs[key] for key in keys if key != where}

    def assemble(self, template, image, others):
        """`template`'s structure with `image` and `others` put back in."""
        where = self.locate(template)
        if where is None:
            return image
        if isinstance(template, dict):
            return {key: image if key == where else others[key] for key in template}
        parts = [image if key == where else others[key] for key in range(len(template))]
        return type(template)(parts) if isinstance(template, tuple) else parts

    def probe_first_with(self, inputs, image):
        """`probe` of the first example of `inputs` with its masked input
        replaced by `image` (one example, e.g. a sequence of nothing but a
        fill id): an input the model cannot take fails here, as a
        `ValueError`, not inside a compiled loop."""
        first = slice_batch(inputs, 0, 1)
        return self.probe(self.assemble(first, image, self.others(first)))

    def _image_declaration(self, inputs=None):
        """The image input's `(name, shape, dtype)` as RISE masks it — as the
        model declares it, with a channel axis if `adds_channel` — or `None`."""
        declaration = self._model_declaration(inputs)
        if declaration is not None and self.adds_channel:
            name, shape, dtype = declaration
            return name, (*shape, 1), dtype
        return declaration

    @property
    def input_names(self):
        """The names of the inputs the model declares, in its order (`()` for
        a model that declares none: Python code)."""
        return tuple(entry[0] for entry in self._declared or ())

    def _model_declaration(self, inputs=None):
        """The image input's `(name, shape, dtype)` as the model declares it, or `None`."""
        if not self._declared:
            return None
        if len(self._declared) == 1:
            return self._declared[0]
        if inputs is None:
            return self._declaration_of(self.image_input)
        where = self.locate(inputs)
        if isinstance(where, str):
            matches = [entry for entry in self._declared if entry[0] == where]
            return matches[0] if len(matches) == 1 else None
        return self._declared[where] if where < len(self._declared) else None

    def image_shape(self, inputs=None):
        """The declared shape of the image input without the batch, as RISE
        masks it (with the channel axis of `adds_channel`), or `None`."""
        declaration = self._image_declaration(inputs)
        return None if declaration is None else declaration[1][1:]

    def check_grid_size(self, grid_size, spatial, tokens, inputs=None, binary_masks=False):
        """`_checks.grid_size` for inputs of these masked axes, its message
        saying how the model's declared input was read (see `masked_axes`);
        and that `binary_masks` (`None`: see `binary_masks`) masks them along
        one axis."""
        from keras_rise import _checks

        self._warn_if_unread_vectors(binary_masks, spatial, tokens, inputs)
        given, binary_masks = binary_masks, self.binary_masks(binary_masks, spatial, tokens)
        if binary_masks is True and len(spatial) != 1:
            example = (
                (False, True) if len(spatial) == 2 else (True,) + (False,) * (len(spatial) - 1)
            )
            raise ValueError(
                "`binary_masks` on every axis masks inputs along one axis (feature "
                f"vectors, signals); these inputs are masked on {len(spatial)} axes, "
                f"{tuple(spatial)}, as images and volumes are, with the paper's "
                "blended masks (a tuple with one bool per axis, e.g. "
                f"binary_masks={example}, says which axes take whole cells). "
                f"Received: binary_masks={given!r}.{self._grid_size_hint(inputs)}"
            )
        try:
            _checks.grid_size(grid_size, spatial, tokens or binary_masks)
        except ValueError as error:
            raise ValueError(f"{error}{self._grid_size_hint(inputs)}") from None

    def _grid_size_hint(self, inputs=None):
        declared = self.model_image_shape(inputs)
        if declared is None:
            return self._undeclared_hint()
        if self.adds_channel and not self.whole_channels:
            return (
                f" A grid of two axes reads the model's {tuple(declared)} inputs as "
                "grayscale images (height, width); a signal takes one entry, e.g. "
                "grid_size=7."
            )
        if self.could_be_channel_less(inputs):
            return (
                f" The model's {tuple(declared)} inputs are read as a signal of "
                f"{declared[0]} steps; if they are grayscale images without a channel "
                "axis, a grid of two axes such as grid_size=(7, 7) masks both."
            )
        return ""

    def could_be_channel_less(self, inputs=None):
        """Whether the masked input, read now as a signal `(steps, features)`,
        could be grayscale images without a channel axis that a grid of two
        axes would mask as such: both sides known and at least 8 (a (50, 2)
        signal could not). For hints."""
        declared = self.model_image_shape(inputs)
        return (
            not self.adds_channel
            and declared is not None
            and len(declared) == 2
            and all(side is not None and side >= 8 for side in declared)
            and ModelInputs(self.model, self.image_input, masked_axes=2).adds_channel
        )

    def model_image_shape(self, inputs=None):
        """The image input's shape without the batch as the model declares it, or `None`."""
        declaration = self._model_declaration(inputs)
        return None if declaration is None else declaration[1][1:]

    def takes_tokens(self, inputs=None):
        """Whether the masked input is declared as token ids (`is_token_input`)."""
        declaration = self._image_declaration(inputs)
        return declaration is not None and is_token_input(declaration[1], declaration[2])

    def reads_features(self):
        """Whether the masked input is a vector of features, as a table's: a
        real-valued `(batch, features)` input (the one `image_input` names,
        or the only one) that the Keras model's `Dense` layers read directly,
        while it stays a vector (`Normalization`, `Dropout`, `Concatenate`,
        activations, a `Lambda` or op of the same rank, slices, nested
        models): see `_dense_reads`. A vector made a sequence on its way
        (`Reshape((n, 1))` for a convolution or a recurrent layer) is a
        signal; so is any input of a model whose layers cannot be read
        (Python code, a subclassed model)."""
        declaration = self._declaration_of(self.image_input)
        if declaration is None or self.adds_channel:
            return False
        _, shape, dtype = declaration
        if len(shape) != 2 or _is_integer(dtype) or is_string_dtype(dtype):
            return False
        if self._reads_features is None:
            # The model's graph does not change: walked once.
            tensor = self._model_input_tensor()
            try:
                self._reads_features = tensor is not None and _dense_reads(self.model, tensor)
            except (AttributeError, TypeError, ValueError, RecursionError):
                self._reads_features = False
        return self._reads_features

    def masked_as_table(self, binary_masks):
        """Whether the masked input is a table's features masked as such:
        `reads_features`, unless `binary_masks=False` masks it as a signal."""
        return binary_masks is not False and self.reads_features()

    def check_config(self, config, spatial, tokens, shape):
        """A config's grid size and fill against inputs of one `shape`
        (without the batch), for the front ends built for a shape
        (`RiseLayer`, `export_explainer`): `check_grid_size`, a token id or
        a fill for real values (no text's word), `check_fill`, and a fill
        that broadcasts to the input."""
        from keras_rise import _checks

        self.check_grid_size(config.grid_size, spatial, tokens, binary_masks=config.binary_masks)
        if tokens:
            _checks.token_fill(config.fill_value)
        _checks.image_fill(config.fill_value)
        self.check_fill(config.fill_value, config.binary_masks)
        fill = fill_with_channel(config.fill_value, shape)
        _checks.fill_broadcasts(fill, tuple(shape))

    def check_fill(self, fill_value, binary_masks):
        """Checks a fill for a table's features (`reads_features`, unless
        `binary_masks=False` masks them as a signal): `check_table_fill`,
        and a warning for a number far outside the data of a model that
        normalizes its features itself (`_normalization_of`)."""
        if not self.masked_as_table(binary_masks):
            return
        if binary_masks is None:
            self._warn_if_flattened_images()
        if not isinstance(fill_value, str):
            self._warn_if_far_fill(fill_value)
        self.check_table_fill(fill_value)

    def _warn_if_flattened_images(self):
        """Warns that a vector of `k²` or `3k²` features (k >= 16), read by
        Dense layers, may be flattened images (an MNIST MLP's 784 pixels),
        which a table's binary cell per feature explains pixel by pixel."""
        length = self._declaration_of(self.image_input)[1][1]
        for channels in (1, 3):
            side = int(round(np.sqrt((length or 0) / channels)))
            if side >= 16 and side * side * channels == length:
                break
        else:
            return
        shape = (side, side, channels)
        warnings.warn(
            f"The model's Dense layers read its ({length},) inputs directly, so RISE "
            "masks them as a table's features, a binary cell each. If they are "
            f"flattened {side}x{side} images, explain them as images with the paper's "
            f"grid: images = keras.Input({shape}); keras_rise.RiseExplainer(keras.Model("
            "images, model(keras.layers.Flatten()(images)))); binary_masks=True keeps "
            "the features without this warning.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )

    def check_table_fill(self, value, name="fill_value"):
        """Refuses `"mean"` and `"blur"` as what a table's features
        (`reads_features`) take when masked, or as where an insertion curve
        starts (`name="substrate"`): the row's mean over unrelated columns,
        a blur across them."""
        if not (isinstance(value, str) and value in FILL_MODES) or not self.reads_features():
            return
        what = "the row's own mean over them" if value == "mean" else "a blur across them"
        raise ValueError(
            f"`{name}={value!r}` would fill a table's features with {what}; the model's "
            "Dense layers read its input directly, and its columns are unrelated. Pass "
            f"`{name}` a baseline row (e.g. the training rows' mean, x_train.mean("
            "axis=0); a .npy file on the command line) or a number."
        )

    def _warn_if_far_fill(self, fill_value):
        """Warns when a number fill lies over 2 standard deviations (root
        mean square over the features) from the means that the model's own
        first `Normalization` layer holds (raw units filled with 0): masked
        rows are then far outside the data the model knows, and maps flat."""
        if np.ndim(fill_value) != 0:
            return
        layer, mean, variance = self._normalization_statistics()
        if layer is None:
            return
        spread = np.sqrt(variance.astype(np.float64))
        # A row of the data is about 1 standard deviation from the means in
        # root mean square over its features; the fill row, here, over 2.
        scores = (float(fill_value) - mean.astype(np.float64)) / np.maximum(spread, 1e-12)
        distance = float(np.sqrt(np.mean(scores**2)))
        if scores.size < 2 or distance <= 2.0:
            return
        warnings.warn(
            f"fill_value={float(fill_value)} lies {distance:.1f} standard deviations "
            "(root mean square over the features) from the means of the model's "
            f"{scores.size} features, as its own Normalization layer {layer.name!r} "
            "holds them, where a row of its data lies about 1: masked rows are far "
            "outside the data it was trained on, and the maps may be flat. Pass "
            "`fill_value` the training rows' mean, e.g. that layer's: "
            f"keras.ops.convert_to_numpy(model.get_layer({layer.name!r}).mean).ravel() "
            "(a .npy file of it on the command line).",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )

    def _normalization_statistics(self):
        """`(layer, mean, variance)` of the `Normalization` layer that alone
        reads the masked input (`_normalization_of`), its statistics as flat
        float32 arrays; `(None, None, None)` where there is none, or it holds
        none."""
        layer = _normalization_of(self.model, self._model_input_tensor())
        if layer is None:
            return None, None, None
        try:
            # In float32 first: a mixed-precision clone's may be bfloat16.
            mean, variance = (
                np.ravel(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")))
                for value in (layer.mean, layer.variance)
            )
        except (AttributeError, TypeError, ValueError):
            return None, None, None
        return layer, mean, variance

    def baseline_row(self):
        """The training rows' mean as the model's own `Normalization` layer
        holds it, for a table's features (`reads_features`): a float32 array
        of one input's shape, or `None` (not a table, or no such layer, or
        its statistics are not one per feature).

        `metrics.insertion` starts a table's curve from it by default.
        """
        if not self.reads_features():
            return None
        layer, mean, _ = self._normalization_statistics()
        shape = self.model_image_shape()
        if layer is None or not shape or None in shape or mean.size != int(np.prod(shape)):
            return None
        return mean.reshape(shape)

    def _model_input_tensor(self):
        """The Keras tensor of the masked input, or `None`."""
        declaration = self._declaration_of(self.image_input)
        try:
            tensors = [x for x in self.model.inputs if getattr(x, "name", None) == declaration[0]]
        except (AttributeError, TypeError, ValueError):
            return None
        return tensors[0] if len(tensors) == 1 else None

    def binary_masks(self, binary_masks, spatial, tokens):
        """What masks an input of this layout gets: binary ones (whole cells
        kept or filled) or the paper's blended ones. `binary_masks` as given
        to the explainer: `True` or `False`, or `None` for binary masks on
        token ids and on vectors of features (`reads_features`) only; or one
        bool per masked axis (a bool when they agree)."""
        from keras_rise import masks as masks_lib

        given = binary_masks
        if isinstance(binary_masks, (tuple, list)):
            try:  # a bool when the axes agree
                binary_masks = masks_lib.simplified_flags(
                    binary_masks, len(spatial), "binary_masks"
                )
            except ValueError as error:
                declared = self.model_image_shape()
                series = declared is not None and len(declared) == 2 and not tokens
                hint = (
                    f" A model of {tuple(declared)} series is masked on its steps, or, "
                    "given two, on its steps and channels: e.g. binary_masks=(False, "
                    "True), the steps blended, each channel kept or replaced whole."
                    if series else f" These inputs are masked on {tuple(spatial)}."
                )
                raise ValueError(f"{error}{hint}") from None
        if tokens:
            if binary_masks is not None and binary_masks is not True:
                raise ValueError(
                    "Token ids and words are kept or replaced whole, never blended: "
                    "`binary_masks` must be None or True for them. Received: "
                    f"binary_masks={given!r}."
                )
            return True
        if binary_masks is None:
            return len(spatial) == 1 and self.reads_features()
        return binary_masks if isinstance(binary_masks, tuple) else bool(binary_masks)

    def _warn_if_unread_vectors(self, binary_masks, spatial, tokens, inputs):
        """Warns that vector inputs `(batch, n)` of a model whose layers
        cannot be read are masked as a signal by default: they may be a
        table's features. Without `inputs` (a layer, an export), the
        declared input tells the rank."""
        if binary_masks is not None or tokens or len(spatial) != 1:
            return
        if inputs is not None:
            rank = np.ndim(self.image(inputs))
        else:
            declaration = self._declaration_of(self.image_input)
            rank = None if declaration is None else len(declaration[1])
        if rank != 2 or self._layers_readable():
            return
        if self._told_of_vectors:  # once per model and options (one engine)
            return
        self._told_of_vectors = True
        warnings.warn(
            f"The model's layers cannot be read (a {type(self.model).__name__}), so its "
            "vector inputs are masked as a signal: a grid of cells (7 by default) along "
            "the vector, each blending neighbouring positions. If they are a table's "
            "features, pass binary_masks=True (each feature kept or filled alone); "
            "binary_masks=False keeps the grid without this warning.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )

    def _layers_readable(self):
        """Whether the model is a Sequential or functional Keras model, whose
        layers `reads_features` can follow."""
        try:
            return isinstance(self.model, keras.Model) and bool(self.model.inputs) and bool(
                getattr(self.model, "operations", None) or self.model.layers
            )
        except (AttributeError, ValueError):
            return False

    def takes_integer_images(self, inputs=None):
        """Whether the masked input is declared as integer images `(batch, H,
        W, C)`, e.g. uint8 pixels in [0, 255]."""
        declaration = self._model_declaration(inputs)
        return (
            declaration is not None
            and len(declaration[1]) == 4
            and _is_integer(declaration[2])
        )

    def image_dtype(self, inputs=None):
        """The masked input's declared dtype as a `tf.DType`: token ids keep
        theirs, every other input is fed as float32."""
        declaration = self._image_declaration(inputs)
        if declaration is not None and is_token_input(declaration[1], declaration[2]):
            return tf.as_dtype(declaration[2])
        return tf.float32

    def _check_keys(self, inputs):
        """A dict of inputs for a model of several named inputs must hold
        each of them, and nothing else (Keras would drop an unknown key with
        a warning per trace, and fail deep inside on a missing one)."""
        if self._dict_struct is not None:
            expected = list(self._dict_struct)
        else:
            expected = [name for name, *_ in self._declared or []]
        if len(expected) < 2 or None in expected or set(inputs) == set(expected):
            return
        missing = [key for key in expected if key not in inputs]
        unknown = [key for key in inputs if key not in expected]
        raise ValueError(
            f"The inputs are a dict with keys {list(inputs)}, but the model's inputs "
            f"are {sorted(expected)}"
            + (f": no {', '.join(map(repr, missing))}" if missing else "")
            + (f"{'; ' if missing else ': '}{', '.join(map(repr, unknown))} "
               f"{'is' if len(unknown) == 1 else 'are'} not among them" if unknown else "")
            + "."
        )

    def check(self, value, image_rank=3):
        """Checks and converts what a user passed as the model's inputs.

        Args:
            value: an array (one input) or the dict or list of arrays the
                model takes, batched or for a single example.
            image_rank: axes of one image without the batch (3 for
                `(height, width, channels)`) when the model does not declare
                its input shape.

        Returns:
            `(inputs, single)`: the same structure of NumPy arrays with a
            batch axis (the image as float, integer images as float32), and
            whether one example was given.

        Raises:
            TypeError: when an input is not numeric.
            ValueError: when the image has the wrong rank or size, holds NaN
                or inf, is empty, or the inputs' batch sizes differ.
        """
        several = isinstance(value, dict) or (
            isinstance(value, (list, tuple))
            and (self.image_input is not None or len(self._declared or ()) > 1)
        )
        leaves = value if several else None
        if leaves is None:
            declaration = self._image_declaration()
            if declaration is not None and is_string_dtype(declaration[2]):
                # A model of strings given something that is no text (None,
                # a list holding a number): said before it is read as numbers.
                raise TypeError(
                    "`images` must be texts: the model takes strings. Received "
                    f"{_text_of(value)}; pass a str, a list of str or an array of str."
                )
            structure = numeric_array("images", value)
        elif isinstance(leaves, dict):
            structure = {
                key: numeric_array(f"inputs[{key!r}]", v, strings=True)
                for key, v in leaves.items()
            }
        else:
            structure = [
                numeric_array(f"inputs[{i}]", v, strings=True) for i, v in enumerate(leaves)
            ]
        where = self.locate(structure)
        image = structure if where is None else structure[where]
        name = "images" if where is None else f"inputs[{where!r}]"
        declaration = self._image_declaration(structure)
        declared = None if declaration is None else declaration[1][1:]
        if declaration is not None and is_string_dtype(declaration[2]):
            raise TypeError(
                f"`{name}` must be texts: the model takes strings there. Received "
                f"{image.dtype} numbers of shape {image.shape}; pass a str, a list of "
                "str or an array of str."
            )
        tokens = declaration is not None and is_token_input(declaration[1], declaration[2])
        token_dtype = declaration[2] if tokens else None
        unknown_dtype = declaration is None or declaration[2] is None
        if unknown_dtype and image.ndim in (1, 2) and _is_integer(image.dtype):
            # A model that declares nothing (a function, NumPy code), or no
            # dtype (a subclassed model), given integer sequences: token
            # ids, one (length,) or (batch, length).
            tokens, token_dtype = True, image.dtype
        rank = len(declared) if declared is not None else 1 if tokens else image_rank
        if not tokens and rank == 3 and declared is not None:
            _check_colour_channels(name, image, declared)
        if not tokens and rank == 2 and declared is not None:
            # A subclassed model's sizes are those of its first call.
            first_call = _first_call_shape(self.model) if None in declared else None
            _warn_if_square_series(first_call[1:] if first_call else declared)
        given_shape = image.shape
        if not tokens and _without_channel_axis(image, declared):
            # Grayscale (H, W) or (B, H, W) for a model of one channel.
            image = image[..., None]
        axes = _axis_names(rank, tokens)
        kind = "sequence" if tokens else "input" if rank != 3 else "image"
        if self.whole_channels:  # a series, handled as (steps, channels, 1)
            axes, kind = ("steps", "channels", "channel"), "series"
        # Messages speak of the model's own input: no channel axis if it has none.
        shown_axes, shown_declared = axes, declared
        if self.adds_channel:
            shown_axes, shown_declared = axes[:-1], declared[:-1]
        if image.ndim not in (rank, rank + 1):
            raise ValueError(
                f"`{name}` must be one {kind} ({', '.join(shown_axes)}) or a batch "
                f"(batch, {', '.join(shown_axes)}). Received shape {given_shape}."
                + ("" if declared is not None else self._undeclared_hint())
            )
        given = image  # as given, for `_warn_if_raw_pixels` once it is checked
        if tokens:
            image = _token_ids(name, image, token_dtype)
        elif np.issubdtype(image.dtype, np.integer):
            image = image.astype(np.float32)
        elif not np.issubdtype(image.dtype, np.floating):
            raise TypeError(
                f"`{name}` must hold real numbers (a float dtype, or integers that "
                f"are converted to float32). Received dtype {image.dtype}."
            )
        single = image.ndim == rank
        if single:
            image = image[None]
            structure = _map(lambda x: x[None], structure)
        if declared is None and not tokens and looks_channels_first(image.shape[1:]):
            # A function that declares nothing (an ONNX Runtime session's
            # `run`, say) reads images channels last, as it is given them.
            raise ValueError(
                f"`{name}` of shape {given_shape} look channels first ({image.shape[1]} "
                f"channels of {image.shape[2:]}), and keras_rise reads images channels "
                f"last: it would mask {image.shape[1]} rows. Give them channels last, "
                "np.moveaxis(x, 1, -1) for a batch, and move the channels first in the "
                "model's function: lambda x: model(np.moveaxis(np.asarray(x), -1, 1))"
                + (
                    "; or, for a batch of grayscale images, give them a channel axis, "
                    "x[..., None]." if len(given_shape) == rank else "."
                )
            )
        if (
            declared is None and not tokens and single and rank == 3
            and image.shape[-1] > 4 and image.shape[-1] == image.shape[-2]
        ):
            # (B, H, W) grayscale images, given to a function that declares
            # nothing, read as one image of W channels.
            warnings.warn(
                f"`{name}` of shape {given_shape} are read as one image of "
                f"{image.shape[-1]} channels ({rank} axes, as a model that declares no "
                "input takes one image); if they are a batch of grayscale images, give "
                "them a channel axis, x[..., None].",
                stacklevel=outside_stacklevel(),
            )
        if 0 in image.shape:
            raise ValueError(f"`{name}` must not be empty. Received shape {image.shape}.")
        if declared is not None:
            for axis, want, got in zip(axes, declared, image.shape[1:]):
                if want is not None and want != got:
                    fix = (
                        "convert them to the model's channels" if axis == "channels"
                        else "resize them to the model's input size" if rank >= 3
                        else f"give {kind}s of the model's shape"
                    )
                    raise ValueError(
                        f"`{name}` do not match the model input: {axis} is {got} but "
                        f"the model expects ({', '.join(shown_axes)}) = "
                        f"{tuple(shown_declared)}. Received shape {given_shape}; {fix} first."
                    )
        if not np.all(np.isfinite(image)):
            values = "pixels" if kind == "image" else "values"
            raise ValueError(f"`{name}` must be finite; they contain NaN or inf {values}.")
        if not tokens and rank == 3 and not self.whole_channels:
            self._warn_if_raw_pixels(name, given)
        if where is None:
            return image, single
        structure[where] = image
        pairs = structure.items() if isinstance(structure, dict) else enumerate(structure)
        for key, other in pairs:
            declared_other = self._declared_input(key)
            if declared_other is not None and not _shape_fits(
                other.shape, declared_other[1]
            ):
                if single and _shape_fits(other.shape[1:], declared_other[1]):
                    raise ValueError(
                        f"`{name}` has no batch axis (shape {given_shape}) but "
                        f"inputs[{key!r}] has one (shape {other.shape[1:]}): give "
                        "every input with its batch axis, or none."
                    )
                raise ValueError(
                    f"inputs[{key!r}] must be a batch (batch, "
                    f"{', '.join(str(v) for v in declared_other[1][1:])}) of the model's "
                    f"input {declared_other[0]!r}"
                    + (", or one without the batch axis, as the image is given"
                       if single else "")
                    + f". Received shape {other.shape[1:] if single else other.shape}."
                )
            if other.ndim == 0 or len(other) != len(image):
                raise ValueError(
                    f"Every input needs the image's batch size {len(image)}; "
                    f"inputs[{key!r}] has shape {other.shape}."
                )
        return structure, single

    def _declared_input(self, key):
        """The declared `(name, shape, dtype)` of the input at `key` (a name,
        or an index into the model's list of inputs), or `None`."""
        if not self._declared:
            return None
        if isinstance(key, str):
            matches = [entry for entry in self._declared if entry[0] == key]
            return matches[0] if len(matches) == 1 else None
        if self._dict_struct is not None or not 0 <= key < len(self._declared):
            return None  # a dict model's list order is Keras' flattening
        return self._declared[key]

    def probe(self, inputs):
        """Calls the model on NumPy `inputs`; a `ValueError` naming the shapes if it fails."""
        tensors = _map(tf.convert_to_tensor, inputs)
        try:
            try:
                with _startup.retracing_notices_dropped():
                    if self._graph_probe is not None:
                        return self._graph_probe(tensors)
                    return self.call(tensors)
            except Exception as first:
                if not may_be_python(self.model):
                    raise
                # Python code that takes NumPy arrays only (an ONNX Runtime
                # session, say) is called with them from now on; if it fails
                # on them too, the first failure is the one reported.
                try:
                    outputs = self._invoke(_as_arrays(self._as_model_takes(tensors)))
                except Exception:
                    raise first from None
                if not _NumpyOutputs.returned(outputs):
                    raise
                return _NumpyOutputs.remember(self.model, outputs).tensors(outputs)
        except Exception as error:  # any model failure is reported as input
            shapes = _map(lambda x: tuple(x.shape[1:]), inputs)
            raise ValueError(
                f"The model could not be called on inputs of shape {shapes}: "
                f"{type(error).__name__}: {error_summary(error)}"
                # How inputs were read when the model declares none.
                + (self._undeclared_hint() if self._declared is None else "")
            ) from error

    def _undeclared_hint(self):
        """How inputs are read when the model declares none, and how to
        declare them; for a SavedModel's loaded object, which signature does."""
        signatures = getattr(self.model, "signatures", None)
        if not isinstance(self.model, keras.Model) and "serving_default" in (signatures or ()):
            return (
                " The model is a SavedModel loaded with tf.saved_model.load, which "
                "declares no input: pass loaded.signatures['serving_default'], which does."
            )
        if any(kind.__module__.split(".")[0] == "torch" for kind in type(self.model).__mro__):
            return (
                " The model is a PyTorch module, which keras_rise calls with TensorFlow "
                "tensors of channels-last images: explain a function of NumPy arrays, "
                "lambda x: module(torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1)))"
                ".detach().numpy()."
            )
        return UNDECLARED_HINT


class _NumpyOutputs:
    """What a model of Python code returns: the structure of its NumPy
    outputs, their dtypes and their shapes after the batch axis, as its first
    eager call gave them. Such models are remembered by object, so every
    `ModelInputs` of one model calls it the same way."""

    _known = weakref.WeakKeyDictionary()
    _unweakable = {}  # id -> (model, signature), for callables without weakrefs
    failure = None  # the exception of the model's last failure in a graph

    def __init__(self, outputs):
        outputs = _numpy_structure(outputs)
        self.structure = outputs
        leaves = tf.nest.flatten(outputs)
        for leaf in leaves:
            if leaf.dtype == object or leaf.ndim == 0:
                raise ValueError(
                    "The model returned NumPy values RISE cannot use: outputs must "
                    "be numeric arrays with a batch axis (or a list or dict of "
                    f"them). Received: {_describe(outputs)}."
                )
        self.dtypes = [tf.as_dtype(leaf.dtype) for leaf in leaves]
        self.shapes = [leaf.shape[1:] for leaf in leaves]

    @classmethod
    def returned(cls, outputs):
        """Whether eager `outputs` hold NumPy values and no tensor."""
        leaves = tf.nest.flatten(outputs)
        return bool(leaves) and not any(tf.is_tensor(leaf) for leaf in leaves)

    @classmethod
    def of(cls, model):
        try:
            return cls._known.get(model)
        except TypeError:
            entry = cls._unweakable.get(id(model))
            return entry[1] if entry is not None and entry[0] is model else None

    @classmethod
    def remember(cls, model, outputs):
        signature = cls(outputs)
        try:
            cls._known[model] = signature
        except TypeError:
            cls._unweakable[id(model)] = (model, signature)
        return signature

    def tensors(self, outputs):
        """Eager NumPy `outputs` as tensors, in their structure."""
        return tf.nest.map_structure(tf.convert_to_tensor, _numpy_structure(outputs))

    def call_in_graph(self, invoke, inputs):
        """`invoke(inputs)` inside a graph, through `tf.numpy_function`."""

        def run(*arrays):
            try:
                outputs = invoke(tf.nest.pack_sequence_as(inputs, list(arrays)))
                outputs = _numpy_structure(outputs)
                leaves = tf.nest.flatten(outputs)
                shapes = [leaf.shape[1:] for leaf in leaves]
                if len(leaves) != len(self.shapes) or shapes != self.shapes:
                    raise ValueError(
                        "The model must return outputs of the same structure and shape "
                        "(after the batch axis) for every batch; the first call returned "
                        f"{_describe(self.structure)}, a later one {_describe(outputs)}. "
                        "Pad outputs of varying length (e.g. detections) to a fixed count."
                    )
                return [
                    leaf.astype(dtype.as_numpy_dtype) for leaf, dtype in zip(leaves, self.dtypes)
                ]
            except Exception as error:
                # Kept for `ModelInputs.run` to report; a StopIteration ends
                # the graph with an OutOfRangeError, which TensorFlow does not
                # log (any other exception is logged with its traceback).
                self.failure = error
                raise StopIteration(f"{type(error).__name__}: {error}") from None

        flat = tf.numpy_function(
            run, tf.nest.flatten(inputs), self.dtypes, stateful=True, name="numpy_model"
        )
        batch = tf.nest.flatten(inputs)[0].shape[:1]
        for tensor, shape in zip(flat, self.shapes):
            tensor.set_shape(batch.concatenate(shape))
        return tf.nest.pack_sequence_as(self.structure, flat)


def _with_batch(outputs, batch):
    """`outputs` with their batch size set to the inputs' where a layer lost
    it in a graph (e.g. `TextVectorization` returns `(None, length)`); the
    compiled loop needs shapes that stay the same from step to step."""

    def fix(output):
        if tf.is_tensor(output) and output.shape.rank is None:
            raise ValueError(
                "The model's output has no known shape in a graph (e.g. a "
                "tf.numpy_function inside a tf.function returns a tensor of unknown "
                "rank); give it one in the function, e.g. "
                "`tf.ensure_shape(outputs, [None])` for (batch,) outputs."
            )
        if tf.is_tensor(output) and output.shape.rank and output.shape[0] is None:
            output = tf.ensure_shape(output, batch.concatenate(output.shape[1:]))
        return output

    return tf.nest.map_structure(fix, outputs)


def may_be_python(model):
    """Whether `model` may be Python code of NumPy arrays: not a Keras layer
    or model, nor a `tf.function`."""
    return not isinstance(model, keras.layers.Layer) and not hasattr(model, "python_function")


def _as_arrays(inputs):
    return tf.nest.map_structure(np.asarray, inputs)


def _numpy_structure(outputs):
    """A model's NumPy outputs as arrays: one array, or a dict or list of them.

    A list or tuple of arrays is a list of outputs; one of numbers (e.g. a
    batch of scores as a Python list) is one output."""
    if isinstance(outputs, dict):
        return {key: np.asarray(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)) and outputs and all(
        isinstance(value, np.ndarray) or tf.is_tensor(value) for value in outputs
    ):
        return [np.asarray(value) for value in outputs]
    return np.asarray(outputs)


def _describe(outputs):
    return str(tf.nest.map_structure(lambda x: f"{x.dtype}{tuple(x.shape)}", outputs))


def _check_colour_channels(name, image, declared):
    """Raises for colour images `(..., H, W, 3 or 4)` given to a model of
    1-channel images `(H, W, 1)`, which would otherwise read as a batch of
    grayscale images without their channel axis."""
    height, width, channels = declared
    if (
        channels == 1
        and image.ndim in (3, 4)
        and image.shape[-1] in (3, 4)
        and image.shape[-1] != width  # else a batch (B, H, W) of grayscale images
        and tuple(image.shape[-3:-1]) == (height, width)
    ):
        raise ValueError(
            f"`{name}` look like colour images (shape {image.shape}, "
            f"{image.shape[-1]} channels) but the model takes 1-channel images "
            f"{tuple(declared)}: convert them to grayscale first."
        )


def _without_channel_axis(image, declared):
    """Whether `image` is a 1-channel model's input with its channel axis left out:
    `(H, W)`, or `(B, H, W)` (with all axes, a last axis other than 1 cannot be
    the channels) — unless only one input of other channels fits the model's
    other axes (a `(100, 2)` signal for a `(100, 1)` model), which is then
    refused for its channels."""
    if declared is None or declared[-1] != 1:
        return False
    rank = len(declared)
    if image.ndim == rank - 1:
        return True
    if image.ndim != rank or image.shape[-1] == 1:
        return False
    return shape_fits(image.shape[1:], declared[:-1]) or not shape_fits(
        image.shape[:-1], declared[:-1]
    )


def shape_fits(shape, declared):
    """Whether a shape matches declared sizes: the same rank, the same size
    on every axis both fix (`None` on either side: any size)."""
    return len(shape) == len(declared) and all(
        want is None or got is None or want == got for got, want in zip(shape, declared)
    )


_AXIS_NAMES = {
    1: ("length",),
    2: ("length", "channels"),
    3: ("height", "width", "channels"),
    4: ("depth or frames", "height", "width", "channels"),
}


def _axis_names(rank, tokens=False):
    """Names of an input's axes, for messages."""
    if tokens and rank == 1:
        return ("tokens",)
    if rank in _AXIS_NAMES:
        return _AXIS_NAMES[rank]
    return tuple(f"axis {axis}" for axis in range(1, rank + 1))


def _is_channel_less_image(declaration, masked_axes):
    """Whether a model's masked input, so declared, is a grayscale image
    without a channel axis: `(batch, height, width)` real numbers, masked on
    two axes (see `ModelInputs`)."""
    if declaration is None or masked_axes != 2:
        return False
    _, shape, dtype = declaration
    return len(shape) == 3 and not is_token_input(shape, dtype)


def keeps_channels_whole(binary_masks):
    """Whether `binary_masks` masks a series `(steps, channels)` per step
    and channel: `(False, True)`, the steps blended, each channel whole."""
    return isinstance(binary_masks, (tuple, list)) and tuple(map(bool, binary_masks)) == (
        False, True
    )


def masked_axes_of(grid_size, binary_masks=None):
    """The axes a `grid_size` or a `binary_masks` names: the length of a
    tuple, else `None` (`RiseConfig` checks that two tuples agree)."""
    for value in (grid_size, binary_masks):
        if isinstance(value, (tuple, list)):
            return len(value)
    return None


def _warn_if_square_series(declared):
    """A model of `(n, n)` inputs: a series of `n` steps of `n` features, as RISE
    reads it, or (as in many MNIST examples) grayscale images without a
    channel axis, which RISE would explain one row at a time."""
    steps, features = declared
    if steps is not None and steps == features and steps >= 8:
        warnings.warn(
            f"The model takes inputs of shape ({steps}, {features}), which RISE "
            f"reads as a series of {steps} steps of {features} features and masks "
            "the steps (one value per row). If they are grayscale images, pass "
            "grid_size=(7, 7) (a grid of two axes) so that RISE masks both axes.",
            UserWarning,
            stacklevel=2,
        )


def _token_ids(name, values, dtype):
    """Token ids in the model's declared integer dtype; whole numbers only."""
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise TypeError(
                f"`{name}` must hold token ids (integers): the model's input is "
                f"declared {tf.as_dtype(dtype).name}. Received non-integer values of "
                f"dtype {values.dtype}."
            )
    elif not np.issubdtype(values.dtype, np.integer):
        raise TypeError(
            f"`{name}` must hold token ids (integers). Received dtype {values.dtype}."
        )
    if np.any(values < 0):
        raise ValueError(
            f"`{name}` must hold token ids >= 0 (an embedding's rows). Received "
            f"{values[values < 0].ravel()[0]:g}."
        )
    return values.astype(tf.as_dtype(dtype).as_numpy_dtype)


def _shape_fits(shape, declared):
    """Whether inputs of `shape` (with their batch axis) fit a `declared`
    input's shape, as Keras' functional models take them: a last axis of 1
    may be added or dropped."""
    shape = tuple(shape)
    if len(shape) == len(declared) - 1 and declared[-1] == 1:
        shape = (*shape, 1)
    elif len(shape) == len(declared) + 1 and shape[-1] == 1:
        shape = shape[:-1]
    return shape_fits(shape[1:], tuple(declared)[1:])


def _item_shapes(value):
    """The shapes of a list's or tuple's items, where each is array-like."""
    if not isinstance(value, (list, tuple)):
        return None
    try:
        return [tuple(np.shape(item)) for item in value]
    except (TypeError, ValueError):  # an item that is ragged itself
        return None


def numeric_array(name, value, strings=False):
    if isinstance(value, tf.data.Dataset):
        raise TypeError(
            f"`{name}` is a tf.data.Dataset; pass arrays (e.g. one batch of it), "
            "or use keras_rise.explain_dataset(explainer, dataset, output_dir) to "
            "explain a whole dataset."
        )
    if tf.is_tensor(value):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        shapes = _item_shapes(value)
        if shapes is not None and len(set(shapes)) > 1:
            raise ValueError(
                f"`{name}` holds items of different shapes ({', '.join(map(str, shapes[:4]))}"
                f"{', ...' if len(shapes) > 4 else ''}); one call takes a batch of one "
                "shape: explain inputs of other sizes in calls of their own, or resize them "
                "(the several inputs of one model need an explainer with `image_input`)."
            ) from None
        raise TypeError(f"`{name}` must be an array of numbers: {error}") from None
    if strings and _holds_strings(array):
        return array  # an input held fixed (a caption, a text's words)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        received = (
            f"{value!r}" if value is None or isinstance(value, str)
            else f"dtype {array.dtype}"
        )
        raise TypeError(
            f"`{name}` must be an array of real numbers. Received {received}."
        )
    return array


def _holds_strings(array):
    """Whether an array holds text: str or bytes values."""
    if array.dtype.kind in "US":
        return True
    return (
        array.dtype == object
        and array.size > 0
        and all(isinstance(value, (str, bytes)) for value in array.flat)
    )


def _map(function, structure):
    if isinstance(structure, dict):
        return {key: function(value) for key, value in structure.items()}
    if isinstance(structure, list):
        return [function(value) for value in structure]
    return function(structure)


def slice_batch(structure, start, stop):
    """Rows `start:stop` of every array in a structure from `ModelInputs.check`."""
    return _map(lambda x: x[start:stop], structure)


def to_tensors(structure):
    """A structure from `ModelInputs.check` as tensors."""
    return _map(tf.convert_to_tensor, structure)


def _text_of(value):
    """How a message shows a value given where texts were expected."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:59] + "…"


def _check_variables_alive(model):
    """Refuses a SavedModel's signature whose loaded object is gone: its
    variables were deleted with it, and the compiled loop would fail on them
    with TensorFlow's AssertionError (field test: `RiseExplainer(
    tf.saved_model.load(path).signatures["serving_default"])`)."""
    if isinstance(model, keras.Model) or not hasattr(model, "structured_input_signature"):
        return
    try:
        model.variables
    except AssertionError:
        raise ValueError(
            "`model` is a SavedModel's signature whose loaded object has been "
            "garbage-collected, and its variables with it: keep the object "
            "tf.saved_model.load returns, e.g. loaded = tf.saved_model.load(path); "
            "model = loaded.signatures['serving_default']."
        ) from None
    except Exception:  # not a concrete function after all
        return


# What a model that declares no input shape is taken to take, and how to say
# otherwise.
UNDECLARED_HINT = (
    " A model that declares no input (a plain function, a Sequential model "
    "without a keras.Input) is taken to take "
    "images (batch, height, width, channels), or token ids if given integer "
    "sequences (length,) or (batch, length); to explain signals, feature vectors "
    "or volumes, give a keras.Model built on keras.Input(shape, dtype), or a "
    "tf.function with an input_signature (Python code inside through "
    "tf.numpy_function)."
)


def layout(inputs):
    """What RISE masks cover in a batch of inputs: `(spatial_shape, tokens)`.

    Integer `(B, length)` inputs are token ids (`is_token_input`): masks
    cover the length and are binary. Otherwise the masks cover the axes between the
    batch and the channels — `(B, H, W, C)` → `(H, W)`, `(B, T, C)` →
    `(T,)`, `(B, D, H, W, C)` → `(D, H, W)` — and every axis after the
    batch of a vector `(B, T)`.

    Args:
        inputs: anything with a `shape` and a `dtype` (a tensor, a NumPy
            array, a `tf.TensorSpec`), batch axis first.

    Returns:
        `(spatial_shape, tokens)`: a tuple of ints (or `None` for unknown
        sizes) and a bool.
    """
    tokens = is_token_input(inputs.shape, inputs.dtype)
    if len(inputs.shape) == 2:
        return tuple(inputs.shape[1:]), tokens
    return tuple(inputs.shape[1:-1]), False


def fill_with_channel(fill, image_shape):
    """A fill array for one-channel inputs, given without their channel axis,
    with it added: `(H, W)` for images `(..., H, W, 1)`, `(B, H, W)` one per
    image (and likewise for volumes); for a series `(steps, channels)`
    masked per step and channel (handled as `(steps, channels, 1)`), also
    a value per channel `(channels,)` or per step `(steps, 1)` — any array
    that broadcasts to the inputs only once the axis is added. Anything else
    (a fill that broadcasts as it is) is returned as it is.

    Args:
        fill: a `fill_value` (a float, a mode or an array).
        image_shape: the inputs' shape, with or without the batch.
    """
    image_shape = tuple(image_shape)
    if (
        isinstance(fill, np.ndarray)
        and fill.ndim >= 1
        and len(image_shape) >= 3
        and image_shape[-1] == 1
        and not _broadcasts_to(fill.shape, image_shape)
        and _broadcasts_to(fill.shape + (1,), image_shape)
    ):
        return fill[..., None]
    return fill


def _broadcasts_to(shape, target):
    """Whether an array of `shape` broadcasts to `target` without growing
    it (aligned on the last axes; `None` sizes take anything)."""
    if len(shape) > len(target):
        return False
    return all(
        given in (1, size) or size is None for given, size in zip(shape[::-1], target[::-1])
    )


# What masked-out pixels may become besides a value: each image's own blur or
# mean colour, made from the images themselves.
FILL_MODES = ("blur", "mean")


def fill_for(fill_value, images, axes=None):
    """What masked-out pixels of `images` become, for a checked `fill_value`.

    Args:
        fill_value: a float or array (returned as it is, in the images'
            units); `"blur"`: each image's Gaussian blur (11 pixels, sigma
            5, the insertion metric's substrate), `(B, H, W, C)`; `"mean"`:
            each image's mean per channel, `(B, 1, 1, C)`.
        images: float tensor `(B, H, W, C)` (or any rank with the channels
            last).
        axes: the axes of `images` to blur or average over, or `None`
            (default): the masked axes, between the batch and the channels
            (every axis after the batch of a vector `(B, T)`). A series
            masked per step and channel, `(B, T, C, 1)`, takes `[1]`: each
            channel its own mean, blurred along the steps.

    Returns:
        The fill, broadcastable to `images` (graph or eager code).
    """
    if isinstance(fill_value, str):
        if fill_value == "mean":
            rank = images.shape.rank
            if axes is None:
                axes = list(range(1, rank - 1)) if rank > 2 else [1]
            return tf.reduce_mean(images, axis=list(axes), keepdims=True)
        from keras_rise.metrics import gaussian_blur

        blurred = gaussian_blur(tf.cast(images, tf.float32), axes=axes)
        return tf.cast(blurred, images.dtype)
    return fill_with_channel(fill_value, images.shape)
