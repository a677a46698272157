"""The RISE loop: masks → masked batch → model → score → sums → map.

`RiseEngine` is the one implementation of RISE in keras_rise; every front end
(explainer, layer, export, callbacks, CLI, Beam) calls it rather than repeat
it. Its methods are plain TensorFlow code meant to run inside a
`tf.function`: the loop over mask batches is a `tf.while_loop` in the graph,
every step makes its masks on the device from the seed, and only running
sums of size `(images · targets, height · width)` are carried from step to
step. Without a tolerance nothing in the loop reads a value back from the
device: its counter, unit schedule and the estimator's refit decisions are
int32 host ops (`_UnitSchedule`), so on a GPU the host queues step after
step; with `jit_compile=True` a step's masks and forward pass are an XLA
program that needs nothing from the steps before, so several are launched
ahead, and only the estimator's sums chain. The loop is only a loop: what
is explained is a `keras_rise.scores` score, which input is masked is
`keras_rise.inputs`' business, and how sums become a map is the estimator's
(`keras_rise.estimators`).

The sums over a range of mask indices can be added together
(`keras_rise.estimators.merge`), so a map can be split across steps,
replicas or workers by mask index and merged exactly.
"""

import dataclasses
import functools
import warnings
from typing import NamedTuple

import tensorflow as tf

from keras_rise import estimators as estimators_lib
from keras_rise._checks import outside_stacklevel
from keras_rise._tracing import instance_function
from keras_rise import masks as masks_lib
from keras_rise import precision
from keras_rise import inputs as inputs_lib
from keras_rise.inputs import ModelInputs


class RiseResult(NamedTuple):
    """What `RiseEngine.explain` returns.

    Attributes:
        saliency: float32 `(B, H, W)` for a score with one target, or
            `(B, H, W, T)` for `T` targets (e.g. every class).
        targets: the score's per-image targets (`Score.targets_of`): for a
            `ClassScore`, int32 `(B,)`, the class explained (the top class
            for every-class maps); `()` for a score that needs none.
        scores: float32 `(B,)` or `(B, T)`, the score of the unmasked input.
        stderr: float32, the saliency's shape: each pixel's estimated
            standard error (NaN with fewer than 2 units of masks: see
            `keras_rise.estimators`).
        num_masks: int32 `(B,)`, masks used per image (fewer than
            `num_masks` when a tolerance stopped the loop early).
    """

    saliency: tf.Tensor
    targets: tf.Tensor
    scores: tf.Tensor
    stderr: tf.Tensor
    num_masks: tf.Tensor

    @property
    def class_ids(self):
        """`targets`, by the name they have for a classifier's class scores."""
        return self.targets


class ReplicaSlice(NamedTuple):
    """Which share of the mask stream a replica sums, and how to add them up.

    Attributes:
        replica_id: int or scalar int tensor, this replica's index.
        num_replicas: static int, replicas in sync.
        all_reduce: function mapping this replica's sums (any structure of
            tensors) to the sums over all replicas.
    """

    replica_id: tf.Tensor
    num_replicas: int
    all_reduce: object


def _float_outputs(outputs):
    """The model's floating outputs in float32 (e.g. under mixed precision)."""
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs
    )


def _report(progress, sums):
    """Calls `progress` with the masks in `sums` once they are summed."""
    if progress is not None:
        with tf.control_dependencies(tf.nest.flatten(sums)):
            progress(sums.count)


def _repeat(structure, times):
    """Every tensor of a structure repeated `times` along its batch, mask-major."""
    return tf.nest.map_structure(
        lambda x: tf.tile(x, [times] + [1] * (x.shape.rank - 1)), structure
    )


def _valid(start, size, limit):
    """float32 `(size,)`: 1 for masks `start ..` whose index is below
    `limit`, 0 past it; `None` without a limit."""
    if limit is None:
        return None
    indices = start + tf.range(size, dtype=tf.int64)
    return tf.cast(indices < limit, tf.float32)


def _widen_int32(structure):
    """`structure` with its int32 tensors as int64 (see `RiseEngine.sums`)."""
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.int64) if x.dtype == tf.int32 else x, structure
    )


class _UnitSchedule:
    """Where the loop's units start, from the step number alone.

    A unit ends at every multiple of the unit length in the mask stream
    (`RiseEngine.step_layout`). The loop counts its steps in int32 and asks
    these questions on the CPU: TensorFlow keeps int32 scalars in host
    memory, so a branch or loop condition on them never waits for a GPU
    (one on a tensor the device made reads it back, after every op queued
    before it).

    Where the first index and the step are Python ints (a call's own
    range, and the tail after the loop), the answers are Python values, so
    that no branch is traced for a question answered before the graph runs.

    Args:
        start: int, or int64 scalar tensor: the first mask's index.
        per_step: static int, masks per step.
        unit: static int, masks per unit.
    """

    def __init__(self, start, per_step, unit):
        self.per_step, self.unit = per_step, unit
        if isinstance(start, int):
            self._phase = start % unit
        else:
            with tf.device("/CPU:0"):
                # Masks of the unit in progress before the first step.
                self._phase = tf.cast(start % unit, tf.int32)

    def _offset(self, step):
        return self._phase + step * self.per_step

    def _static(self, step):
        return isinstance(step, int) and isinstance(self._phase, int)

    def starts_unit(self, step):
        """Whether a unit starts with step `step` (an int, or an int32 scalar
        tensor)."""
        if self._static(step):
            return self._offset(step) % self.unit == 0
        with tf.device("/CPU:0"):
            return tf.equal(self._offset(step) % self.unit, 0)

    def units_before(self, step):
        """Units closed before step `step`, as int32 (an int for an int
        step and start)."""
        with tf.device("/CPU:0"):
            return self._offset(step) // self.unit


class MaskParts:
    """A mask family, its estimator and their compiled functions, for the
    mask options of a config and inputs of one layout.

    They depend on neither the model nor the number of masks, so engines of
    equal mask options share one (`for_config`), and with it the functions
    it has traced: the masks' maker, the estimator's bookkeeping (a step's
    sums, closing a unit, the empty sums, refitting its state, the maps and
    their errors) and the regression's fit. Each is traced once per shape
    and called as a function from the loops, so a new model's explainer
    traces little more than the model and the loop itself (a small CNN's,
    100 masks: 375 new ops, against 1016 with the bookkeeping traced into
    every loop).

    Args:
        config: a `keras_rise.RiseConfig`; only its mask and estimator
            options are read.
        layout: `(spatial_shape, tokens)` (see `keras_rise.inputs.layout`).
    """

    # Options that shape neither the masks nor the estimator: a shared
    # part is keyed on the config with them set to these.
    _OTHER_OPTIONS = dict(
        num_masks=1, batch_size=None, fill_value=0.0, jit_compile=False, dtype_policy=None
    )

    def __init__(self, config, layout):
        spatial, tokens = layout
        self.family = masks_lib.GridMasks.for_config(
            config, spatial, binary=tokens or config.binary_masks
        )
        self.estimator = estimators_lib.for_config(config, self.family)
        self._functions = {}

    @classmethod
    def for_config(cls, config, layout):
        """The shared `MaskParts` of `config`'s mask options and `layout`."""
        return _shared_mask_parts(
            dataclasses.replace(config, **cls._OTHER_OPTIONS), layout
        )

    def make(self, start, size, seed):
        """Masks `start .. start + size - 1` of the stream of `seed`, for
        the model and for the estimator: `(factors, data)`, the masks'
        `MaskFactors` and what the estimator needs of them besides
        (`Estimator.mask_data`).

        Traced once per size and random mode and called as a function:
        a loop's first masks and those it makes ahead in every step, and
        every engine of these options, share one trace. A function per
        random mode (an XLA step draws with plain ops).
        """
        name, make = "make", self._make
        if masks_lib.random_is_portable():
            name, make = "make with plain random ops", masks_lib.portable_random()(make)
        return self._function(name, make)(tf.cast(start, tf.int64), size, seed)

    def _make(self, start, size, seed):
        factors = self.family.factors(start, size, seed)
        return factors, self.estimator.mask_data(factors)

    def fold(self, sums, batch, scores, valid, state):
        """`sums` plus the estimator's sums of a step: masks `batch`
        (`(factors, data)` from `make`), their `scores`, `valid` and the
        estimator's `state` (see `RiseEngine._add_step`)."""
        return self._function("fold", self._fold)(sums, batch, scores, valid, state)

    def _fold(self, sums, batch, scores, valid, state):
        factors, data = batch
        step_sums = self.estimator.step_sums(factors, data, scores, valid, sums, state)
        return estimators_lib.merge(sums, step_sums)

    def close_unit(self, sums, close=True):
        """The sums with the unit in progress closed where `close` (a bool
        or boolean scalar tensor) is true: the sums' own `close_unit`."""
        return self._function("close_unit", self._close_unit)(sums, close)

    @staticmethod
    def _close_unit(sums, close):
        return sums.close_unit(close)

    def start(self, rows):
        """The estimator's empty sums of `rows` (image, target) rows and its
        state before any mask: `(sums, state)`."""
        return self._function("start", self._start)(rows)

    def _start(self, rows):
        sums = self.estimator.zeros(rows)
        return sums, self.estimator.initial_state(sums)

    def update_state(self, sums, jit_compile=False):
        """The estimator's state for the masks of `sums` (its
        `update_state`), compiled with XLA where `jit_compile`."""
        name, options = "update_state", {}
        if jit_compile:
            name, options = "update_state with XLA", {"jit_compile": True}
        return self._function(name, self.estimator.update_state, **options)(sums)

    def refit(self, sums, state, due, jit_compile=False):
        """`update_state(sums, jit_compile)` where `due`, a boolean scalar
        tensor, is true, and `state` where not: a branch in the graph (not
        in XLA, which would read `due` back from the device)."""
        name = "refit with XLA" if jit_compile else "refit"
        refit = functools.partial(self._refit, jit_compile=jit_compile)
        return self._function(name, refit)(sums, state, due)

    def _refit(self, sums, state, due, jit_compile):
        return tf.cond(due, lambda: self.update_state(sums, jit_compile), lambda: state)

    def saliency_rows(self, sums):
        """The estimator's maps of `sums`, `(B · T, pixels)`."""
        return self._function("saliency_rows", self.estimator.saliency_rows)(sums)

    def stderr_rows(self, sums):
        """The estimator's per-pixel standard errors of `sums`."""
        return self._function("stderr_rows", self.estimator.stderr_rows)(sums)

    def _function(self, name, python_function, **options):
        # The compiled `python_function`, made on first use and kept as `name`.
        if name not in self._functions:
            self._functions[name] = instance_function(python_function, **options)
        return self._functions[name]


@functools.lru_cache(maxsize=32)
def _shared_mask_parts(config, layout):
    return MaskParts(config, layout)


class RiseEngine:
    """Compiled-loop RISE over a fixed model and mask stream.

    Args:
        model: a `keras.Model` or callable; its image input is
            `(batch, height, width, channels)`, its outputs anything a
            `keras_rise.scores.Score` reads.
        config: a `keras_rise.RiseConfig`, the options of the explanation
            (masks, estimator, batch size, compilation, precision).
        image_input: which of several model inputs is masked; see
            `keras_rise.inputs.ModelInputs`.

    `RiseConfig` has checked the options; the data is checked by the public
    entry points such as `RiseExplainer` at their edge.
    """

    # Closed units (loop steps, or whole runs of balanced masks: see
    # `keras_rise.estimators`) before a tolerance may stop the loop: the
    # standard error comes from the spread between units and needs a few.
    MIN_UNITS = 4

    # Masked batches up to this size (bytes) may have two loop steps in
    # flight, so the model's pass over one overlaps the end of the last
    # (64x64, batch 100: 4.9 MB, 2-3% less time on two CPU cores). Larger
    # ones run a step at a time: two passes' activations alive at once cost
    # about 400 MB at 224x224.
    OVERLAP_BYTES = 8 * 2**20

    # With `jit_compile=True`, the steps whose masks and forward pass may be
    # launched before the sums of the steps before them are done (see
    # `sums`). On a GPU each launch holds a host thread until the device has
    # run it, so the device stays busy only with several queued.
    STEPS_IN_FLIGHT_XLA = 4

    def __init__(self, model, config, image_input=None):
        self.model = model
        self.config = config
        self._clone = None
        if config.dtype_policy is not None:
            self._clone = precision.PolicyClone(model, config.dtype_policy)
        self._forward = self._clone.model if self._clone else model
        self.inputs = ModelInputs(
            self._forward,
            image_input,
            inputs_lib.masked_axes_of(config.grid_size, config.binary_masks),
            config.binary_masks,
        )
        if (
            config.jit_compile and self.inputs.has_channels_first_layers
            and not tf.config.list_physical_devices("GPU")
        ):
            warnings.warn(
                "The model has channels-first layers, and on a CPU TensorFlow's XLA "
                "computes some channels-first convolutions wrongly (a bias on the wrong "
                "axis where the filters number the width): with jit_compile=True its "
                "maps may not be the model's. Leave jit_compile=False on a CPU.",
                stacklevel=outside_stacklevel(),
            )
        self._compiled_step = tf.function(self._step, jit_compile=True, autograph=False)
        self._parts = {}

    def _mask_parts(self, layout):
        if layout not in self._parts:
            # `binary_masks=None` is decided by the model's input (a table's
            # features get binary masks): the parts are keyed on the answer.
            binary = self.inputs.binary_masks(self.config.binary_masks, *layout)
            config = dataclasses.replace(self.config, binary_masks=binary)
            self._parts[layout] = MaskParts.for_config(config, layout)
        return self._parts[layout]

    def masks(self, layout):
        """The mask family (`keras_rise.masks.GridMasks`) for inputs of a
        layout, `(spatial_shape, tokens)` (see `keras_rise.inputs.layout`)."""
        return self._mask_parts(layout).family

    def estimator(self, layout):
        """The `keras_rise.estimators` estimator of the config for a layout."""
        return self._mask_parts(layout).estimator

    def masks_per_step(self, num_images, spatial_shape, run_length=1):
        """Masks per loop step so one forward pass holds at most
        `batch_size` images (`RiseConfig.batch_size_for`).

        Steps tile the mask family's runs (`GridMasks.run_length`, a power
        of two): a step holds whole runs, or a power-of-two part of one, so
        that standard errors can be taken over whole runs. Even with
        complementary masks, so that no pair is split.
        """
        per_step = max(1, self.config.batch_size_for(spatial_shape) // num_images)
        if self.config.complementary_masks:
            per_step = max(2, per_step - per_step % 2)
        if per_step >= run_length:
            return per_step - per_step % run_length
        return 2 ** (per_step.bit_length() - 1)

    def step_layout(self, images):
        """`(masks per step, masks per unit)` for a batch of images: a unit
        is what the standard error takes as one sample, a step or a whole
        run of balanced masks, whichever is longer."""
        layout = inputs_lib.layout(images)
        run = self.masks(layout).run_length
        per_step = self.masks_per_step(images.shape[0], layout[0], run)
        return per_step, max(per_step, run)

    def steps_in_flight(self, images, per_step):
        """Loop steps that may run at once for `images` without XLA (see
        `OVERLAP_BYTES`; with `jit_compile=True`, `STEPS_IN_FLIGHT_XLA`)."""
        batch_bytes = per_step * images.shape.num_elements() * images.dtype.size
        return 2 if batch_bytes <= self.OVERLAP_BYTES else 1

    def _masks(self, start, size, layout, seed):
        """Masks `start .. start + size - 1` of the stream of `seed`, for the
        model and for the estimator.

        Returns:
            `(factors, data)`: the masks' `MaskFactors` and what the estimator
            needs of them besides (`Estimator.mask_data`); see
            `MaskParts.make`.
        """
        return self._mask_parts(layout).make(start, size, seed)

    def fill_for(self, images):
        """What masked-out pixels of these images become: the config's
        `fill_value`, made once per explanation for `"blur"` and `"mean"`
        (see `keras_rise.inputs.fill_for`), over the axes whose masks are
        blended (a series' steps, not its channels kept whole:
        `ModelInputs.fill_axes`)."""
        return inputs_lib.fill_for(self.config.fill_value, images, self.inputs.fill_axes())

    def _add_step(
        self,
        sums,
        inputs,
        score,
        batch,
        start,
        targets,
        limit=None,
        state=(),
        fill=0.0,
        keep=None,
    ):
        """Masks the image input, runs the model; returns `sums` plus the step's.

        Args:
            sums: the estimator's sums of the steps before.
            inputs: the model's inputs for `B` examples; the image input is
                `(B, H, W, C)`.
            score: the `keras_rise.scores.Score` explained.
            batch: `(factors, data)` of masks `start ..` of the stream, from
                `_masks`.
            start: scalar int64 tensor, the first mask's index.
            targets: the score's per-image targets (`Score.targets_of`).
            limit: optional int: masks with an index `>= limit` are run but
                count for nothing (the end of a range split across replicas).
            state: the estimator's state (`Estimator.update_state`).
            fill: what masked-out pixels become (`fill_for`).
            keep: optional static int: only the first `keep` masks of
                `batch` count, and only they go through the model. Masking
                compiles an XLA program per number of masks (about 0.3 s on
                a CPU), so the tail of a range after whole steps is made and
                masked as a whole step, with the step's traced function and
                program, and cut back after masking.
        """
        model_inputs, batch = self._masked_inputs(inputs, batch, fill, keep)
        size = tf.nest.flatten(batch[0])[0].shape[0]
        valid = _valid(start, size, limit)
        step = self._compiled_step if self.config.jit_compile else self._step
        return step(sums, batch, model_inputs, score, _repeat(targets, size), valid, state)

    def _masked_inputs(self, inputs, batch, fill, keep=None):
        """The model's inputs for a step's masked copies, and the step's masks.

        Returns `(model_inputs, batch)`: the image input masked by each of
        `batch`'s masks, the other inputs repeated to match, and `batch` cut
        to its first `keep` masks when `keep` is given (see `_add_step`).
        """
        image = self.inputs.image(inputs)
        masked = self.masks(inputs_lib.layout(image)).apply(batch[0], image, fill)
        if keep is not None:
            masked = masked[: keep * image.shape[0]]
            batch = tf.nest.map_structure(lambda t: t[:keep], batch)
        size = tf.nest.flatten(batch[0])[0].shape[0]
        # Masked copies are mask-major (copy k · B + b is mask k on example
        # b), so the other inputs and the targets are repeated whole.
        others = _repeat(self.inputs.others(inputs), size)
        return self.inputs.assemble(inputs, masked, others), batch

    def _scores(self, model_inputs, score, targets, size):
        """The model's scores of `size` masked copies of each input, float32
        `(B · T, size)`; `targets` are already repeated to the copies."""
        masked = self.inputs.image(model_inputs)
        outputs = _float_outputs(self.inputs.call(model_inputs))
        scores = tf.cast(score(outputs, targets), tf.float32)
        scores = tf.reshape(scores, [size, masked.shape[0] // size, -1])
        scores = tf.transpose(scores, [1, 2, 0])  # (B, T, size)
        return tf.reshape(scores, [-1, size])

    def _fold(self, sums, batch, scores, valid, state, layout):
        """`sums` plus the estimator's sums of a step's masks and scores."""
        return self._mask_parts(layout).fold(sums, batch, scores, valid, state)

    def _step(self, sums, batch, model_inputs, score, targets, valid, state):
        """Model, score and accumulation of a masked batch (XLA-compilable)."""
        size = tf.nest.flatten(batch[0])[0].shape[0]
        scores = self._scores(model_inputs, score, targets, size)
        layout = inputs_lib.layout(self.inputs.image(model_inputs))
        return self._fold(sums, batch, scores, valid, state, layout)

    def sums(
        self,
        inputs,
        score,
        targets,
        start,
        count,
        num_targets,
        tolerance=None,
        limit=None,
        fill=None,
        seed=None,
        progress=None,
    ):
        """Sums over masks `start .. start + count - 1`, looped in the graph.

        Args:
            inputs: the model's inputs; the image input is a `(B, H, W, C)`
                tensor with a static shape.
            score: the `keras_rise.scores.Score` explained.
            targets: its per-image targets (`Score.targets_of`).
            start: int or scalar int tensor, first mask index.
            count: static int, number of masks.
            num_targets: int or scalar tensor, `T` of the result.
            tolerance: `None`, or a float32 scalar tensor: stop after a
                step once every map's relative standard error
                (`relative_stderr`) is below it, once at least `MIN_UNITS`
                units are closed. A value <= 0 never stops.
            limit: optional int, the stream's end: masks from index `limit`
                on count for nothing (see `_add_step`).
            fill: `None` for the config's `fill_value` (`fill_for`), or a
                tensor broadcastable to the images: what masked-out pixels
                become.
            seed: `None` for the config's seed, or a scalar int tensor: the
                mask stream (a tensor, so a new seed does not retrace).
            progress: `None`, or a function called in the graph after every
                loop step (and the tail) with the masks summed so far, a
                float32 scalar tensor; the ops it adds (e.g. a
                `tf.numpy_function` that moves a progress bar) run once the
                step's sums are done. `None` adds nothing to the loop.

        Returns:
            The estimator's sums (`keras_rise.estimators`), with maps of
            `B · T` rows of `H · W` pixels and every unit closed: a unit
            ends at every multiple of the unit length (`step_layout`) and
            at the end of the range.
        """
        if self.config.jit_compile and self.inputs.runs_python:
            raise ValueError(
                "`jit_compile=True` compiles the model with XLA, but this model is "
                "Python code that returns NumPy arrays, which XLA cannot compile. "
                "Pass jit_compile=False."
            )
        images = self.inputs.image(inputs)
        batch, layout = images.shape[0], inputs_lib.layout(images)
        per_step, unit = self.step_layout(images)
        full_steps, tail = divmod(count, per_step)
        schedule = _UnitSchedule(start, per_step, unit)
        start = tf.cast(start, tf.int64)
        parts = self._mask_parts(layout)
        estimator = parts.estimator
        initial, state = parts.start(batch * num_targets)
        fill = self.fill_for(images) if fill is None else tf.cast(fill, images.dtype)
        seed = self.config.seed if seed is None else seed

        if tolerance is not None:
            with tf.device("/CPU:0"):  # read once, before the loop
                stopping = tf.convert_to_tensor(tolerance) > 0

        def converged(step, sums):
            # Asked only right after a step that closed a unit: between unit
            # ends the closed units do not change but the mask count does, so
            # the error would read lower mid-unit than the answer's own, whose
            # unit in progress is closed (a part unit) when the loop ends.
            # Whether to ask is decided on the host; only asking reads the
            # sums back from the device.
            if tolerance is None:
                return tf.constant(False)
            with tf.device("/CPU:0"):
                due = tf.logical_and(
                    tf.logical_and(stopping, schedule.units_before(step) >= self.MIN_UNITS),
                    schedule.starts_unit(step),
                )

            def check():
                below = estimator.relative_stderr(sums) < tolerance
                with tf.device("/CPU:0"):
                    return tf.reduce_all(below)

            def no():
                with tf.device("/CPU:0"):
                    return tf.constant(False)

            return tf.cond(due, check, no)

        jit_compile = self.config.jit_compile

        def new_state(step, sums, state):
            # The estimator's state changes only between units, when it says
            # so for the units closed by then. Both are counted from the step
            # number in int32 (host) ops: a branch on the sums themselves
            # would make a GPU wait for the step before it to finish.
            with tf.device("/CPU:0"):
                due = estimator.state_update_due(schedule.units_before(step))
                if due is None:
                    return state
                starts = schedule.starts_unit(step)
                if isinstance(due, bool):  # both known before the graph runs
                    return parts.update_state(sums, jit_compile) if due and starts else state
                due = tf.logical_and(due, starts)
            return parts.refit(sums, state, due, jit_compile)

        def keep_going(step, sums):
            done = converged(step, sums)
            with tf.device("/CPU:0"):
                return tf.logical_and(step < full_steps, tf.logical_not(done))

        def masks_from(first):
            # Carried from step to step with int32 parts (e.g. the shifts)
            # as int64: TensorFlow keeps int32 tensors in host memory, and
            # each would be copied to and from a GPU at every step.
            return _widen_int32(self._masks(first, per_step, layout, seed))

        # The step's inputs in the loop: int32 tensors (targets, token ids)
        # as int64, for the same reason as the masks.
        host_dtypes = tf.nest.map_structure(lambda x: x.dtype, (inputs, targets))
        loop_inputs = _widen_int32((inputs, targets))
        # Dtypes of the masks as made, for a step to narrow what crossed the
        # loop widened (`masks_from`); read when the masks are first traced.
        mask_dtypes = []

        def narrow_masks(batch):
            return tf.nest.map_structure(tf.cast, batch, mask_dtypes[0])

        def narrow_inputs(inputs, targets):
            return tf.nest.map_structure(tf.cast, (inputs, targets), host_dtypes)

        def closes_unit(first):
            # `_UnitSchedule.starts_unit` for the next step, on the device's
            # own index.
            return tf.equal((first + per_step) % unit, 0)

        def graph_loop(step, sums, state):
            # One step at a time, or two where the masked batch is small
            # (`steps_in_flight`); each step makes the next step's masks
            # while the model runs on its own (nothing links the two, so the
            # executor overlaps them: 3-4% less time at 64x64 on two CPU
            # cores). Only masks (and their features) are made ahead, not
            # the masked batch, to keep memory low.
            def body(step, first, sums, state, batch):
                state = new_state(step, sums, state)
                upcoming = masks_from(first + per_step)
                inputs, targets = narrow_inputs(*loop_inputs)
                sums = self._add_step(
                    sums, inputs, score, narrow_masks(batch), first, targets, limit, state,
                    fill,
                )
                sums = parts.close_unit(sums, closes_unit(first))
                _report(progress, sums)
                with tf.device("/CPU:0"):
                    step += 1
                return step, first + per_step, sums, state, upcoming

            first_masks = self._masks(start, per_step, layout, seed)
            mask_dtypes.append(tf.nest.map_structure(lambda x: x.dtype, first_masks))
            step, _, sums, state, _ = tf.while_loop(
                lambda step, first, sums, *_: keep_going(step, sums),
                body,
                (step, start, sums, state, _widen_int32(first_masks)),
                parallel_iterations=self.steps_in_flight(images, per_step),
            )
            return step, sums, state

        def xla_loop(step, sums, state):
            # Each step is two XLA programs. The first makes the step's
            # masks from their index, masks the inputs and runs the model:
            # it needs nothing from the steps before, so the host launches
            # several ahead (`STEPS_IN_FLIGHT_XLA`), so that a GPU need not
            # wait for the host between them — an XLA launch holds its host
            # thread until the device has finished it, and one program
            # that also took the last step's sums ran host and device in
            # turns (the split's GPU time is not measured yet: see
            # benchmarks/README). The second adds the step's scores to the
            # sums, the one chain from step to step. Neither has a branch (an XLA branch
            # reads its condition back from the device). The masks draw
            # their random numbers with plain ops there (`portable_random`):
            # XLA's own Philox kernel draws other numbers, and a mask must
            # not depend on how it was made.
            def probe(first, inputs, targets):
                masks = self._masks(first, per_step, layout, seed)
                if not mask_dtypes:
                    mask_dtypes.append(tf.nest.map_structure(lambda x: x.dtype, masks))
                inputs, targets = narrow_inputs(inputs, targets)
                model_inputs, masks = self._masked_inputs(inputs, masks, fill)
                scores = self._scores(
                    model_inputs, score, _repeat(targets, per_step), per_step
                )
                return _widen_int32(masks), scores

            def fold(first, sums, state, batch, scores):
                valid = _valid(first, per_step, limit)
                sums = self._fold(sums, narrow_masks(batch), scores, valid, state, layout)
                return parts.close_unit(sums, closes_unit(first))

            options = {"jit_compile": True, "autograph": False}
            probe = tf.function(masks_lib.portable_random()(probe), **options)
            fold = tf.function(fold, **options)

            def body(step, first, sums, state):
                state = new_state(step, sums, state)
                batch, scores = probe(first, *loop_inputs)
                sums = fold(first, sums, state, batch, scores)
                _report(progress, sums)
                with tf.device("/CPU:0"):
                    step += 1
                return step, first + per_step, sums, state

            step, _, sums, state = tf.while_loop(
                lambda step, first, sums, *_: keep_going(step, sums),
                body,
                (step, start, sums, state),
                parallel_iterations=self.STEPS_IN_FLIGHT_XLA,
            )
            return step, sums, state

        # Two counters: the step, in int32, which TensorFlow keeps in host
        # memory, so that the loop's condition and the unit schedule never
        # wait for a GPU; and the first mask's index, in int64 on the
        # device.
        step = tf.constant(0, tf.int32)
        if full_steps:
            loop = xla_loop if self.config.jit_compile else graph_loop
            step, sums, state = loop(step, initial, state)
        else:
            sums = initial
        if tail:

            def with_tail():
                tail_start = start + full_steps * per_step
                # After whole steps, the tail's masks are the first of a
                # whole step's, from the loop's traced function and masking
                # program (see `_add_step`'s `keep`). A range shorter than
                # a step is one step of its own size: masking more would
                # cost every call (8 masks of a 224×224 image, masked as a
                # step of 64, made the explanation 2.5 times slower).
                whole = per_step if full_steps else tail
                tail_sums = self._add_step(
                    sums,
                    inputs,
                    score,
                    self._masks(tail_start, whole, layout, seed),
                    tail_start,
                    targets,
                    limit,
                    new_state(full_steps, sums, state),
                    fill,
                    keep=tail if full_steps else None,
                )
                _report(progress, tail_sums)
                return tail_sums

            if tolerance is None:
                sums = with_tail()
            else:
                sums = tf.cond(converged(step, sums), lambda: sums, with_tail)
        return parts.close_unit(sums)

    def saliency_rows(self, sums, layout):
        """The maps, one row per (image, target): float32 `(B · T, H · W)`;
        see the estimator's `saliency_rows`. `layout` as from `layout`."""
        return self._mask_parts(layout).saliency_rows(sums)

    def stderr_rows(self, sums, layout):
        """Each pixel's standard error, `(B · T, H · W)`; see the estimator's
        `stderr_rows`."""
        return self._mask_parts(layout).stderr_rows(sums)

    @staticmethod
    def _as_maps(rows, batch, spatial):
        """Rows `(B · T, pixels)` as maps `(B, *spatial, T)` (any spatial rank)."""
        maps = tf.reshape(rows, [batch, -1, *spatial])
        rank = len(spatial)
        return tf.transpose(maps, [0, *range(2, rank + 2), 1])

    def saliency_from_sums(self, sums, images):
        """Normalises the sums of `images` (a tensor or `tf.TensorSpec`) into
        maps (see `saliency_rows`): `(B, *spatial, T)`, e.g. `(B, H, W, T)`."""
        layout = inputs_lib.layout(images)
        rows = self.saliency_rows(sums, layout)
        return self._as_maps(rows, images.shape[0], layout[0])

    def explain(
        self,
        inputs,
        score,
        targets=None,
        tolerance=None,
        replica=None,
        fill=None,
        seed=None,
        progress=None,
    ):
        """Explains inputs; meant to be wrapped in a `tf.function`.

        Args:
            inputs: the model's inputs: a `(B, H, W, C)` image tensor, or the
                dict or list a multi-input model takes (see
                `keras_rise.inputs.ModelInputs`). With a static batch size
                all `B` images share each mask batch; with a dynamic one (a
                Keras `Input` or a serving signature) they are explained one
                after another, with the same masks and so the same maps.
            score: a `keras_rise.scores.Score`: what is explained.
            targets: `None` for the score's own targets of the unmasked
                inputs (`Score.targets_of`, e.g. each image's top class), or
                per-image targets of that form (e.g. int32 class ids `(B,)`).
            tolerance: `None` or a float32 scalar tensor; see `sums`.
            replica: `None`, or a `ReplicaSlice` when called in each replica
                of a `tf.distribute` strategy: the replica sums only its
                share of the mask stream, and the shares are all-reduced.
            fill: `None` for the config's `fill_value`, or a tensor: one
                fill for every image (broadcastable to `(H, W, C)`) or one
                per image `(B, H, W, C)`.
            seed: `None` for the config's seed, or a scalar int64 tensor.
            progress: `None`, or a function of the masks summed so far,
                called in the graph after every loop step; see `sums`. With
                a dynamic batch the count starts again for each example.
                Not with `replica`.

        Returns:
            A `RiseResult`; maps have a last axis of size `T` when the score
            returns `(batch, T)`.
        """
        if replica is not None and progress is not None:
            raise ValueError(
                "`progress` is reported by one loop; with a `replica` every replica "
                "runs its own. Pass one or the other."
            )
        if self._clone is not None:
            self._clone.sync()  # the current weights of a model in training
        outputs = _float_outputs(self.inputs.call(inputs))
        if targets is None:
            # Plain TensorFlow code, like `Score.__call__`: not for AutoGraph.
            targets = tf.autograph.experimental.do_not_convert(score.targets_of)(outputs)
        else:
            targets = score.check_targets(outputs, targets)
        unmasked = tf.cast(score(outputs, targets), tf.float32)
        one_target = unmasked.shape.rank == 1
        num_targets = 1 if one_target else unmasked.shape[-1]

        def explain_batch(inputs, targets, fill):
            images = self.inputs.image(inputs)
            common = {"fill": fill, "seed": seed}
            if replica is None:
                sums = self.sums(
                    inputs,
                    score,
                    targets,
                    0,
                    self.config.num_masks,
                    num_targets,
                    tolerance,
                    progress=progress,
                    **common,
                )
            else:
                # Shares of whole units, so that no unit is split.
                unit = self.step_layout(images)[1]
                share = -(-self.config.num_masks // replica.num_replicas)
                share = -(-share // unit) * unit
                start = tf.cast(replica.replica_id, tf.int64) * share
                sums = self.sums(
                    inputs,
                    score,
                    targets,
                    start,
                    share,
                    num_targets,
                    limit=self.config.num_masks,
                    **common,
                )
                sums = replica.all_reduce(sums)
            layout = inputs_lib.layout(images)
            return (
                self.saliency_from_sums(sums, images),
                self._as_maps(
                    self.stderr_rows(sums, layout), images.shape[0], layout[0]
                ),
                tf.fill([images.shape[0]], tf.cast(sums.count, tf.int32)),
            )

        images = self.inputs.image(inputs)
        per_image_fill = fill is not None and fill.shape.rank == images.shape.rank
        if images.shape[0] is not None:
            saliency, stderr, used = explain_batch(inputs, targets, fill)
        else:
            spatial = inputs_lib.layout(images)[0]
            map_spec = tf.TensorSpec([*spatial, num_targets], tf.float32)

            def explain_one(example):
                inputs, targets, own_fill = tf.nest.map_structure(lambda x: x[None], example)
                saliency, stderr, used = explain_batch(
                    inputs, targets, own_fill if per_image_fill else fill
                )
                return saliency[0], stderr[0], used[0]

            # Plain TensorFlow code: `tf.map_fn` would convert it with
            # AutoGraph under a caller that uses it (a Keras `predict` or
            # `export` of a model around `RiseLayer`), rewriting the whole
            # engine's code for nothing (seconds per trace).
            saliency, stderr, used = tf.map_fn(
                tf.autograph.experimental.do_not_convert(explain_one),
                (inputs, targets, fill if per_image_fill else ()),
                fn_output_signature=(map_spec, map_spec, tf.int32),
                parallel_iterations=1,
            )
        if one_target:
            saliency, stderr = saliency[..., 0], stderr[..., 0]
        return RiseResult(saliency, targets, unmasked, stderr, used)
