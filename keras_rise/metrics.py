"""How faithful is a saliency map? Deletion, insertion and the pointing game.

The causal metrics of the RISE paper (Petsiuk et al., 2018) change an image
a few pixels at a time, in order of decreasing saliency, and follow the
model's probability for the explained class:

- **deletion** removes the most salient pixels first (sets them to
  `fill_value`): a faithful map makes the probability fall fast, so a
  *lower* area under the curve is better;
- **insertion** starts from a blurred copy and puts the original pixels back,
  most salient first: a faithful map makes the probability rise fast, so a
  *higher* area is better.

The curves follow the score itself, so the areas are in its units: in
[0, 1] for probabilities, the output's own units for a regressor (then
compare maps of one model and input, e.g. against a random map, not
numbers across models).

Every point of every curve runs through one compiled loop over batches of
altered images; nothing calls `predict` per step.

The **pointing game** (Zhang et al., 2016) asks whether the map's maximum
falls on the object: within `tolerance` pixels of its box or mask.
"""

import collections
import contextlib
import contextvars
import math
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_rise import _checks
from keras_rise._tracing import instance_function
from keras_rise import inputs as inputs_lib
from keras_rise import scores as scores_lib
from keras_rise import text as text_lib
from keras_rise.config import default_batch_size
from keras_rise.inputs import ModelInputs


class CausalCurves(NamedTuple):
    """Deletion or insertion results; unpacks as `curves, auc, fractions`.

    Attributes:
        curves: float32 `(batch, steps + 1)`, the explained class's score
            after each step; column 0 is the unaltered start image.
        auc: float32 `(batch,)`, area under each curve against `fractions`
            (trapezoid rule), in the units of the score.
        fractions: float32 `(steps + 1,)`, fraction of the pixels changed at
            each point, from 0 to 1. For texts of several word counts,
            `(batch, steps + 1)`, one row per text, and curves and fractions
            are NaN past each text's last step.
    """

    curves: np.ndarray
    auc: np.ndarray
    fractions: np.ndarray

    def __repr__(self):
        # One line: the curves are hundreds of numbers per image.
        auc = np.asarray(self.auc, np.float64)
        shown = (
            f"{np.round(auc, 4).tolist()}" if auc.size <= 8
            else f"mean {np.nanmean(auc):.4f} over {auc.size}"
        )
        return (
            f"CausalCurves(curves of shape {np.shape(self.curves)}, auc {shown}, "
            f"fractions of shape {np.shape(self.fractions)})"
        )


class PointingResult(NamedTuple):
    """Pointing-game results; unpacks as `hits, rate`.

    Attributes:
        hits: bool `(batch,)`, whether each map's maximum hit its object
            (one bool for one map).
        rate: float, the fraction of hits.
    """

    hits: np.ndarray
    rate: float


def gaussian_blur(images, kernel_size=11, sigma=5.0, axes=None):
    """Blurs inputs channel by channel with a Gaussian kernel.

    The insertion metric's start image; the defaults are those of the RISE
    reference code. Borders are padded by mirroring the input. Any number
    of axes is blurred: images `(batch, height, width, channels)`, signals
    `(batch, length, channels)`, vectors `(batch, length)`, volumes
    `(batch, depth, height, width, channels)` — every axis but the batch
    and the channels.

    Args:
        images: float array `(batch, height, width, channels)`, or inputs of
            another rank as above.
        kernel_size: odd int, side of the kernel. Defaults to `11`.
        sigma: float > 0, standard deviation in pixels. Defaults to `5.0`.
        axes: the axes to blur, or `None` (default): every axis but the
            batch and the channels, as above. E.g. `[1]` blurs a series
            `(batch, steps, channels, 1)` masked per step and channel along
            its steps alone.

    Returns:
        float32 `tf.Tensor` of the inputs' shape.
    """
    kernel_size = _checks.integer("kernel_size", kernel_size, minimum=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd. Received: {kernel_size}.")
    if not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise ValueError(f"`sigma` must be a number > 0. Received: sigma={sigma!r}.")
    images = tf.convert_to_tensor(images, tf.float32)
    half = kernel_size // 2
    spatial = inputs_lib.layout(images)[0]
    if axes is not None:
        spatial = tuple(images.shape[axis] for axis in axes)
    if half > min(spatial):
        shape = "x".join(str(size) for size in spatial)
        raise ValueError(
            f"A blur of kernel size {kernel_size} needs inputs of at least "
            f"{half} positions per axis. Received inputs of {shape}."
        )
    offsets = np.arange(kernel_size) - half
    weights = np.exp(-(offsets**2) / (2.0 * float(sigma) ** 2))
    weights /= weights.sum()
    if axes is not None:
        return _separable_blur(images, axes, weights)
    if len(spatial) != 2 or images.shape.rank != 4:
        return _separable_blur(images, range(1, len(spatial) + 1), weights)
    channels = images.shape[-1]
    kernel = np.outer(weights, weights)[:, :, None, None]
    kernel = tf.constant(np.tile(kernel, (1, 1, channels, 1)), tf.float32)
    padded = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], "SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def _separable_blur(inputs, axes, weights):
    """The blur as one 1-D pass per axis of `axes`."""
    half = len(weights) // 2
    for axis in axes:
        size = inputs.shape[axis]
        padding = [[0, 0]] * inputs.shape.rank
        padding[axis] = [half, half]
        padded = tf.pad(inputs, padding, "SYMMETRIC")
        inputs = tf.add_n([
            float(weight) * tf.gather(padded, tf.range(offset, offset + size), axis=axis)
            for offset, weight in enumerate(weights)
        ])
    return inputs


class _CurveRunner:
    """One compiled loop that scores every point of every curve.

    Kept per model and batch size (see `_runner`), so repeated calls with the
    same shapes, e.g. from a callback at every epoch, do not retrace.
    """

    def __init__(self, model, batch_size, masked_axes=None, image_input=None):
        self.model = model
        self.inputs = ModelInputs(model, image_input=image_input, masked_axes=masked_axes)
        self.batch_size = batch_size
        # Counted apart: the runners of many models (a text's vocabulary is
        # one) would add up to the "retracing" warning under one `_scores`.
        self.scores = instance_function(self._scores)

    def _scores(self, start, end, ranks, score, targets, step, inputs=None):
        """Scores of `start` with its `k · step` top-ranked positions taken
        from `end`, for k = 0 .. steps.

        Args:
            start: `(B, *spatial[, C])`, the curve's first inputs (float, or
                int token ids).
            end: the same shape and dtype, the inputs at the curve's end.
            ranks: int32 `(B, positions)`, each position's place in
                saliency order.
            score: the `keras_rise.scores.Score` each curve follows.
            targets: its per-image targets, e.g. class ids int32 `(B,)`.
            step: Python int, positions changed per step.
            inputs: for a model of several inputs, all of them (a dict or
                list, `(B, ...)` each): the others are held fixed beside
                each curve's image. `None` for a model of one input.

        Returns:
            float32 `(B, steps + 1)`.
        """
        batch = start.shape[0]
        spatial, _ = inputs_lib.layout(start)
        positions = int(np.prod(spatial))
        channel = (1,) if start.shape.rank == len(spatial) + 2 else ()
        points = math.ceil(positions / step) + 1
        total = batch * points
        size = self.batch_size
        num_batches = math.ceil(total / size)

        def body(index, scores):
            # The last batch repeats the final point instead of shrinking.
            point = tf.minimum(index * size + tf.range(size), total - 1)
            image, k = point // points, point % points
            changed = tf.gather(ranks, image) < (k * step)[:, None]
            changed = tf.reshape(changed, [size, *spatial, *channel])
            altered = tf.where(changed, tf.gather(end, image), tf.gather(start, image))
            if inputs is not None:
                others = {
                    key: tf.gather(value, image)
                    for key, value in self.inputs.others(inputs).items()
                }
                altered = self.inputs.assemble(inputs, altered, others)
            outputs = self.inputs.call(altered)
            point_targets = tf.nest.map_structure(lambda t: tf.gather(t, image), targets)
            values = tf.cast(score(outputs, point_targets), tf.float32)
            return index + 1, scores.write(index, values)

        _, scores = tf.while_loop(
            lambda index, _: index < num_batches,
            body,
            (tf.constant(0), tf.TensorArray(tf.float32, size=num_batches)),
            parallel_iterations=1,
        )
        return tf.reshape(scores.concat()[:total], [batch, points])


# The curve runners of the models measured last, `{id(model): (model,
# {key: runner})}` in the order of use: a runner holds its model, so a cache
# keyed weakly by the model would keep every model alive; this one keeps
# the last `RECENT_MODELS` (as `RiseExplainer` keeps its recent loops).
_RUNNERS = collections.OrderedDict()
RECENT_MODELS = 4


def _runner(model, batch_size, masked_axes=None, image_input=None):
    """The cached `_CurveRunner` of a model, batch size, masked axes and
    image input (see `ModelInputs`), for the models measured last."""
    entry = _RUNNERS.get(id(model))
    if entry is None or entry[0] is not model:  # the entry holds its model: no id reuse
        entry = _RUNNERS[id(model)] = (model, {})
    _RUNNERS.move_to_end(id(model))
    while len(_RUNNERS) > RECENT_MODELS:
        _RUNNERS.popitem(last=False)
    key = (batch_size, masked_axes, image_input)
    runners = entry[1]
    if key not in runners:
        runners[key] = _CurveRunner(model, batch_size, masked_axes, image_input)
    return runners[key]


def _curve_inputs(model, images, saliency, image_input=None, binary_masks=None):
    """How a curve reads `images`: a `ModelInputs` of the model.

    A model that declares `(height, width)` inputs takes series of `height`
    steps unless the maps have both axes, `(batch, height, width)` for
    inputs `(batch, height, width)` (or one `(height, width)` map for one
    input): then the inputs are grayscale images without a channel axis, as
    an explainer with a two-entry `grid_size` reads them — or, with
    `binary_masks=(False, True)`, as series masked per step and channel.
    """
    if binary_masks is not None:
        binary_masks = _checks.binary_axes("binary_masks", binary_masks)
    series = ModelInputs(model, image_input=image_input, binary_masks=binary_masks)
    image = ModelInputs(
        model, image_input=image_input, masked_axes=2, binary_masks=binary_masks
    )
    if not image.adds_channel:
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the check below warns if series it is
        try:
            checked, single = series.check(images)
        except ValueError:
            return image
    checked = series.image(checked)
    spatial = inputs_lib.layout(checked)[0]
    expected = spatial if single else (len(checked), *spatial)
    return series if np.shape(saliency) == expected else image


def _saliency(value, images, single):
    """Checks maps against the inputs; returns float32 `(B, *spatial)`."""
    if tf.is_tensor(value):
        value = value.numpy()
    saliency = np.asarray(value, dtype=np.float32)
    spatial, _ = inputs_lib.layout(images)
    if single and saliency.ndim == len(spatial):
        saliency = saliency[None]
    expected = (len(images), *spatial)
    if saliency.shape != expected:
        raise ValueError(
            f"`saliency` must hold one {tuple(spatial)} map per input: expected "
            f"shape {expected if not single else expected[1:]}, received "
            f"{saliency.shape if not single else np.shape(value)}."
        )
    if not np.all(np.isfinite(saliency)):
        raise ValueError("`saliency` must be finite; it contains NaN or inf.")
    return saliency


def _at_indices(noun, indices, total):
    """`"inputs at index 0, 3 (of 8)"`: which of `total` a warning is about,
    the first ten of `indices`."""
    shown = ", ".join(str(index) for index in indices[:10])
    return (
        f"{noun}{'s' if len(indices) > 1 else ''} at index {shown}"
        f"{' …' if len(indices) > 10 else ''} (of {total})"
    )


def _warn_if_flat(maps, consequence, stacklevel):
    """Warns of constant maps (an array `(B, ...)`, or a list of them): they
    rank nothing, so a metric of them measures the order of ties, not an
    explanation."""
    constant = np.array([
        index for index, one in enumerate(maps)
        if np.size(one) > 1 and np.all(np.asarray(one) == np.asarray(one).flat[0])
    ], dtype=int)
    if constant.size:
        where = (
            "the map is" if len(maps) == 1
            else f"the {_at_indices('map', constant, len(maps))} "
            f"{'are' if constant.size > 1 else 'is'}"
        )
        warnings.warn(
            f"`saliency`: {where} constant, so {consequence} and the metric "
            "judges no explanation there (too few masks, or a model whose "
            "score no mask changes).",
            UserWarning,
            stacklevel=stacklevel,
        )


def _ranks(saliency):
    """Each pixel's position when sorted by decreasing saliency (ties: raster order)."""
    flat = saliency.reshape(len(saliency), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.astype(np.int32)


def _image_fill(name, value, images, axes=None):
    """A float or an array broadcastable to the inputs, as inputs of their
    dtype (token ids: a whole number, the id that removed tokens take); a
    blur or mean over `axes` (`keras_rise.inputs.fill_for`)."""
    if tf.is_tensor(value):
        value = value.numpy()
    fill = inputs_lib.fill_with_channel(
        _checks.fill_value(value, name, max_ndim=5), images.shape
    )
    if inputs_lib.layout(images)[1]:
        _checks.token_fill(fill, name)
    if isinstance(fill, str):  # "blur" or "mean": made from the images
        fill = inputs_lib.fill_for(fill, tf.convert_to_tensor(images), axes).numpy()
    _checks.fill_broadcasts(fill, images.shape, name)
    return np.broadcast_to(fill, images.shape).astype(images.dtype)


# The score of class targets, one object so that the compiled curves do not
# retrace from call to call.
_CLASS_SCORE = scores_lib.ClassScore()
_OUTPUT_SCORE = scores_lib.OutputScore()


def _curve_score(model_inputs, images, count, targets, model=None):
    """The score a curve follows and its per-image targets.

    `targets` is `None`, an int or one int per image (classes: the top one
    by default; a binary classifier's one sigmoid unit has two, as
    `RiseExplainer` reads it), or a `keras_rise.scores.Score` with one
    target; the map of a score is judged by that score.
    """
    if isinstance(targets, str):
        raise ValueError(
            "`targets` must be None, an int, a sequence of ints (one per image) or "
            "a keras_rise.scores.Score; a deletion or insertion curve follows one "
            f"class or one score. Received: {targets!r}."
        )
    outputs = model_inputs.probe(images)
    if isinstance(targets, scores_lib.Score) or callable(targets):
        score = scores_lib.as_score(targets, "targets", model)
        score_targets = score.targets_of(outputs)
    else:
        binary = scores_lib.is_sigmoid_unit(model)  # classes 0 (1 - p) and 1 (p)
        score = scores_lib.BINARY_SCORE if binary else _CLASS_SCORE
        selected = score.select(outputs)
        if selected.shape.rank == 1 and targets is None:
            score, score_targets = _OUTPUT_SCORE, ()
        else:
            score_targets = score.targets_of(outputs)
            num_classes = 2 if binary else int(selected.shape[-1])
            class_ids, _ = _checks.targets(targets, count, num_classes)
            if class_ids is not None:
                score_targets = tf.constant(class_ids)
    if scores_lib.check_result(score(outputs, score_targets), count, score):
        raise ValueError(
            f"A deletion or insertion curve follows one score per image; {score!r} "
            "gives several. Pick one target."
        )
    # Scores that differ only in their data (e.g. one box after another) share
    # one compiled loop: their data is in `score_targets`.
    return scores_lib.canonical(score), score_targets


def _causal_metric(
    model, images, saliency, targets, step, batch_size, end_of, image_input=None,
    warn_flat=True, fill_name="fill_value", binary_masks=None,
):
    """Shared body of `deletion` and `insertion`.

    `end_of(images, axes)` gives the substrate: deletion ends on it,
    insertion starts from it; a blur or mean runs over `axes`
    (`ModelInputs.fill_axes`). With `image_input`, `images` are all the inputs of a
    model of several, the image among them. `fill_name`: the argument that
    gave the substrate, for messages.
    """
    model_inputs = _curve_inputs(model, images, saliency, image_input, binary_masks)
    inputs, single = model_inputs.check(images)
    where = model_inputs.locate(inputs)
    if where is None:  # one input: the image alone
        images, inputs = inputs, None
    else:
        images = np.asarray(inputs[where])
    spatial, tokens = inputs_lib.layout(images)
    if binary_masks is not None:  # one bool per masked axis, as the explainer takes it
        model_inputs.binary_masks(binary_masks, spatial, tokens)
    if not tokens:
        images = images.astype(np.float32)
    saliency = _saliency(saliency, images, single)
    pixels = int(np.prod(spatial))
    step = (
        math.ceil(pixels / 224)
        if step is None
        else _checks.integer("step", step, minimum=1)
    )
    if batch_size is None:
        batch_size = default_batch_size(spatial)
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    score, score_targets = _curve_score(
        model_inputs, images if inputs is None else inputs, len(images), targets, model
    )
    start, end = end_of(images, model_inputs.fill_axes())
    if tokens:
        _check_token_substrate(
            model_inputs, images if inputs is None else inputs, start, end, fill_name
        )
    if warn_flat:
        _warn_if_flat(saliency, "pixels are taken in raster order", stacklevel=4)
    masked_axes = 2 if model_inputs.adds_channel else None
    runner = _runner(model, batch_size, masked_axes, image_input)
    curves = runner.inputs.run(
        runner.scores,
        tf.constant(start),
        tf.constant(end),
        tf.constant(_ranks(saliency)),
        score,
        score_targets,
        step,
        None if inputs is None else tf.nest.map_structure(tf.constant, inputs),
    )
    curves = curves.numpy()
    counts = np.minimum(np.arange(curves.shape[1]) * step, pixels)
    fractions = (counts / pixels).astype(np.float32)
    widths = np.diff(fractions)
    auc = (0.5 * (curves[:, 1:] + curves[:, :-1]) * widths).sum(axis=1)
    result = CausalCurves(curves, auc.astype(np.float32), fractions)
    if single:
        result = CausalCurves(result.curves[0], result.auc[0], fractions)
    return result


def _check_token_substrate(model_inputs, inputs, start, end, name):
    """Runs the model once on the first sequence at each end of the curve
    (`inputs`: all the model's inputs, or the sequences alone), so that an
    id it cannot take (outside an embedding's vocabulary) fails here, naming
    `name`, not as a graph error inside the curves' loop."""
    for ids in (start[:1], end[:1]):
        try:
            model_inputs.probe_first_with(inputs, ids)
        except ValueError as error:
            shown = np.unique(ids)[:5].tolist()
            raise ValueError(
                f"`{name}`: the model cannot take the sequence it makes (ids {shown}): "
                f"{error}"
            ) from None


def deletion(
    model,
    images,
    saliency,
    targets=None,
    step=None,
    fill_value=0.0,
    batch_size=None,
    image_input=None,
    binary_masks=None,
):
    """The deletion curve: remove the most salient pixels first.

    Lower area under the curve is better: a faithful map points at the pixels
    whose removal destroys the prediction soonest. Where the input with every
    pixel removed still scores within 5% of the input, the curve is flat and
    tells maps apart by nothing: a warning says so.

    Args:
        model: a `keras.Model` (or callable) mapping images to outputs
            that `targets` reads: class probabilities `(batch,
            num_classes)` by default, or any output a score takes.
        images: array `(batch, height, width, channels)` or one image; or
            inputs of another rank the explainer takes (signals, token ids,
            volumes): positions are then time steps, tokens or voxels. For a
            model of strings, texts: positions are words
            (`keras_rise.text.words`), dropped or added back (texts of
            several word counts take maps as `explain` gives them, NaN past
            a text's end; see `CausalCurves`).
        saliency: maps `(batch, height, width)`, or one `(height, width)`
            (other inputs: one value per masked position).
        targets: what each curve follows: `None` (default) for each
            image's top predicted class (or a scalar output itself), an int,
            one int per image (or one-hot vectors, floats `(B, classes)`),
            or a `keras_rise.scores.Score` with one target (judge a map by
            the score it explains).
        step: int, pixels removed per step. Defaults to
            `ceil(height · width / 224)`, the paper's 224 pixels per step at
            224×224, so every image gets about 224 steps.
        fill_value: what removed pixels become, as the explainer's
            `fill_value`: a float or an array broadcastable to the images;
            `"mean"`, each image's own mean colour; or `"blur"`, a blurred
            copy of each image. For texts, a word that replaces each removed
            word (e.g. `"[UNK]"`; they are dropped by default). Defaults to
            `0.0`.
        batch_size: int, altered images per forward pass, or `None`
            (default): 100, fewer for large images (as for the explainer).
        image_input: for a model of several inputs, which one the curve
            alters, as `RiseExplainer` takes it; `images` are then all the
            inputs (a dict or list), the others held fixed. Defaults to
            `None`.
        binary_masks: the explainer's `binary_masks`, for a map of one
            value per step and channel of a series (`(False, True)`): its
            fill or blur then runs along each channel's steps, as the
            explainer's do. `None` (default) reads a map of both axes of
            `(steps, channels)` inputs as a grayscale image's.

    Returns:
        `CausalCurves(curves, auc, fractions)`; `curves` is
        `(batch, steps + 1)` and `auc` is `(batch,)` (no batch axis for one
        image).

    Example:

    >>> maps = keras_rise.RiseExplainer(model, num_masks=1000).explain(images)
    >>> curves, auc, fractions = keras_rise.metrics.deletion(model, images, maps)
    """

    if image_input is None and _explains_texts(model, images):  # words dropped, or filled
        fill = text_lib.masked_word(fill_value, "fill_value", 0.0)
        return _text_curves(
            model, images, saliency, targets, step, batch_size, fill,
            lambda ids, axes: (ids, 0 * ids),
        )

    model_inputs = inputs_lib.ModelInputs(model, image_input=image_input)
    model_inputs.check_table_fill(fill_value)

    def end_of(images, axes):
        return images, _image_fill("fill_value", fill_value, images, axes)

    result = _causal_metric(
        model, images, saliency, targets, step, batch_size, end_of, image_input,
        binary_masks=binary_masks,
    )
    curves = np.atleast_2d(result.curves)
    _warn_if_flat_curve(
        "deletion", curves[:, -1], curves[:, 0], np.ndim(result.curves) == 1,
        "removing every position (filled with "
        + ("a blurred copy" if isinstance(fill_value, str) and fill_value == "blur"
           else "each image's mean" if isinstance(fill_value, str) else "`fill_value`")
        + ") leaves the score",
        _other_start("fill_value", fill_value, model_inputs, images),
    )
    return result


def _other_start(name, value, model_inputs, images):
    """What a flat curve's warning suggests instead of `value`, the
    `fill_value` or `substrate` given: one that the inputs take (another
    token id, another row of a table's features, another fill)."""
    if model_inputs.takes_tokens(images):
        return f"another {name}, a token id that the model reads as absent"
    if model_inputs.reads_features():
        return f"another {name}, a baseline row, e.g. the training rows' mean"
    if isinstance(value, str) or np.any(np.asarray(value) != 0):
        return f"another {name}, e.g. {name}=0.0"
    return f"another {name}, e.g. {name}={'mean' if name == 'fill_value' else 'blur'!r}"


# The metrics whose flat curves were told, where a caller asked for each
# once (`flat_curves_told_once`); `None`: every flat curve is told.
_TOLD_FLAT = contextvars.ContextVar("keras_rise_told_flat", default=None)


@contextlib.contextmanager
def flat_curves_told_once(told):
    """Within this context, a flat curve's warning (see `deletion` and
    `insertion`) is given once per metric: `told`, a set, collects the
    names of the metrics told, and is kept by the caller across contexts
    (`DeletionInsertionCallback` keeps one for all its epochs).

    Example:

    >>> told = set()
    >>> with keras_rise.metrics.flat_curves_told_once(told):
    ...     keras_rise.metrics.insertion(model, images, maps)
    """
    token = _TOLD_FLAT.set(told)
    try:
        yield told
    finally:
        _TOLD_FLAT.reset(token)


def _warn_if_flat_curve(name, altered, original, single, what, other):
    """Warns where the wholly altered input (`altered`, its scores) scores
    within 5% of the input itself (`original`; of the larger magnitude), so
    that the curve is flat and its AUC cannot tell maps apart: a substrate or
    fill that the model scores as it scores the input (field test: a blur of
    sigma 5 samples on 43 844 samples of audio)."""
    scale = np.maximum(np.abs(altered), np.abs(original))
    flat = np.flatnonzero(np.abs(original - altered) <= 0.05 * scale)
    told = _TOLD_FLAT.get()
    if not flat.size or (told is not None and name in told):
        return
    if told is not None:
        told.add(name)
    where = (
        "" if single
        else f"on the {_at_indices('input', flat, len(altered))} "
    )
    shown = flat[0]
    warnings.warn(
        f"{name}: {where}{what} within 5% of the input's ({altered[shown]:.4g} against "
        f"{original[shown]:.4g}), so the curve is flat and its AUC does not tell maps "
        f"apart; use {other}.",
        UserWarning,
        stacklevel=3,
    )


def insertion(
    model,
    images,
    saliency,
    targets=None,
    step=None,
    substrate=None,
    batch_size=None,
    image_input=None,
    binary_masks=None,
):
    """The insertion curve: put the most salient pixels back first.

    Starts from `substrate` (by default a blurred copy of the image) and
    restores the original pixels in order of decreasing saliency. Higher area
    under the curve is better. Where the start scores higher than the input
    itself (a segmenter's region may, on a blur), the curve falls and a
    warning says so: start from another substrate; where it scores within
    5% of the input (the blur of a few samples that a long signal hardly
    changes), the curve is flat, and a warning says so too.

    Args:
        model: a `keras.Model` (or callable) mapping images to outputs
            that `targets` reads: class probabilities `(batch,
            num_classes)` by default, or any output a score takes.
        images: array `(batch, height, width, channels)` or one image; or
            inputs of another rank the explainer takes (signals, token ids,
            volumes): positions are then time steps, tokens or voxels. For a
            model of strings, texts: positions are words
            (`keras_rise.text.words`), dropped or added back (texts of
            several word counts take maps as `explain` gives them, NaN past
            a text's end; see `CausalCurves`).
        saliency: maps `(batch, height, width)`, or one `(height, width)`
            (other inputs: one value per masked position).
        targets: what each curve follows: `None` (default) for each
            image's top predicted class (or a scalar output itself), an int,
            one int per image (or one-hot vectors, floats `(B, classes)`),
            or a `keras_rise.scores.Score` with one target (judge a map by
            the score it explains).
        step: int, pixels inserted per step. Defaults to
            `ceil(height · width / 224)`.
        substrate: `None` (default) for `"blur"` (`gaussian_blur` with
            kernel 11 and sigma 5, as in the RISE reference code), `"mean"`
            (each input's mean colour, as the explainer's fill), or a
            float or array broadcastable to the images to start from; for
            texts, a word in every place to start from (by default, no
            words at all); token ids need the id to start from (e.g. 0, a
            pad token). A table's features (`ModelInputs.reads_features`)
            start from a row: by default the training rows' mean that the
            model's own `Normalization` layer holds
            (`ModelInputs.baseline_row`), else one given, e.g.
            `x_train.mean(axis=0)`; a blur across columns is refused.
        batch_size: int, altered images per forward pass, or `None`
            (default): 100, fewer for large images (as for the explainer).
        image_input: for a model of several inputs, which one the curve
            alters (see `deletion`). Defaults to `None`.
        binary_masks: see `deletion`. Defaults to `None`.

    Returns:
        `CausalCurves(curves, auc, fractions)` as for `deletion`.

    Example:

    >>> curves, auc, _ = keras_rise.metrics.insertion(model, images, maps)
    """
    if image_input is None and _explains_texts(model, images):  # from none, or fill words
        fill = text_lib.masked_word(
            "blur" if substrate is None else substrate, "substrate", "blur"
        )
        return _text_curves(
            model, images, saliency, targets, step, batch_size, fill,
            lambda ids, axes: (0 * ids, ids),
        )
    if isinstance(substrate, str) and substrate not in inputs_lib.FILL_MODES:
        raise ValueError(
            '`substrate` must be "blur", "mean", a float or an array broadcastable to '
            f"the images. Received: substrate={substrate!r}."
        )

    model_inputs = inputs_lib.ModelInputs(model, image_input=image_input)
    features = model_inputs.reads_features()
    given = substrate
    if substrate is None:
        substrate = model_inputs.baseline_row() if features else "blur"
        if substrate is None:
            raise ValueError(
                "metrics.insertion: `substrate` is needed for a table's features "
                "(the model has no Normalization layer whose mean would be the "
                "default): pass the row the curve starts from, e.g. the training "
                "rows' mean, substrate=x_train.mean(axis=0). Received: substrate=None."
            )
    model_inputs.check_table_fill(substrate, "substrate")

    def end_of(images, axes):
        if isinstance(substrate, str):
            if inputs_lib.layout(images)[1]:
                raise ValueError(
                    "metrics.insertion: for token ids pass `substrate`, the id the "
                    "curve starts from, e.g. substrate=0 (a pad token); a blur or mean is for "
                    f"real-valued inputs. Received: substrate={given!r}."
                )
        if isinstance(substrate, str) and substrate == "blur":
            blurred = gaussian_blur(images, axes=axes).numpy()
        else:  # a value, an array or each input's mean
            blurred = _image_fill("substrate", substrate, images, axes)
        return blurred, images

    result = _causal_metric(
        model, images, saliency, targets, step, batch_size, end_of, image_input,
        fill_name="substrate", binary_masks=binary_masks,
    )
    curves = np.atleast_2d(result.curves)
    start, end = curves[:, 0], curves[:, -1]
    what = {"blur": "the blurred copy", "mean": "the mean"}.get(
        substrate if isinstance(substrate, str) else None, "the substrate"
    )
    # Another substrate than the one given: black unless it was black; for a
    # table's features, another row; for token ids, another id.
    other = (
        "another row" if features and given is None
        else _other_start("substrate", substrate, model_inputs, images)
    )
    falls = np.flatnonzero(start > end + 1e-4 * np.maximum(1.0, np.abs(end)))  # beyond rounding
    if falls.size:
        where = (
            "" if np.ndim(result.curves) == 1
            else f"on the {_at_indices('input', falls, len(curves))} "
        )
        warnings.warn(
            f"insertion: {where}the curve's start ({what}) scores higher than "
            "the input itself, so the curve falls and its AUC does not tell maps "
            f"apart there (a reversed map can score higher); start from {other}.",
            UserWarning,
            stacklevel=2,
        )
    else:
        _warn_if_flat_curve(
            "insertion", start, end, np.ndim(result.curves) == 1,
            f"the curve's start ({what}) scores", other,
        )
    return result


def _explains_texts(model, images):
    """Whether the curves run over words: texts for a model of strings."""
    return text_lib.is_text(images) and text_lib.takes_text(model)


def _text_curves(model, texts, saliency, targets, step, batch_size, fill, end_of):
    """`_causal_metric` over the words of texts (`keras_rise.text.words`).

    Words are token ids into the texts' vocabulary, id 0 the `fill` word
    (`""`: removed words are dropped). Texts of one word count share their
    steps; texts of several counts are run a count at a time, and their
    curves and fractions are NaN past each text's last step.
    """
    texts, single = text_lib.as_texts(texts)
    text_shape = text_lib.text_shape(model)
    groups = text_lib.word_count_groups(texts)
    if single or len(groups) == 1:
        vocabulary, ids = text_lib.word_ids(texts, fill)
        words = text_lib.VocabularyModel(model, vocabulary, text_shape)
        result = _causal_metric(
            words, ids[0] if single else ids, saliency, targets, step, batch_size, end_of,
            warn_flat=False,
        )
        maps = np.asarray(saliency, np.float32)
        _warn_if_flat(maps[None] if single else maps, "words are taken in order",
                      stacklevel=4)
        return result
    longest = max(count for count, _ in groups)
    maps = np.asarray(saliency, np.float32)
    if maps.shape != (len(texts), longest):
        raise ValueError(
            f"`saliency` must hold one map per text, one value per word: "
            f"({len(texts)}, {longest}) for these texts of up to {longest} words, as "
            f"RiseExplainer.explain gives them. Received shape {maps.shape}."
        )
    counts = {row: count for count, rows in groups for row in rows}
    _warn_if_flat([maps[row, :counts[row]] for row in range(len(texts))],
                  "words are taken in order", stacklevel=4)
    results = []
    for count, rows in groups:
        vocabulary, ids = text_lib.word_ids([texts[i] for i in rows], fill)
        words = text_lib.VocabularyModel(model, vocabulary, text_shape)
        group_targets = text_lib.targets_of_rows(targets, rows, len(texts))
        results.append(
            (rows, _causal_metric(
                words, ids, maps[rows, :count], group_targets, step, batch_size, end_of,
                warn_flat=False,
            ))
        )
    columns = max(result.curves.shape[1] for _, result in results)
    curves = np.full((len(texts), columns), np.nan, np.float32)
    fractions = np.full((len(texts), columns), np.nan, np.float32)
    auc = np.zeros(len(texts), np.float32)
    for rows, result in results:
        width = result.curves.shape[1]
        curves[rows, :width] = result.curves
        fractions[rows, :width] = result.fractions
        auc[rows] = result.auc
    return CausalCurves(curves, auc, fractions)


def _boxes_or_masks(ground_truth, shape, single):
    """Returns a bool mask `(B, *spatial)` of each map's object."""
    if tf.is_tensor(ground_truth):
        ground_truth = ground_truth.numpy()
    truth = np.asarray(ground_truth)
    rank = len(shape) - 1
    # A box as `scores.RegionScore` writes regions, as the list it is here.
    names = "[" + scores_lib.RegionScore._BOXES[rank].strip("()") + "]"
    if truth.dtype.kind not in "biuf":
        raise TypeError(
            f"`ground_truth` must be boxes {names} of numbers or "
            f"boolean masks. Received an array of {truth.dtype}: {ground_truth!r}."
        )
    batch, spatial = shape[0], tuple(shape[1:])
    if single:
        truth = truth[None]
    if truth.ndim == 2 and truth.shape == (batch, 2 * rank) and truth.shape != tuple(shape):
        if not np.issubdtype(truth.dtype, np.integer):
            if not np.all(np.isfinite(truth)) or np.any(truth != np.round(truth)):
                raise ValueError(
                    "Boxes in `ground_truth` must hold whole pixel coordinates "
                    f"{names}. Received: {ground_truth!r}."
                )
            truth = truth.astype(np.int64)
        masks = np.zeros(shape, dtype=bool)
        for index, box in enumerate(truth):
            starts, stops = box[:rank], box[rank:]
            if not all(0 <= a < b <= n for a, b, n in zip(starts, stops, spatial)):
                size = "x".join(str(n) for n in spatial)
                raise ValueError(
                    f"Box {index} of `ground_truth`, {names} = "
                    f"{[int(v) for v in box]}, is empty or outside the {size} map "
                    "(the stops are exclusive)."
                )
            masks[(index, *(slice(a, b) for a, b in zip(starts, stops)))] = True
        return masks
    if truth.shape != tuple(shape):
        expected = (
            f"({2 * rank},) or {spatial}" if single else f"({batch}, {2 * rank}) or {shape}"
        )
        hint = ""
        if rank == 2 and single and np.shape(ground_truth) == (spatial[0], 2):
            hint = (
                f" If the maps are {spatial[0]} maps of {spatial[1]} steps (signals, "
                "token ids), pass spatial_rank=1."
            )
        raise ValueError(
            f"`ground_truth` must be boxes {names} or masks the "
            f"size of the maps: expected shape {expected}, received "
            f"{np.shape(ground_truth)}.{hint}"
        )
    if truth.dtype != bool and not np.all(np.isin(truth, (0, 1))):
        raise ValueError("`ground_truth` masks must be boolean or hold only 0 and 1.")
    masks = truth.astype(bool)
    empty = np.flatnonzero(~masks.reshape(batch, -1).any(axis=1))
    if empty.size:
        raise ValueError(f"`ground_truth` mask {int(empty[0])} is empty.")
    return masks


def pointing_game(saliency, ground_truth, tolerance=15, spatial_rank=2):
    """Whether each map's maximum lies on (or near) its object.

    A hit when the map's most salient pixel is at most `tolerance` pixels
    (Euclidean distance) from a pixel of the object, as in Zhang et al.
    (2016), which the RISE paper follows with a 15-pixel tolerance. With
    several equal maxima the first in raster order counts.

    Args:
        saliency: maps `(batch, height, width)`, or one `(height, width)`;
            for other inputs `(batch, *spatial)` or one `spatial` map, with
            `spatial_rank` axes (`(batch, steps)` for signals and tokens).
        ground_truth: the objects, as boxes `(batch, 4)` in pixels
            `[top, left, bottom, right]` (bottom and right exclusive), or as
            boolean masks `(batch, height, width)`; `(4,)` or `(height,
            width)` for one map. Other ranks take boxes of all starts then
            all (exclusive) stops, as `scores.RegionScore`: `[start, stop]`
            for sequences, `[front, top, left, back, bottom, right]` for
            volumes, or masks the size of the maps.
        tolerance: float >= 0, in pixels (positions). Defaults to `15`,
            the paper's at 224×224; it does not scale with the maps, so
            scale it for smaller ones (e.g. `15 * 32 / 224`, about 2, at
            32×32, where 15 pixels reach most of the image: a random map
            hit about half of 6×6 objects there).
        spatial_rank: int, the number of axes of one map: `2` (default)
            for images, `1` for signals and token sequences, `3` for
            volumes. It tells a batch of maps from one map of more axes.
            A series' map per step and channel (`binary_masks=(False,
            True)`) has 2, with boxes `[first step, first channel, stop,
            channel stop]`; as the tolerance counts channels as positions,
            pass `tolerance=0` to ask for the right channel.

    Returns:
        `PointingResult(hits, rate)`.

    Example:

    >>> hits, rate = keras_rise.metrics.pointing_game(maps, [[8, 8, 30, 30]])
    >>> hits, rate = keras_rise.metrics.pointing_game(signal_maps, [[40, 56]], spatial_rank=1)
    """
    if isinstance(spatial_rank, bool) or spatial_rank not in (1, 2, 3):
        raise ValueError(
            "`spatial_rank` must be 1 (sequences), 2 (images) or 3 (volumes). "
            f"Received: spatial_rank={spatial_rank!r}."
        )
    if tf.is_tensor(saliency):
        saliency = saliency.numpy()
    maps = np.asarray(saliency, dtype=np.float32)
    if maps.ndim not in (spatial_rank, spatial_rank + 1) or 0 in maps.shape:
        axes = ", ".join(scores_lib.RegionScore._AXES[spatial_rank])
        one = f"({axes},)" if spatial_rank == 1 else f"({axes})"
        raise ValueError(
            f"`saliency` must be one map {one} or a batch (batch, {axes}) "
            f"for spatial_rank={spatial_rank}. Received shape {maps.shape}."
        )
    if not np.all(np.isfinite(maps)):
        raise ValueError("`saliency` must be finite; it contains NaN or inf.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise TypeError(f"`tolerance` must be a number. Received: {tolerance!r}.")
    if not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0. Received: tolerance={tolerance}.")
    single = maps.ndim == spatial_rank
    if single:
        maps = maps[None]
    objects = _boxes_or_masks(ground_truth, maps.shape, single)
    _warn_if_flat(maps, "its peak is its first pixel", stacklevel=3)

    batch = maps.shape[0]
    peaks = np.unravel_index(maps.reshape(batch, -1).argmax(axis=1), maps.shape[1:])
    hits = np.zeros(batch, dtype=bool)
    for index in range(batch):
        positions = np.stack(np.nonzero(objects[index]), axis=1)
        peak = np.array([axis[index] for axis in peaks])
        distance = np.sqrt(np.sum((positions - peak) ** 2, axis=1))
        hits[index] = distance.min() <= tolerance
    if single:
        return PointingResult(bool(hits[0]), float(hits[0]))
    return PointingResult(hits, float(hits.mean()))
