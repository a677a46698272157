"""What RISE explains: scores that turn a model's outputs into numbers.

RISE is black-box: it needs one number per masked input (or a few, one per
target), and which number is the user's choice. A score maps the model's
outputs for a batch — one tensor, or the dict or list a multi-output model
returns — to float32 `(batch,)` (one target) or `(batch, T)` (`T`
targets, which give maps with a last axis of size `T`):

- `ClassScore`: a class's score (classifiers; the default).
- `BinaryScore`: either class of a binary classifier's one sigmoid unit.
- `OutputScore`: any scalar output (regressors, multi-label logits, a head).
- `RegionScore`: a class's mean over a region of a segmentation output
  (or a span of a sequence tagger's steps).
- `DetectionScore`: D-RISE's similarity to target detections (detectors).
- `SimilarityScore`: cosine similarity of an embedding to a reference.

Some scores take per-image *targets* from the model's outputs on the
unmasked input — `ClassScore()` explains each image's top class,
`SimilarityScore()` each image's own embedding: `targets_of(outputs)` makes
them once per image, and the RISE loop hands them, repeated for every mask,
to `call(outputs, targets)`. Scores whose parameters are data — the boxes of
`DetectionScore`, the region of `RegionScore`, the reference of
`SimilarityScore` — pass them as targets too, so that explaining one box
after another reuses one compiled loop (`trace_key`, `canonical`).
Everything here is TensorFlow code traced into the compiled loop. Any
callable `f(outputs) -> (batch,) or (batch, T)` works as a score too
(`as_score`).
"""

import copy
import numbers
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks


def _output_names(outputs):
    if isinstance(outputs, dict):
        return sorted(outputs)
    return list(range(len(outputs)))


@keras.saving.register_keras_serializable(package="keras_rise")
class Score:
    """Base class of scores: model outputs → `(batch,)` or `(batch, T)`.

    Subclasses implement `call(outputs, targets)` and, when they need
    per-image targets from the unmasked outputs, `targets_of(outputs)`.

    Args:
        output: which output of a multi-output model the score reads: a key
            of the dict or an index of the list the model returns (a Keras
            model's list also by its output layers' names,
            `model.output_names`). `None`
            (default) takes the model's only output, and is required for a
            model with one output.
    """

    def __init__(self, output=None):
        if output is not None and not isinstance(output, (str, numbers.Integral)):
            raise TypeError(
                "`output` must be None, an output name (str) or an index (int). "
                f"Received: output={output!r} (of type {type(output).__name__})."
            )
        if isinstance(output, bool):
            raise TypeError(f"`output` must not be a bool. Received: output={output}.")
        self.output = output

    def select(self, outputs):
        """The output this score reads, from everything the model returned."""
        if self.output is None:
            if isinstance(outputs, (dict, list, tuple)):
                if len(outputs) == 1:
                    return list(outputs.values() if isinstance(outputs, dict) else outputs)[0]
                if holds_detections(outputs):
                    raise ValueError(
                        f"The model returns detections (outputs {_output_names(outputs)}): "
                        "explain one with the score keras_rise.scores.DetectionScore(box, "
                        "class_id) (keras_rise.scores.detections(model(images)) lists "
                        f"them), or pass `output=` to the score ({type(self).__name__}"
                        "(..., output=NAME)) to explain one output."
                    )
                raise ValueError(
                    f"The model returns {len(outputs)} outputs "
                    f"{_output_names(outputs)}; pass `output=` to the score "
                    f"({type(self).__name__}(..., output=NAME_OR_INDEX)) to say "
                    "which one to explain."
                )
            return outputs
        if isinstance(outputs, dict):
            if self.output not in outputs:
                raise ValueError(
                    f"`output={self.output!r}` is not an output of the model; its "
                    f"outputs are {_output_names(outputs)}."
                )
            return outputs[self.output]
        if isinstance(outputs, (list, tuple)):
            if not isinstance(self.output, numbers.Integral) or not (
                -len(outputs) <= self.output < len(outputs)
            ):
                by_name = (
                    " by index, not by name (a list's outputs have none)"
                    if isinstance(self.output, str) else ""
                )
                raise ValueError(
                    f"`output={self.output!r}` is not an output of the model; it "
                    f"returns a list of {len(outputs)} outputs, chosen{by_name}: "
                    f"output=0 to output={len(outputs) - 1}."
                )
            return outputs[self.output]
        raise ValueError(
            f"`output={self.output!r}` was given, but the model returns a single "
            "output; leave `output` as None."
        )

    def targets_of(self, outputs):
        """Per-image targets from the outputs on the unmasked inputs.

        Returns:
            A tensor with a leading batch axis, or a tuple of them (empty
            when the score needs none, the default).
        """
        del outputs
        return ()

    def check_targets(self, outputs, targets):
        """Targets given from outside (not by `targets_of`), checked against
        the outputs where the score can tell: returns them, with any checks
        as graph dependencies. The default checks nothing."""
        del outputs
        return targets

    def unmasked_warning(self, scores):
        """A warning about the scores of the unmasked inputs (NumPy, `(B,)` or
        `(B, T)`) that makes the maps meaningless, or `None` (the default)."""
        del scores
        return None

    def call(self, outputs, targets):
        """The scores: float32 `(batch,)` or `(batch, T)`.

        Args:
            outputs: what the model returned for a batch of inputs.
            targets: `targets_of` of the unmasked inputs, repeated to match
                the batch.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `call`.")

    def trace_key(self):
        """What the compiled graph of `call` depends on, besides `targets`.

        Scores with equal keys compile to the same graph: their `call` reads
        their data parameters from `targets` only (made by `targets_of`,
        which must not depend on `outputs` but for the batch size), so one
        compiled loop serves them all (see `canonical`). `None` (default):
        the graph is this object's own.
        """
        return None

    # Scores are plain TensorFlow code whose Python branches depend only on
    # static shapes: AutoGraph (on in a user's `tf.function` or Keras'
    # compiled predict) has nothing to convert, and converting them
    # recursively has mixed up methods of the same class.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, outputs, targets=None):
        if targets is None:
            targets = self.targets_of(outputs)
        return self.call(outputs, targets)

    def get_config(self):
        return {"output": self.output}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(
            f"{key}={value!r}" for key, value in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


_CANONICAL = {}


def canonical(score):
    """The score that stands in compiled graphs for every score with its `trace_key`.

    The first score seen with a key is kept; with per-image targets from
    the score itself (`targets_of`), it computes the same scores as `score`.
    keras_rise's class, output and similarity scores without a key stand for
    every score of their class with an equal config (a new
    `ClassScore()` per call compiles once); other scores stand for
    themselves.
    """
    key = score.trace_key()
    if key is None and type(score) in (ClassScore, OutputScore, SimilarityScore):
        config = score.get_config()
        if config.get("reference") is None:  # no array to compare
            key = (type(score), repr(sorted(config.items())))
    if key is None:
        return score
    return _CANONICAL.setdefault(key, score)


def _tile(value, batch):
    """A constant `(...)` repeated as `(batch, ...)`."""
    value = tf.convert_to_tensor(value)
    return tf.tile(value[None], [batch] + [1] * value.shape.rank)


def _batch(outputs):
    """The batch size of a model's outputs (any structure)."""
    return tf.shape(tf.nest.flatten(outputs)[0])[0]


def _shape_text(shape):
    """An output's shape for messages, the batch axis named: `(batch, 16, 2)`
    (the explainer probes with its own batch, not the user's)."""
    dims = ", ".join(str(d) for d in tuple(shape)[1:])
    return f"(batch, {dims})" if dims else "(batch,)"


def _float(tensor):
    tensor = tf.convert_to_tensor(tensor)
    return tensor if tensor.dtype == tf.float32 else tf.cast(tensor, tf.float32)


@keras.saving.register_keras_serializable(package="keras_rise")
class ClassScore(Score):
    """The score of a class: classifiers' `(batch, num_classes)` outputs.

    Args:
        class_ids: `None` (default) for each image's top class on the
            unmasked input; an int, the same class for every image; a list
            of ints, those classes for every image (maps get a last axis of
            that length); or `"all"`, every class.
        output: see `Score`.

    Example:

    >>> keras_rise.scores.ClassScore()(tf.constant([[0.2, 0.8], [0.6, 0.4]]))
    <tf.Tensor: shape=(2,), dtype=float32, numpy=array([0.8, 0.6], dtype=float32)>
    """

    def __init__(self, class_ids=None, output=None):
        super().__init__(output)
        if isinstance(class_ids, str):
            if class_ids != "all":
                raise ValueError(
                    'A string `class_ids` must be "all". Received: '
                    f"class_ids={class_ids!r}."
                )
        elif class_ids is not None:
            values = np.asarray(class_ids)
            if values.size == 0:
                raise ValueError(
                    "`class_ids` must name at least one class. Received: class_ids=[]."
                )
            integers = np.issubdtype(values.dtype, np.integer) and values.dtype != bool
            if not integers or values.ndim > 1:
                raise TypeError(
                    '`class_ids` must be None, an int, a list of ints or "all". '
                    f"Received: class_ids={class_ids!r}."
                )
            if np.any(values < 0):
                raise ValueError(
                    f"`class_ids` must be >= 0. Received: class_ids={class_ids!r}."
                )
            class_ids = int(values) if values.ndim == 0 else [int(v) for v in values]
        self.class_ids = class_ids

    def _classes(self, outputs):
        scores = _float(self.select(outputs))
        if scores.shape.rank != 2:
            raise ValueError(
                "ClassScore needs an output of shape (batch, num_classes); the "
                f"model's is {_shape_text(scores.shape)}. For a scalar output use "
                "OutputScore(), for a segmentation RegionScore(...)."
            )
        return scores

    def targets_of(self, outputs):
        """Class ids: int32 `(batch,)`, or `(batch, T)` for a list of classes."""
        scores = self._classes(outputs)
        num_classes = scores.shape[-1]
        if num_classes is not None and self.class_ids not in (None, "all"):
            _checks.class_range("class_ids", self.class_ids, num_classes)
        batch = tf.shape(scores)[0]
        if self.class_ids is None or self.class_ids == "all":
            return tf.argmax(scores, axis=-1, output_type=tf.int32)
        if isinstance(self.class_ids, int):
            return tf.fill([batch], self.class_ids)
        return tf.tile(tf.constant([self.class_ids], tf.int32), [batch, 1])

    def check_targets(self, outputs, targets):
        """Class ids `targets`, checked in the graph against the model's
        classes (a tensor of ids, e.g. a layer's or a serving signature's
        input): out of range they raise rather than read a wrong score
        (`tf.gather` on a GPU returns 0 for them)."""
        num_classes = self._classes(outputs).shape[-1]
        targets = tf.convert_to_tensor(targets)
        if num_classes is None or not targets.dtype.is_integer or self.class_ids == "all":
            return targets
        message = (
            f"class ids must be in [0, {num_classes}): the model has {num_classes} classes"
        )
        checks = [
            tf.debugging.assert_non_negative(targets, message=message),
            tf.debugging.assert_less(targets, tf.cast(num_classes, targets.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(targets)

    def call(self, outputs, targets):
        scores = self._classes(outputs)
        if self.class_ids == "all":
            return scores
        targets = tf.cast(targets, tf.int32)
        if targets.shape.rank == 1:
            return tf.gather(scores, targets[:, None], batch_dims=1)[:, 0]
        return tf.gather(scores, targets, batch_dims=1)

    def get_config(self):
        return {"class_ids": self.class_ids, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_rise")
class BinaryScore(ClassScore):
    """The two classes of a binary classifier's one unit, `(batch, 1)`.

    A `Dense(1, "sigmoid")` output is `p`, the probability of class 1; its
    class 0 has `1 - p` (the maps of `1 - p` and `p` add up to 1: RISE's
    masks keep each position with `keep_prob` on average). This score gives
    both, as `ClassScore` does for `(batch, 2)` outputs. The explainer, the
    layer and the export read a unit made by a sigmoid layer this way by
    default (`is_sigmoid_unit`): `targets=None` explains each input's
    predicted class, `targets=0` or `1` that class. A unit made otherwise
    (a logit, a sigmoid inside a `Lambda`) is one score unless this score
    is passed.

    Args:
        class_ids: as `ClassScore`'s: `None` (default) for each input's
            predicted class (1 where `p >= 0.5`), `0` or `1`, a list of
            them, or `"all"` (both, in the order 0, 1).
        from_logits: bool, the unit is a logit; `sigmoid` makes it `p`.
            Defaults to `False`.
        output: see `Score`.

    Example:

    >>> keras_rise.scores.BinaryScore()(tf.constant([[0.9], [0.2]]))
    <tf.Tensor: shape=(2,), dtype=float32, numpy=array([0.9, 0.8], dtype=float32)>
    """

    def __init__(self, class_ids=None, from_logits=False, output=None):
        super().__init__(class_ids, output)
        self.from_logits = _checks.boolean("from_logits", from_logits)

    def _classes(self, outputs):
        unit = _float(self.select(outputs))
        if unit.shape.rank == 2 and unit.shape[-1] == 1:
            unit = unit[:, 0]
        if unit.shape.rank != 1:
            raise ValueError(
                "BinaryScore needs a binary classifier's one unit, (batch, 1) or "
                f"(batch,); the model's output is {_shape_text(unit.shape)}. For "
                "(batch, num_classes) use ClassScore()."
            )
        p = tf.sigmoid(unit) if self.from_logits else unit
        return tf.stack([1.0 - p, p], axis=-1)

    def get_config(self):
        return {"from_logits": self.from_logits, **super().get_config()}


# The default score of a sigmoid unit (`default_score`), one object so that
# compiled loops do not retrace.
BINARY_SCORE = BinaryScore()


def is_sigmoid_unit(model):
    """Whether a Keras model's one output is one unit `(batch, 1)` made by a
    sigmoid: a binary classifier, whose classes `BinaryScore` reads. A
    linear unit (a regressor's, or a logit), several outputs or a model
    that is not a Keras graph are not."""
    return is_sigmoid_output(model) and tuple(model.outputs[0].shape[1:]) == (1,)


def is_sigmoid_output(model):
    """Whether a Keras model's one output has one channel (a last axis of
    size 1) made by a sigmoid layer: a binary classifier's unit, or a binary
    segmenter's `(batch, height, width, 1)` probabilities of class 1."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:  # several heads, or not a Keras model
        return False
    output = outputs[0]
    history = getattr(output, "_keras_history", None)
    layer = history[0] if history else None
    return (
        len(output.shape) >= 2 and output.shape[-1] == 1
        and getattr(layer, "activation", None) is keras.activations.sigmoid
    )


@keras.saving.register_keras_serializable(package="keras_rise")
class OutputScore(Score):
    """A scalar output: regressors, multi-label logits, a custom head.

    Args:
        index: `None` (default) for an output of shape `(batch,)` or
            `(batch, 1)`; an int, column `index` of a `(batch, n)` output.
        output: see `Score`.

    Example:

    >>> keras_rise.scores.OutputScore(index=1)(tf.constant([[1.0, 2.0]]))
    <tf.Tensor: shape=(1,), dtype=float32, numpy=array([2.], dtype=float32)>
    """

    def __init__(self, index=None, output=None):
        super().__init__(output)
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, numbers.Integral)
        ):
            raise TypeError(
                f"`index` must be None or an int. Received: index={index!r}."
            )
        self.index = None if index is None else int(index)

    def call(self, outputs, targets):
        del targets
        values = _float(self.select(outputs))
        shape = tuple(values.shape)
        if self.index is None:
            if values.shape.rank == 1:
                return values
            if values.shape.rank == 2 and shape[1] == 1:
                return values[:, 0]
            raise ValueError(
                "OutputScore() needs an output of shape (batch,) or (batch, 1); "
                f"the model's is {_shape_text(shape)}. Pass `index=` to pick a column."
            )
        if values.shape.rank != 2 or not -shape[1] <= self.index < shape[1]:
            raise ValueError(
                f"OutputScore(index={self.index}) needs an output of shape "
                f"(batch, n) with n > {self.index}; the model's is {_shape_text(shape)}."
            )
        return values[:, self.index]

    def get_config(self):
        return {"index": self.index, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_rise")
class RegionScore(Score):
    """Dense predictions: a class's mean score over a region of the output.

    For a segmenter's `(batch, h, w, classes)` output the region is a box
    or mask of output pixels; for a sequence tagger's or a frame
    classifier's `(batch, steps, classes)` (tokens, audio frames) a span of
    steps; for a `(batch, d, h, w, classes)` volume a box of voxels.

    Args:
        class_id: int, the channel of the output (its last axis).
        region: `None` (default): each input's own segment of the class,
            the positions where the model's top class on the unmasked input
            is `class_id` (the whole output for an input with none); for an
            output of one channel (a binary segmenter's sigmoid), where it
            is at least 0.5. Or a
            box of output positions, all starts then all (exclusive)
            ends: `(top, left, bottom, right)` for images, `(start, stop)`
            for sequences, `(front, top, left, back, bottom, right)` for
            volumes; or a boolean mask at the output's size without its
            batch and class axes (`(h, w)`, `(steps,)`, ...). An integer
            array of two or more axes, of 0 and 1, is a mask too. Boxes and
            masks are in the output's positions, which may be fewer than the
            input's (a stride-2 segmenter's); one region serves every input.
        output: see `Score`.

    Example:

    >>> score = keras_rise.scores.RegionScore(1, region=(0, 0, 2, 2))
    >>> score(tf.ones([3, 8, 8, 2])).shape
    TensorShape([3])
    >>> keras_rise.scores.RegionScore(0, region=(4, 9))(tf.ones([3, 20, 5])).shape
    TensorShape([3])
    """

    # What a box's positions are called, by the number of axes it spans.
    _AXES = {1: ("steps",), 2: ("height", "width"), 3: ("depth", "height", "width")}
    _BOXES = {1: "(start, stop)", 2: "(top, left, bottom, right)",
              3: "(front, top, left, back, bottom, right)"}

    def __init__(self, class_id, region=None, output=None):
        super().__init__(output)
        if isinstance(class_id, bool) or not isinstance(class_id, numbers.Integral):
            raise TypeError(
                f"`class_id` must be an int. Received: class_id={class_id!r}."
            )
        if class_id < 0:
            raise ValueError(f"`class_id` must be >= 0. Received: class_id={class_id}.")
        self.class_id = int(class_id)
        if region is None:  # each input's predicted segment (`targets_of`)
            self.region = None
            return
        array = np.asarray(region)
        if array.ndim >= 2 and np.issubdtype(array.dtype, np.integer):
            if not np.isin(array, (0, 1)).all():
                raise ValueError(
                    "An integer mask `region` must hold only 0 and 1. Received "
                    f"values {np.unique(array)[:5].tolist()}..."
                )
            array = array.astype(bool)  # a 0/1 segmentation mask
        if array.dtype == bool:
            if array.ndim == 0 or not array.any():
                raise ValueError(
                    "A mask `region` must be a boolean array at the output's size, "
                    f"(h, w) or (steps,), with at least one True. Received shape "
                    f"{array.shape}."
                )
            self.region = array
            return
        if (
            array.ndim != 1
            or array.size not in (2, 4, 6)
            or not np.issubdtype(array.dtype, np.integer)
        ):
            received = (
                f"region={region!r}"
                if array.size <= 8
                else f"an array of shape {array.shape} and dtype {array.dtype}"
            )
            hint = ""
            if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
                hint = " A mask of steps must be boolean: region=mask.astype(bool)."
            raise ValueError(
                "`region` must be a box of ints, (top, left, bottom, right) or "
                "(start, stop), or a boolean mask (h, w) or (steps,). "
                f"Received {received}.{hint}"
            )
        box = tuple(int(v) for v in array)
        axes = len(box) // 2
        if not all(0 <= box[i] < box[axes + i] for i in range(axes)):
            names = self._BOXES[axes].strip("()").split(", ")
            rule = " and ".join(
                f"0 <= {names[i]} < {names[axes + i]}" for i in range(axes)
            )
            raise ValueError(
                f"`region` box must have {rule} (a mask must be boolean). "
                f"Received: region={region!r}."
            )
        self.region = box

    def _axes(self):
        """How many axes of the output the region spans (`None`: any)."""
        if self.region is None:
            return None
        if isinstance(self.region, tuple):
            return len(self.region) // 2
        return self.region.ndim

    def weights(self, spatial):
        """The region as weights over an output's positions, summing to one.

        Args:
            spatial: the output's positions, without its batch and class
                axes, e.g. `(h, w)` or `(steps,)`.

        Returns:
            float32 NumPy array of shape `spatial`.
        """
        if self.region is None:
            raise ValueError(
                "A RegionScore without a `region` takes each input's own segment "
                "(`targets_of`); give a box or a mask for weights of its own."
            )
        if isinstance(self.region, tuple):
            axes = len(self.region) // 2
            starts, stops = self.region[:axes], self.region[axes:]
            if any(stop > size for stop, size in zip(stops, spatial)):
                size = "x".join(map(str, spatial))
                raise ValueError(
                    f"`region` box {self.region} reaches outside the model's "
                    f"{size + '-step' if len(spatial) == 1 else size} output."
                )
            weights = np.zeros(spatial, np.float32)
            weights[tuple(slice(a, b) for a, b in zip(starts, stops))] = 1.0
        else:
            if self.region.shape != tuple(spatial):
                raise ValueError(
                    f"`region` mask of shape {self.region.shape} does not match the "
                    f"model's output size {tuple(spatial)}."
                )
            weights = self.region.astype(np.float32)
        return weights / weights.sum()

    def _class_map(self, outputs):
        return self._values(outputs)[..., self.class_id]

    def _values(self, outputs):
        """The output, checked: `(batch, positions..., classes)`."""
        values = _float(self.select(outputs))
        shape, rank = tuple(values.shape), values.shape.rank
        axes = self._axes()
        rank_ok = rank >= 3 if axes is None else rank == axes + 2
        class_ok = rank >= 2 and (shape[-1] is None or 0 <= self.class_id < shape[-1])
        if rank_ok and class_ok:
            return values
        if not rank_ok and isinstance(self.region, np.ndarray) and rank >= 3:
            raise ValueError(
                f"`region` mask of shape {self.region.shape} does not match the model's "
                f"output positions {shape[1:-1]} (the output is {_shape_text(shape)}); "
                f"give a boolean mask of shape {shape[1:-1]}."
            )
        if rank_ok:  # the class is not among the output's
            raise ValueError(
                f"RegionScore(class_id={self.class_id}) names a class that the output "
                f"does not have: the model's is {_shape_text(shape)}, {shape[-1]} "
                f"class{'es' if shape[-1] != 1 else ''} (0 to {shape[-1] - 1})."
                + (
                    " A binary segmenter's one sigmoid channel is class 1's "
                    "probability: RegionScore(0) explains it."
                    if shape[-1] == 1 else ""
                )
            )
        axes = axes or (rank - 2 if rank >= 3 else 2)  # say an image's when unknown
        names = self._AXES.get(axes, tuple(f"axis {i + 1}" for i in range(axes)))
        which = "" if self.region is None else f" with a region of {axes} axes"
        hint = (
            f": class scores, whose class {self.class_id} targets={self.class_id} "
            "explains (ClassScore)" if rank == 2 else ""
        )
        raise ValueError(
            f"RegionScore(class_id={self.class_id}){which} needs an output of shape "
            f"(batch, {', '.join(names)}, classes); the model's is "
            f"{_shape_text(shape)}{hint}."
        )

    def targets_of(self, outputs):
        """The region's weights `(batch, ...)`, summing to one per example."""
        if self.region is None:
            values = self._values(outputs)
            if values.shape[-1] == 1:  # one channel: a probability, not a top class
                segment = tf.cast(values[..., 0] >= 0.5, tf.float32)
            else:
                segment = tf.cast(tf.argmax(values, axis=-1) == self.class_id, tf.float32)
            axes = list(range(1, segment.shape.rank))
            size = tf.cast(tf.reduce_prod(tf.shape(segment)[1:]), tf.float32)
            count = tf.reduce_sum(segment, axis=axes, keepdims=True)
            return tf.where(count > 0, segment / tf.maximum(count, 1.0), 1.0 / size)
        class_map = self._class_map(outputs)
        weights = self.weights(tuple(class_map.shape[1:]))
        return _tile(weights, tf.shape(class_map)[0])

    def call(self, outputs, targets):
        class_map = self._class_map(outputs)
        return tf.reduce_sum(class_map * targets, axis=list(range(1, class_map.shape.rank)))

    def trace_key(self):
        if self.region is None:
            return None  # its targets_of reads the outputs
        shape = self.region.shape if isinstance(self.region, np.ndarray) else len(self.region)
        return (RegionScore, self.class_id, self.output, shape)

    def get_config(self):
        region = self.region
        if region is not None:
            region = list(region) if isinstance(region, tuple) else region.tolist()
        return {"class_id": self.class_id, "region": region, **super().get_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("region") is not None:
            region = np.asarray(config["region"])
            config["region"] = region if region.dtype == bool else tuple(config["region"])
        return cls(**config)


BOX_FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)


def _to_xyxy(boxes, box_format):
    """Boxes `(..., 4)` in `box_format` as `(x1, y1, x2, y2)`.

    Relative formats are read at unit size: IoU does not change when each
    axis is scaled, so they need no image size.
    """
    boxes = _float(boxes)
    first, second, third, fourth = tf.unstack(boxes, axis=-1)
    relative = box_format.startswith("rel_")
    box_format = box_format[4:] if relative else box_format
    if box_format == "xyxy":
        parts = (first, second, third, fourth)
    elif box_format == "yxyx":
        parts = (second, first, fourth, third)
    elif box_format == "xywh":
        parts = (first, second, first + third, second + fourth)
    elif box_format == "center_xywh":
        parts = (
            first - third / 2, second - fourth / 2, first + third / 2, second + fourth / 2
        )
    elif box_format == "center_yxhw":
        parts = (
            second - fourth / 2, first - third / 2, second + fourth / 2, first + third / 2
        )
    else:
        _checks.box_format(box_format, BOX_FORMATS)
    return tf.stack(parts, axis=-1)


def holds_detections(outputs):
    """Whether a model's outputs (or its symbolic `model.output`) are a
    detector's: a dict with `"boxes"`, which `DetectionScore` reads."""
    return isinstance(outputs, dict) and "boxes" in outputs


def _outputs_kind(outputs):
    """What a detector returned, for an error: its dict keys, its shape or
    its type."""
    if isinstance(outputs, dict):
        return f"a dict with keys {sorted(outputs)}"
    shape = getattr(outputs, "shape", None)
    if shape is not None:
        return "one array of shape (batch" + "".join(f", {d}" for d in tuple(shape)[1:]) + ")"
    return type(outputs).__name__


def box_iou(targets, proposals):
    """IoU of every target with every proposal, in `xyxy` boxes.

    Args:
        targets: float32 `(batch, T, 4)`.
        proposals: float32 `(batch, P, 4)`.

    Returns:
        float32 `(batch, T, P)`; 0 where a box has no area.
    """
    low = tf.maximum(targets[:, :, None, :2], proposals[:, None, :, :2])
    high = tf.minimum(targets[:, :, None, 2:], proposals[:, None, :, 2:])
    sides = tf.maximum(high - low, 0.0)
    intersection = sides[..., 0] * sides[..., 1]

    def area(boxes):
        sides = tf.maximum(boxes[..., 2:] - boxes[..., :2], 0.0)
        return sides[..., 0] * sides[..., 1]

    union = area(targets)[:, :, None] + area(proposals)[:, None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)


@keras.saving.register_keras_serializable(package="keras_rise")
class DetectionScore(Score):
    """D-RISE (Petsiuk et al., CVPR 2021): similarity to target detections.

    For each target detection (a box and a class), the score of a masked
    image is the largest, over the detector's proposals on it, of
    `IoU(target box, proposal box) · cosine(target class vector, proposal
    class vector) · objectness`. The target class vector is one-hot.

    The detector's output is read as a dict:

    - `"boxes"` `(batch, P, 4)` in `box_format`, and either
      `"class_probs"` `(batch, P, K)`, or the KerasHub/KerasCV convention
      `"classes"` (int, `-1` for padding) and `"confidence"` `(batch, P)`,
      in which case a proposal's class vector is one-hot and its
      confidence is its objectness;
    - optionally `"objectness"` `(batch, P)` (1 when absent; for a
      one-class detector, `"class_probs"` `(batch, P, 1)` without it, the
      class probability, which the cosine cannot see).

    Any other output works through `adapter`, a function mapping the
    selected output to `(boxes (batch, P, 4), class_probs (batch, P, K),
    objectness (batch, P))`.

    Args:
        boxes: the target boxes, `(4,)` for one (maps `(batch, H, W)`) or
            `(T, 4)` (maps `(batch, H, W, T)`), in `box_format`; the same
            targets for every image explained.
        class_ids: int, or `T` ints: each target's class.
        box_format: one of `BOX_FORMATS`, as in `keras.utils.bounding_boxes`:
            the format of both the target `boxes` and the detector's
            `"boxes"` output, which must share it. Defaults to `"xyxy"`.
        output: see `Score`; `None` reads the model's whole output.
        adapter: optional callable, see above. Must be registered with
            `keras.saving.register_keras_serializable` to save the score.

    Example:

    >>> score = keras_rise.scores.DetectionScore([10, 10, 30, 40], class_ids=2)
    >>> explainer.explain(image, targets=score)
    """

    def __init__(self, boxes, class_ids, box_format="xyxy", output=None, adapter=None):
        self._whole_output = output is None
        super().__init__(output)
        try:
            array = np.asarray(boxes, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(
                f"`boxes` must be numbers, one box (4,) or several (T, 4). Received: {boxes!r}."
            ) from None
        if array.ndim not in (1, 2) or array.shape[-1] != 4 or array.size == 0:
            raise ValueError(
                "`boxes` must be one box (4,) or several (T, 4). Received shape "
                f"{array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("`boxes` must be finite.")
        ids = np.asarray(class_ids)
        if ids.dtype == bool or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(
                f"`class_ids` must be an int or ints. Received: class_ids={class_ids!r}."
            )
        single = array.ndim == 1
        ids = np.broadcast_to(ids, array.shape[:-1]) if ids.ndim == 0 else ids
        if ids.shape != array.shape[:-1]:
            raise ValueError(
                f"`class_ids` must give one class per box: {array.shape[:-1]} "
                f"expected, received shape {ids.shape}."
            )
        if np.any(ids < 0):
            raise ValueError(f"`class_ids` must be >= 0. Received {ids.tolist()}.")
        _checks.box_format(box_format, BOX_FORMATS)
        with tf.init_scope():  # eager even when made while a graph is traced
            corners = np.reshape(_to_xyxy(array, box_format).numpy(), (-1, 4))
        empty = (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
        if np.any(empty):
            index = int(np.argmax(empty))
            raise ValueError(
                "`boxes` must have a positive width and height (an empty box overlaps "
                f"nothing, so its map would be 0 everywhere); box {index}, "
                f"{np.reshape(array, (-1, 4))[index].tolist()} in {box_format!r}, is "
                f"{corners[index].tolist()} as (x1, y1, x2, y2)."
            )
        if adapter is not None and not callable(adapter):
            raise TypeError(f"`adapter` must be callable. Received: {adapter!r}.")
        self.boxes = array
        self.class_ids = ids.astype(np.int32)
        self.box_format = box_format
        self.adapter = adapter
        self._single = single

    def select(self, outputs):
        return outputs if self._whole_output else super().select(outputs)

    def proposals(self, outputs):
        """The detector's proposals: `(boxes, classes, objectness)`.

        Returns:
            boxes as `xyxy` `(B, P, 4)`; class vectors float32 `(B, P, K)`,
            or, for the `"classes"` convention, int32 class ids `(B, P)`
            (`-1` for padding); objectness `(B, P)`.
        """
        selected = self.select(outputs)
        if self.adapter is not None:
            boxes, class_probs, objectness = self.adapter(selected)
            return _to_xyxy(boxes, self.box_format), _float(class_probs), _float(objectness)
        if not isinstance(selected, dict) or "boxes" not in selected:
            kind = _outputs_kind(selected)
            read = "the model returns" if self.output is None else (
                f"`output={self.output!r}` selects"
            )
            raise ValueError(
                'DetectionScore reads a dict with "boxes" and "class_probs" (or '
                f'"classes" and "confidence"); {read} {kind}. Pass '
                "`adapter=` to map it to (boxes, class_probs, objectness)."
            )
        boxes = _to_xyxy(selected["boxes"], self.box_format)
        objectness = selected.get("objectness")
        if "class_probs" in selected:
            class_probs = _float(selected["class_probs"])
            if class_probs.shape[-1] == 1 and objectness is None:
                # One class: the cosine of two one-entry vectors is 1 whatever
                # the probability, which is then the detection's confidence.
                objectness = class_probs[..., 0]
        elif "classes" in selected and "confidence" in selected:
            class_probs = tf.cast(selected["classes"], tf.int32)
            confidence = _float(selected["confidence"]) * tf.cast(
                class_probs >= 0, tf.float32
            )
            objectness = confidence if objectness is None else _float(objectness) * confidence
        else:
            raise ValueError(
                'DetectionScore needs "class_probs", or "classes" and "confidence", '
                f"in the detector's output; it has {sorted(selected)}."
            )
        if objectness is None:
            objectness = tf.ones(tf.shape(boxes)[:2])
        return boxes, class_probs, _float(objectness)

    def targets_of(self, outputs):
        """The target boxes `(batch, T, 4)` as `xyxy` and classes `(batch, T)`."""
        classes = self.proposals(outputs)[1]
        num_classes = classes.shape[-1] if classes.dtype.is_floating else None
        if num_classes is not None and int(self.class_ids.max()) >= num_classes:
            raise ValueError(
                f"`class_ids` {self.class_ids.tolist()} reach past the detector's "
                f"{num_classes} classes."
            )
        batch = _batch(outputs)
        boxes = _to_xyxy(self.boxes.reshape(-1, 4), self.box_format)
        return _tile(boxes, batch), _tile(self.class_ids.reshape(-1), batch)

    # Similarity (IoU × class cosine × objectness) of the unmasked image
    # under which a target box is taken to match no detection. A detector's
    # objectness keeps it above 0 for boxes far from everything (1e-16 on
    # the bundled detector), and a box in [0, 1] on a detector in pixels
    # still overlaps the proposals at the origin a little (3e-4 with one of
    # 8 × 8 pixels and objectness 0.5; a field test's soft detector gave
    # 1.4e-6, above the 1e-6 this was, and no warning).
    UNMATCHED = 1e-3

    def unmasked_warning(self, scores):
        """Warns when a target box matches no detection of the unmasked image
        (similarity below `UNMATCHED`): its map then shows where masking
        makes a matching detection appear, if anywhere, not what supports
        one, and is mostly noise around 0. Most often the box is outside the
        image or in other coordinates than the detector's (`box_format`,
        pixels against [0, 1])."""
        similarity = np.reshape(scores, (len(scores), -1))
        unmatched = np.argwhere(similarity < self.UNMATCHED)
        if unmatched.size == 0:
            return None
        image, target = (int(v) for v in unmatched[0])
        box = np.reshape(self.boxes, (-1, 4))[target].tolist()
        return (
            f"Target box {target} {box} ({self.box_format!r}, class "
            f"{int(self.class_ids.reshape(-1)[target])}) matches no detection of the "
            f"unmasked image {image} (similarity {similarity[image, target]:.2g}), so its "
            "map explains no detection and is mostly noise around 0 "
            f"({len(unmatched)} such box-image pair(s)). "
            "Check that the box is in the "
            "detector's coordinates (box_format; pixels or [0, 1]) and of a class it "
            "detects there."
        )

    def call(self, outputs, targets):
        target_boxes, target_classes = targets
        target_classes = tf.cast(target_classes, tf.int32)
        boxes, classes, objectness = self.proposals(outputs)
        iou = box_iou(target_boxes, boxes)  # (B, T, P)
        if classes.dtype.is_integer:
            # One-hot class vectors: the cosine is 1 for the same class, else 0.
            cosine = tf.cast(target_classes[:, :, None] == classes[:, None, :], tf.float32)
        else:
            one_hot = tf.one_hot(target_classes, tf.shape(classes)[-1])
            cosine = tf.einsum("btk,bpk->btp", one_hot, tf.math.l2_normalize(classes, -1))
        similarity = tf.reduce_max(iou * cosine * objectness[:, None, :], axis=-1)
        return similarity[:, 0] if self._single else similarity

    def trace_key(self):
        return (
            DetectionScore,
            self.box_format,
            self._whole_output or self.output,
            self.adapter,
            self._single,
            len(self.class_ids.reshape(-1)),
        )

    def get_config(self):
        adapter = self.adapter
        if adapter is not None:
            adapter = keras.saving.serialize_keras_object(adapter)
        return {
            "boxes": self.boxes.tolist(),
            "class_ids": self.class_ids.tolist(),
            "box_format": self.box_format,
            "output": None if self._whole_output else self.output,
            "adapter": adapter,
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # Keras empties what it deserializes
        if config.get("adapter") is not None:
            config["adapter"] = keras.saving.deserialize_keras_object(config["adapter"])
        return cls(**config)


class Detection(NamedTuple):
    """One detection: `box` `(x1, y1, x2, y2)`, `class_id` and `score`."""

    box: tuple
    class_id: int
    score: float


def detections(outputs, min_score=0.5, max_overlap=0.5, box_format="xyxy"):
    """The confident, non-overlapping detections in a detector's outputs.

    Reads the dict `DetectionScore` reads: a proposal's score is its
    objectness times its top class probability (`"class_probs"`), or its
    `"confidence"` (`"classes"`, padded with -1). Overlapping proposals of
    any class are suppressed (non-maximum suppression), keeping the best.
    Empty boxes (no width or height), which no map can explain, are left out.

    Args:
        outputs: the detector's output dict for a batch (tensors or arrays).
        min_score: float, the lowest score kept. Defaults to `0.5`.
        max_overlap: float, IoU above which the weaker of two proposals is
            dropped. Defaults to `0.5`.
        box_format: the format of `"boxes"`; detections are `"xyxy"`.

    Returns:
        A list per image of `Detection`s, best first: the targets to
        explain with `DetectionScore(detection.box, detection.class_id)`.

    Example:

    >>> detector = keras_rise.load_demo_detector()
    >>> found = keras_rise.scores.detections(detector(images))[0]
    >>> score = keras_rise.scores.DetectionScore(found[0].box, found[0].class_id)
    """
    min_score = _checks.finite_float("min_score", min_score)
    max_overlap = _checks.unit_interval("max_overlap", max_overlap)
    _checks.box_format(box_format, BOX_FORMATS)
    readable = holds_detections(outputs) and (
        "class_probs" in outputs or {"classes", "confidence"} <= set(outputs)
    )
    if not readable:
        kind = _outputs_kind(outputs)
        raise ValueError(
            '`outputs` must be a dict with "boxes" and "class_probs" (or "classes" and '
            f'"confidence"). Received {kind}.'
        )
    boxes = _to_xyxy(outputs["boxes"], box_format)
    if "class_probs" in outputs:
        probs = _float(outputs["class_probs"])
        classes = tf.argmax(probs, axis=-1, output_type=tf.int32)
        confidence = tf.reduce_max(probs, axis=-1)
        if "objectness" in outputs:
            confidence *= _float(outputs["objectness"])
    else:
        classes = tf.cast(outputs["classes"], tf.int32)
        confidence = _float(outputs["confidence"]) * tf.cast(classes >= 0, tf.float32)
    found = []
    for image_boxes, image_classes, image_scores in zip(
        boxes.numpy(), classes.numpy(), confidence.numpy()
    ):
        keep = tf.image.non_max_suppression(
            image_boxes,
            image_scores,
            max_output_size=len(image_boxes),
            iou_threshold=max_overlap,
            score_threshold=min_score,
        ).numpy()
        found.append(
            [
                Detection(
                    tuple(float(v) for v in image_boxes[i]),
                    int(image_classes[i]),
                    float(image_scores[i]),
                )
                for i in keep
                if image_boxes[i][2] > image_boxes[i][0] and image_boxes[i][3] > image_boxes[i][1]
            ]
        )
    return found


@keras.saving.register_keras_serializable(package="keras_rise")
class SimilarityScore(Score):
    """Embedding models: cosine similarity to a reference embedding.

    Args:
        reference: `None` (default) to compare each masked image with its
            own unmasked embedding (what in the image makes its embedding
            its own); a vector `(D,)`; or `T` vectors `(T, D)` for maps
            with a last axis of size `T` (e.g. a gallery of faces).
        output: see `Score`.

    Example:

    >>> score = keras_rise.scores.SimilarityScore(reference=query_embedding)
    >>> explainer.explain(gallery_image, targets=score)
    """

    def __init__(self, reference=None, output=None):
        super().__init__(output)
        if reference is not None:
            try:
                reference = np.asarray(reference, dtype=np.float32)
            except (TypeError, ValueError):
                raise TypeError(
                    "`reference` must be an embedding (D,) or several (T, D) of "
                    f"numbers. Received: reference={reference!r:.80}."
                ) from None
            if reference.ndim not in (1, 2) or reference.size == 0:
                raise ValueError(
                    "`reference` must be an embedding (D,) or several (T, D). "
                    f"Received shape {reference.shape}."
                )
            if not np.all(np.isfinite(reference)) or not np.all(
                np.linalg.norm(reference.reshape(-1, reference.shape[-1]), axis=1) > 0
            ):
                raise ValueError("`reference` must be finite and non-zero.")
        self.reference = reference

    def _embeddings(self, outputs):
        values = _float(self.select(outputs))
        if values.shape.rank != 2:
            raise ValueError(
                "SimilarityScore needs embeddings of shape (batch, dim); the "
                f"model's output is {_shape_text(values.shape)}."
            )
        if self.reference is not None and values.shape[1] != self.reference.shape[-1]:
            raise ValueError(
                f"`reference` has {self.reference.shape[-1]} dimensions but the "
                f"model's embeddings have {values.shape[1]}."
            )
        return tf.math.l2_normalize(values, axis=-1)

    def targets_of(self, outputs):
        """The unit reference(s) `(batch, D)` or `(batch, T, D)`; without a
        reference, each image's own unit embedding `(batch, D)`."""
        embeddings = self._embeddings(outputs)
        if self.reference is None:
            return embeddings
        reference = tf.math.l2_normalize(tf.constant(self.reference), axis=-1)
        return _tile(reference, tf.shape(embeddings)[0])

    def call(self, outputs, targets):
        embeddings = self._embeddings(outputs)
        if targets.shape.rank == 2:
            return tf.reduce_sum(embeddings * targets, axis=-1)
        return tf.einsum("bd,btd->bt", embeddings, targets)

    def trace_key(self):
        if self.reference is None:
            return None
        return (SimilarityScore, self.output, self.reference.shape)

    def get_config(self):
        reference = None if self.reference is None else self.reference.tolist()
        return {"reference": reference, **super().get_config()}


class ScoreFailed(ValueError):
    """A score function of the user's failed on the model's outputs; the
    message names the function and the outputs' shapes."""


@keras.saving.register_keras_serializable(package="keras_rise")
class CallableScore(Score):
    """A plain function `f(outputs) -> (batch,) or (batch, T)` as a score.

    Args:
        function: the callable. To save it (in a `RiseLayer`, a config),
            register it with `keras.saving.register_keras_serializable`.
    """

    def __init__(self, function):
        super().__init__()
        if not callable(function):
            raise TypeError(f"`function` must be callable. Received: {function!r}.")
        self.function = function

    def call(self, outputs, targets):
        del targets
        try:
            return self.function(outputs)
        except ScoreFailed:
            raise
        except Exception as error:  # the user's code, traced on our batches
            shapes = ", ".join(
                str(tuple(t.shape)) for t in tf.nest.flatten(outputs) if hasattr(t, "shape")
            )
            cause = _checks.error_summary(error).rstrip()
            if not cause.endswith((".", "!", "?")):
                cause += "."
            # Its rows are never the user's inputs one to one: the explainer
            # checks it on copies of one input, the loop on masked copies.
            raise ScoreFailed(
                f"The score {self!r} failed on the model's outputs of shape {shapes}: "
                f"{type(error).__name__}: {cause} A score function receives batches "
                "of outputs that are not one row per input (copies of an input to "
                "check it, then masked copies, many per input): to score each input "
                "with data of its own, explain one input per call."
            ) from error

    def get_config(self):
        return {"function": keras.saving.serialize_keras_object(self.function)}

    def __repr__(self):
        return getattr(self.function, "__name__", type(self.function).__name__)

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["function"]))


def default_score(outputs, class_score=None, output_score=None, model=None):
    """The score of a model's `outputs` when none is given: each image's top
    class (`ClassScore()`) for class scores `(batch, num_classes)`, the
    output itself (`OutputScore()`) for one value per image, `(batch,)` or,
    of a known model, a linear unit's `(batch, 1)`; for a binary
    classifier's one sigmoid unit (`is_sigmoid_unit(model)`) each image's
    predicted class of the two (`BinaryScore()`). A model trained with a
    regression loss whose `(batch, n)` output is not probabilities is
    refused (`refuse_values_as_classes`).

    Args:
        outputs: the model's outputs on a few inputs.
        class_score, output_score: the objects to return, for a caller that
            keeps one of each; new ones by default.
        model: the model, to tell a sigmoid unit from a linear one; `None`
            reads every one-unit output as one class.

    Example:

    >>> keras_rise.scores.default_score(tf.zeros((2,)))
    OutputScore(index=None, output=None)
    """
    if is_sigmoid_unit(model):
        return BINARY_SCORE
    class_score = ClassScore() if class_score is None else class_score
    try:
        selected = class_score.select(outputs)
    except ValueError:
        return class_score  # its own message follows where it is used
    shape = getattr(selected, "shape", None)
    if shape is not None and (
        shape.rank == 1 or (shape.rank == 2 and shape[1] == 1 and model is not None)
    ):
        # One value per input: a regressor's (a linear unit's, where a
        # sigmoid's is a binary classifier's, above), not one "class 0".
        return OutputScore() if output_score is None else output_score
    refuse_values_as_classes(model, selected)
    return class_score


# Keras' regression losses, by name and class name (lower case, no "_").
_REGRESSION_LOSSES = frozenset({
    "mse", "mae", "mape", "msle", "meansquarederror", "meanabsoluteerror",
    "meanabsolutepercentageerror", "meansquaredlogarithmicerror", "huber", "huberloss",
    "logcosh", "poisson",
})


def regression_loss(model):
    """The regression loss (mean squared error, Huber, ...) that `model` was
    trained with (`keras_rise.loading.training_loss`), or `None`."""
    from keras_rise import loading

    name = loading.training_loss(model)
    key = None if name is None else name.replace("_", "").lower()
    return name if key in _REGRESSION_LOSSES else None


def _ends_in_probabilities(model):
    """Whether a Keras model's one output is made by a softmax or a sigmoid
    (a `Dense` layer's activation, an `Activation` or a `Softmax` layer):
    class or label probabilities, whatever the loss they were trained with."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return False
    history = getattr(outputs[0], "_keras_history", None)
    layer = history[0] if history else None
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation in (keras.activations.softmax, keras.activations.sigmoid)


def refuse_values_as_classes(model, selected, remedy=None):
    """Refuses to read a `(batch, n)` output of values (a model trained with
    a regression loss, `regression_loss`, whose outputs are not
    probabilities) as class scores: the top "class" would be whichever value
    is largest.

    Args:
        model: the model, or `None` (nothing is known of its training).
        selected: its output on a few inputs, `(batch, n)`.
        remedy: str, what to do instead, ending the message; by default
            the scores to pass in Python.

    Raises:
        ValueError: for such an output.
    """
    shape = getattr(selected, "shape", None)
    if model is None or shape is None or len(shape) != 2 or not (shape[1] or 0) > 1:
        return
    loss = regression_loss(model)
    if loss is None or _ends_in_probabilities(model):
        return
    if tf.executing_eagerly() or not tf.is_symbolic_tensor(selected):
        rows = np.asarray(selected, np.float64)
        if rows.min() >= 0 and np.allclose(rows.sum(axis=-1), 1, atol=1e-3):
            return  # probabilities, whatever the loss
    remedy = remedy or (
        "pass keras_rise.scores.OutputScore(index=k) to explain value k (as `targets`, "
        'or `score` for RiseLayer and export_explainer), targets="all" for a map of '
        "each, or keras_rise.scores.ClassScore() if they are class scores after all"
    )
    raise ValueError(
        f"The model was trained with the regression loss {loss!r}: its (batch, "
        f"{shape[1]}) output holds values, not class scores, and the default target "
        f"(each input's top class) would explain whichever value is largest; {remedy}."
    )


def as_score(value, name="score", model=None):
    """`value` as a `Score`: a score is returned as it is, a callable wrapped.

    Given the `model`, a score's `output` that names one of a Keras model's
    list of outputs (`model.output_names`: its output layers' names) becomes
    that output's index, the list's outputs having no names themselves.

    Raises:
        TypeError: for anything else.
    """
    if isinstance(value, Score):
        return _output_by_index(value, model)
    if isinstance(value, type) and issubclass(value, Score):
        raise TypeError(
            f"`{name}` must be a score, e.g. {value.__name__}(...); it received the "
            "class itself."
        )
    if isinstance(value, dict) and "class_name" in value:
        return keras.saving.deserialize_keras_object(value)
    if callable(value):
        return CallableScore(value)
    raise TypeError(
        f"`{name}` must be a keras_rise.scores.Score or a callable mapping the "
        f"model's outputs to (batch,) or (batch, T) scores. Received: {value!r} "
        f"(of type {type(value).__name__})."
    )


def _output_by_index(score, model):
    """`score`, or a copy of it whose `output`, a name of one of the model's
    list of outputs, is that output's index."""
    try:  # a model never called has no output yet
        structure = model.output if isinstance(model, keras.Model) else None
    except (AttributeError, ValueError):
        structure = None
    if not isinstance(score.output, str) or not isinstance(structure, (list, tuple)):
        return score
    names = list(getattr(model, "output_names", None) or ())
    if len(names) != len(structure):
        return score
    if names.count(score.output) != 1:
        raise ValueError(
            f"`output={score.output!r}` is not an output of the model; its outputs "
            f"are {names} (or by index, output=0 to output={len(names) - 1})."
        )
    indexed = copy.copy(score)
    indexed.output = names.index(score.output)
    return indexed


def check_result(value, batch, score):
    """Checks what a score returned on `batch` unmasked inputs, eagerly.

    Returns:
        The number of targets `T`, or `None` for a `(batch,)` result.

    Raises:
        TypeError: when it is not a TensorFlow tensor (e.g. NumPy, which
            cannot run inside the compiled loop).
        ValueError: when its shape is not `(batch,)` or `(batch, T)`, or it
            is not finite.
    """
    name = getattr(score, "function", score)
    name = getattr(name, "__name__", type(name).__name__)
    if isinstance(value, np.ndarray) or not tf.is_tensor(value):
        raise TypeError(
            f"The score {name} must return a TensorFlow tensor (use tf or "
            "keras.ops, it runs inside the compiled loop); it returned "
            f"{type(value).__name__}."
        )
    shape = tuple(value.shape)
    if len(shape) not in (1, 2) or shape[0] != batch or (len(shape) == 2 and shape[1] == 0):
        raise ValueError(
            f"The score {name} must return one number per input, shape "
            "(batch,), or T per input, (batch, T); on the model's outputs for a "
            f"batch of {batch} inputs it returned shape {shape}."
        )
    if not value.dtype.is_floating and not value.dtype.is_integer:
        raise TypeError(f"The score {name} returned {value.dtype.name} values, not numbers.")
    if not bool(tf.reduce_all(tf.math.is_finite(tf.cast(value, tf.float32)))):
        raise ValueError(f"The score {name} returned NaN or inf on the unmasked inputs.")
    return None if len(shape) == 1 else shape[1]
