"""The RISE loop: masks → masked batch → model → scores → `scores^T @ masks`.

`RiseEngine` is the one implementation of RISE in keras_rise; every public
way to explain (today `RiseExplainer`) calls it rather than repeat it. Its
methods are plain TensorFlow code meant to run inside a `tf.function`: the
loop over mask batches is a `tf.while_loop` in the graph, every step makes its
masks on the device from the seed, and only running sums of size
`(images · targets, height · width)` are carried from step to step.

The sums over a range of mask indices (`RiseSums`) can be added together, so a
map can be split across steps, replicas or workers by mask index and merged
exactly.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_rise import masks as masks_lib
from keras_rise import precision
from keras_rise import regression as regression_lib
from keras_rise.inputs import ModelInputs


@tf.function(jit_compile=True)
def _apply_masks(rows, widened, images, fill):
    """`fill + (image - fill) · mask` for every mask and image, mask-major.

    One XLA kernel makes the masks from their factors and applies them,
    writing only the masked batch. Bilinear weights put at most two
    consecutive grid rows into each mask row, so a mask row is a blend of
    two rows of `widened` — not an 8-term product (which XLA made slower
    than two separate kernels). The masks equal `masks.expand`'s to float
    rounding.

    Args:
        rows: float32 `(size, H, s)`, `MaskFactors.rows`.
        widened: float32 `(size, s, W)`, `masks.widen` of the factors.
        images: `(B, H, W, C)`.
        fill: scalar or array broadcastable to `(H, W, C)`, images' dtype.

    Returns:
        `(size · B, H, W, C)` in the images' dtype.
    """
    grid_size = rows.shape[-1]
    first = tf.argmax(tf.cast(rows > 0, tf.int32), axis=-1, output_type=tf.int32)
    second = tf.minimum(first + 1, grid_size - 1)
    first_weight = tf.gather(rows, first, batch_dims=2)  # (size, H)
    second_weight = tf.where(
        second > first, tf.gather(rows, second, batch_dims=2), 0.0
    )
    masks = (
        first_weight[..., None] * tf.gather(widened, first, batch_dims=1)
        + second_weight[..., None] * tf.gather(widened, second, batch_dims=1)
    )
    keep = tf.cast(masks, images.dtype)[:, None, :, :, None]
    masked = fill + (images[None] - fill) * keep
    return tf.reshape(masked, tf.concat([[-1], tf.shape(images)[1:]], 0))


class RiseSums(NamedTuple):
    """Running sums over one or more mask ranges; add two to merge them.

    Every field is a plain sum over masks (or over loop steps), so the sums
    of disjoint mask ranges — loop steps, replicas, workers — merge exactly
    by addition (`merge`). With `T` targets per image and `B` images, a
    "row" is one (image, target) pair.

    Attributes:
        weighted: float32 `(B · T, H · W)`, Σ_n score_n · mask_n.
        count: float32 scalar, number of masks summed.
        mask_sum: float32 `(H · W,)`, Σ_n mask_n.
        score_sum: float32 `(B · T,)`, Σ_n score_n.
        steps: float32 scalar, number of loop steps (batches) summed.
        weighted_sq: float32 `(B · T, H · W)`, Σ_steps W_s² / k_s, where
            `W_s` is a step's `weighted` and `k_s` its number of masks.
        weighted_mask: float32 `(B · T, H · W)`, Σ_steps W_s · M_s / k_s,
            `M_s` being a step's `mask_sum`.
        mask_sq: float32 `(H · W,)`, Σ_steps M_s² / k_s.

        feature_sum: float32 `(F,)`, Σ_n φ_n, where `φ_n` are the features
            of mask `n` for the score regression (`F = 0` without it; see
            `keras_rise.regression`).
        feature_gram: float32 `(F, F)`, Σ_n φ_n φ_nᵀ.
        feature_score: float32 `(B · T, F)`, Σ_n score_n · φ_n.
        feature_mask: float32 `(F, S)`, Σ_n φ_n · shrink(mask_n), the
            masks averaged over `S` blocks (`ScoreRegression.shrink`).
        control_sum: float32 `(B · T, H · W)` (`(B · T, 0)` without the
            regression), Σ_steps E_s, where `E_s` is a step's own estimate
            with the fit of the steps before it (`ScoreRegression
            .step_estimate`); steps with no earlier mask are left out.
        control_sq: float32, `control_sum`'s shape, Σ_steps E_s² / k_s.
        control_count: float32 scalar, masks in those steps.
        control_steps: float32 scalar, number of those steps.

    `weighted_sq`, `weighted_mask` and `mask_sq` give the map's standard
    error by the method of batch means: every step is an independent sample
    of `k_s` masks; the `control_*` fields do the same for the score
    regression.
    """

    weighted: tf.Tensor
    count: tf.Tensor
    mask_sum: tf.Tensor
    score_sum: tf.Tensor
    steps: tf.Tensor
    weighted_sq: tf.Tensor
    weighted_mask: tf.Tensor
    mask_sq: tf.Tensor
    feature_sum: tf.Tensor
    feature_gram: tf.Tensor
    feature_score: tf.Tensor
    feature_mask: tf.Tensor
    control_sum: tf.Tensor
    control_sq: tf.Tensor
    control_count: tf.Tensor
    control_steps: tf.Tensor

    def merge(self, other):
        """Returns the sums over the union of two disjoint mask ranges."""
        return RiseSums(*(mine + theirs for mine, theirs in zip(self, other)))

    @classmethod
    def zeros(cls, rows, pixels, features=0, control_pixels=0, smooth_pixels=0):
        """Empty sums for `rows` (image, target) rows of `pixels` pixels.

        `features`, `control_pixels` and `smooth_pixels` are `F`, `H · W`
        and `S` with the score regression, 0 without it.
        """
        return cls(
            weighted=tf.zeros(tf.stack([rows, pixels])),
            count=tf.constant(0.0),
            mask_sum=tf.zeros([pixels]),
            score_sum=tf.zeros(tf.stack([rows])),
            steps=tf.constant(0.0),
            weighted_sq=tf.zeros(tf.stack([rows, pixels])),
            weighted_mask=tf.zeros(tf.stack([rows, pixels])),
            mask_sq=tf.zeros([pixels]),
            feature_sum=tf.zeros([features]),
            feature_gram=tf.zeros([features, features]),
            feature_score=tf.zeros(tf.stack([rows, features])),
            feature_mask=tf.zeros([features, smooth_pixels]),
            control_sum=tf.zeros(tf.stack([rows, control_pixels])),
            control_sq=tf.zeros(tf.stack([rows, control_pixels])),
            control_count=tf.constant(0.0),
            control_steps=tf.constant(0.0),
        )

    @classmethod
    def of_step(
        cls,
        factors,
        scores,
        valid=None,
        regression=None,
        fit=None,
        features=None,
        shrunk=None,
    ):
        """The sums of one step.

        Args:
            factors: `keras_rise.masks.MaskFactors` of the step's `k` masks.
            scores: float32 `(B · T, k)`.
            valid: optional float32 `(k,)` of 1s and 0s: masks marked 0 (past
                the end of a range split across replicas) count for nothing.
            regression: optional `keras_rise.regression.ScoreRegression`,
                to sum its features too.
            fit: with `regression`, `(center, beta, expected, weight)`: a
                fit of steps before this one (`ScoreRegression.control`) and
                a float32 scalar, 1 to add this step's own estimate to the
                `control_*` sums, 0 (or `fit=None`) not to (no earlier
                steps).
            features: with `regression`, optional float32 `(k, F)`, the
                masks' features if already made (`regression
                .factor_features`).
            shrunk: with `regression`, optional float32 `(k, S)`, the
                masks averaged over the smoothing's blocks, if already made
                (`regression.factor_shrink`).
        """
        count, height, _ = factors.rows.shape
        pixels = height * factors.cols.shape[1]
        if valid is None:
            valid = tf.ones([count])
        size = tf.reduce_sum(valid)
        # One weighted sum of the masks gives both sums of them: the weights
        # are the scores and a row of ones (the mask total); masks not
        # valid get a weight of zero.
        scores = scores * valid[None, :]
        both = masks_lib.weighted_sum(factors, tf.concat([scores, valid[None, :]], 0))
        rows = tf.shape(scores)[0]
        weighted, mask_sum = both[:rows], both[rows]
        per_mask = 1.0 / tf.maximum(size, 1.0)
        sums = cls.zeros(rows, pixels)._replace(
            weighted=weighted,
            count=size,
            mask_sum=mask_sum,
            score_sum=tf.reduce_sum(scores, axis=1),
            steps=tf.minimum(size, 1.0),
            weighted_sq=tf.square(weighted) * per_mask,
            weighted_mask=weighted * mask_sum * per_mask,
            mask_sq=tf.square(mask_sum) * per_mask,
        )
        if regression is None:
            return sums
        if features is None:
            features = regression.factor_features(factors)
        if shrunk is None:
            shrunk = regression.factor_shrink(factors)
        features = features * valid[:, None]
        # The regression's sums over masks are taken on their block averages
        # (`shrunk`: a few hundred pixels, not H · W): of the features, a row
        # of ones and each row's fitted score under the earlier steps' fit.
        left = [tf.transpose(features), valid[None, :]]
        if fit is not None:
            left.append(tf.matmul(fit[1], features, transpose_b=True))
        smooth = tf.matmul(tf.concat(left, 0), shrunk)
        num_features = features.shape[1]
        sums = sums._replace(
            feature_sum=tf.reduce_sum(features, axis=0),
            feature_gram=tf.matmul(features, features, transpose_a=True),
            feature_score=tf.matmul(scores, features),
            feature_mask=smooth[:num_features],
        )
        if fit is None:
            return sums._replace(
                control_sum=tf.zeros_like(weighted), control_sq=tf.zeros_like(weighted)
            )
        *control, weight = fit
        estimate = regression.step_estimate(
            sums, smooth[num_features + 1 :], smooth[num_features], control
        )
        return sums._replace(
            control_sum=weight * estimate,
            control_sq=weight * tf.square(estimate) * per_mask,
            control_count=weight * size,
            control_steps=weight * tf.minimum(size, 1.0),
        )


def _batch_means_stderr(total, squares, count, steps, num_masks, keep_prob):
    """Per-pixel standard error of a map by the method of batch means.

    Args:
        total: Σ_s X_s over the steps used, `X_s` a step's sum of `k_s`
            per-mask values.
        squares: Σ_s X_s² / k_s over the same steps.
        count: Σ_s k_s.
        steps: number of steps used.
        num_masks: masks the map averages.
        keep_prob: the map's normalisation.

    Returns:
        `sqrt(per-mask variance / num_masks) / keep_prob`; NaN with fewer
        than two steps.
    """
    spread = tf.maximum(squares - tf.square(total) / tf.maximum(count, 1.0), 0.0)
    variance = spread / (steps - 1.0)  # per mask
    variance = tf.where(steps > 1.0, variance, float("nan"))
    return tf.sqrt(variance / num_masks) / keep_prob


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
            standard error (NaN after fewer than 2 loop steps).
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
        all_reduce: function mapping this replica's `RiseSums` to the sums
            over all replicas.
    """

    replica_id: tf.Tensor
    num_replicas: int
    all_reduce: object


def _float_outputs(outputs):
    """The model's floating outputs in float32 (e.g. under mixed precision)."""
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs
    )


def _repeat(structure, times):
    """Every tensor of a structure repeated `times` along its batch, mask-major."""
    return tf.nest.map_structure(
        lambda x: tf.tile(x, [times] + [1] * (x.shape.rank - 1)), structure
    )


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

    # Loop steps before a tolerance may stop the loop: the standard error
    # comes from the spread between steps and needs a few of them.
    MIN_STEPS = 4

    # Masked batches up to this size (bytes) may have two loop steps in
    # flight, so the model's pass over one overlaps the end of the last
    # (64x64, batch 100: 4.9 MB, 2-3% less time on two CPU cores). Larger
    # ones run a step at a time: two passes' activations alive at once cost
    # about 400 MB at 224x224.
    OVERLAP_BYTES = 8 * 2**20

    def __init__(self, model, config, image_input=None):
        self.model = model
        self.config = config
        self._clone = None
        if config.dtype_policy is not None:
            self._clone = precision.PolicyClone(model, config.dtype_policy)
        self._forward = self._clone.model if self._clone else model
        self.inputs = ModelInputs(self._forward, image_input)
        self._compiled_step = tf.function(self._step, jit_compile=True, autograph=False)
        self._regressions = {}

    def regression(self, image_size):
        """The `ScoreRegression` for an image size, or `None` if not used."""
        if not self.config.score_regression:
            return None
        image_size = tuple(image_size)
        if image_size not in self._regressions:
            self._regressions[image_size] = regression_lib.ScoreRegression(
                image_size, self.config.grid_size, self.config.keep_prob
            )
        return self._regressions[image_size]

    def masks_per_step(self, num_images):
        """Masks per loop step so one forward pass holds `batch_size` images.

        Even with complementary masks, so that no pair is split.
        """
        per_step = max(1, self.config.batch_size // num_images)
        if self.config.complementary_masks:
            per_step = max(2, per_step - per_step % 2)
        return per_step

    def steps_in_flight(self, images, per_step):
        """Loop steps that may run at once for `images` (see `OVERLAP_BYTES`)."""
        batch_bytes = per_step * images.shape.num_elements() * images.dtype.size
        return 2 if batch_bytes <= self.OVERLAP_BYTES else 1

    def _masks(self, start, size, image_size):
        """Masks `start .. start + size - 1` of the stream, for the model and
        for the score regression.

        Returns:
            `(factors, features, shrunk)`: the masks' `MaskFactors` and, for the
            score regression, the masks' features `(size, F)` and their
            averages over the smoothing's blocks `(size, S)` (`(size, 0)`
            each without it), made from the masks' factors rather than the
            masks themselves.
        """
        factors = masks_lib.factors_in_range(
            self.config.seed,
            start,
            size,
            image_size,
            self.config.grid_size,
            self.config.keep_prob,
            self.config.mask_sampling,
            self.config.complementary_masks,
        )
        regression = self.regression(image_size)
        if regression is None:
            features = shrunk = tf.zeros([size, 0])
        else:
            features = regression.factor_features(factors)
            shrunk = regression.factor_shrink(factors)
        return factors, features, shrunk

    def _add_step(self, sums, inputs, score, batch, start, targets, limit=None, fit=None):
        """Masks the image input, runs the model; returns `sums` plus the step's.

        Args:
            sums: `RiseSums` of the steps before.
            inputs: the model's inputs for `B` examples; the image input is
                `(B, H, W, C)`.
            score: the `keras_rise.scores.Score` explained.
            batch: `(factors, features, shrunk)` of masks `start ..` of the
                stream, from `_masks`.
            start: scalar int64 tensor, the first mask's index.
            targets: the score's per-image targets (`Score.targets_of`).
            limit: optional int: masks with an index `>= limit` are run but
                count for nothing (the end of a range split across replicas).
            fit: with the score regression, the earlier steps' fit; see
                `RiseSums.of_step`.
        """
        factors = batch[0]
        size = factors.rows.shape[0]
        image = self.inputs.image(inputs)
        masked = _apply_masks(
            factors.rows,
            masks_lib.widen(factors),
            image,
            tf.cast(self.config.fill_value, image.dtype),
        )
        # Masked copies are mask-major (copy k · B + b is mask k on example
        # b), so the other inputs and the targets are repeated whole.
        others = _repeat(self.inputs.others(inputs), size)
        model_inputs = self.inputs.assemble(inputs, masked, others)
        valid = None
        if limit is not None:
            indices = start + tf.range(size, dtype=tf.int64)
            valid = tf.cast(indices < limit, tf.float32)
        step = self._compiled_step if self.config.jit_compile else self._step
        return step(sums, batch, model_inputs, score, _repeat(targets, size), valid, fit)

    def _step(self, sums, batch, model_inputs, score, targets, valid, fit):
        """Model, score and accumulation of a masked batch (XLA-compilable)."""
        factors, features, shrunk = batch
        size = factors.rows.shape[0]
        masked = self.inputs.image(model_inputs)
        outputs = _float_outputs(self.inputs.call(model_inputs))
        scores = tf.cast(score(outputs, targets), tf.float32)
        scores = tf.reshape(scores, [size, masked.shape[0] // size, -1])
        scores = tf.transpose(scores, [1, 2, 0])  # (B, T, size)
        regression = self.regression(masked.shape[1:3])
        scores = tf.reshape(scores, [-1, size])
        return sums.merge(
            RiseSums.of_step(factors, scores, valid, regression, fit, features, shrunk)
        )

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
                (`relative_stderr`) is below it, once at least `MIN_STEPS`
                steps ran. A value <= 0 never stops.
            limit: optional int, the stream's end: masks from index `limit`
                on count for nothing (see `_add_step`).

        Returns:
            `RiseSums` with `weighted` of shape `(B · T, H · W)`.
        """
        images = self.inputs.image(inputs)
        batch, height, width, _ = images.shape
        per_step = self.masks_per_step(batch)
        full_steps, tail = divmod(count, per_step)
        start = tf.cast(start, tf.int64)
        regression = self.regression((height, width))
        initial = RiseSums.zeros(
            batch * num_targets,
            height * width,
            regression.num_features if regression else 0,
            height * width if regression else 0,
            regression.num_smooth_pixels if regression else 0,
        )

        def converged(step, sums):
            if tolerance is None:
                return tf.constant(False)
            return tf.cond(
                tf.logical_and(tolerance > 0, step >= self.MIN_STEPS),
                lambda: tf.reduce_all(
                    self.relative_stderr(sums, (height, width)) < tolerance
                ),
                lambda: tf.constant(False),
            )

        def keep_going(step, sums):
            return tf.logical_and(
                step < full_steps, tf.logical_not(converged(step, sums))
            )

        # The score regression's fit for the standard error, made from the
        # steps before: refitted after steps 1, 2, 4, 8, ... only, as a fit
        # costs about as much as the rest of a step's bookkeeping.
        control = regression.control(initial) if regression else ()

        def refit(step, sums, control):
            if regression is None:
                return control
            due = tf.logical_and(
                step > 0, tf.bitwise.bitwise_and(step, step - 1) == 0
            )
            return tf.cond(due, lambda: regression.control(sums), lambda: control)

        def fit_of(sums, control):
            if regression is None:
                return None
            return (*control, tf.cast(sums.count > 0, tf.float32))

        def masks_of(step):
            return self._masks(start + step * per_step, per_step, (height, width))

        def body(step, sums, control, batch):
            control = refit(step, sums, control)
            # The next step's masks are made while the model runs on this
            # step's batch: nothing links the two, so the executor overlaps
            # them (on two CPU cores, 3-4% less time at 64x64). Only masks
            # (and their features) are made ahead, not the masked batch, to
            # keep memory low.
            upcoming = tf.cond(
                step + 1 < full_steps, lambda: masks_of(step + 1), lambda: batch
            )
            sums = self._add_step(
                sums,
                inputs,
                score,
                batch,
                start + step * per_step,
                targets,
                limit,
                fit_of(sums, control),
            )
            return step + 1, sums, control, upcoming

        step, sums = tf.constant(0, tf.int64), initial
        if full_steps:
            step, sums, control, _ = tf.while_loop(
                lambda step, sums, *_: keep_going(step, sums),
                body,
                (step, sums, control, masks_of(step)),
                parallel_iterations=self.steps_in_flight(images, per_step),
            )
        if tail:

            def with_tail():
                tail_start = start + full_steps * per_step
                return self._add_step(
                    sums,
                    inputs,
                    score,
                    self._masks(tail_start, tail, (height, width)),
                    tail_start,
                    targets,
                    limit,
                    fit_of(sums, refit(step, sums, control)),
                )

            if tolerance is None:
                sums = with_tail()
            else:
                sums = tf.cond(converged(step, sums), lambda: sums, with_tail)
        return sums

    def _center(self, sums):
        """The control-variate constant per row: the mean score, or 0."""
        if not self.config.centered_scores:
            return tf.zeros_like(sums.score_sum)[:, None]
        return (sums.score_sum / sums.count)[:, None]

    def saliency_rows(self, sums, image_size):
        """The maps, one row per (image, target): float32 `(B · T, H · W)`.

        Plain RISE: `Σ score · mask / (N · keep_prob)`. With centred scores,
        `c + Σ (score - c) · mask / (N · keep_prob)`, with `c` the mean
        score: the same expected map, without the noise that the random
        total of the masks (`Σ mask`, which varies from pixel to pixel)
        carries into it. With the score regression, see
        `keras_rise.regression`.

        Args:
            sums: `RiseSums`.
            image_size: `(height, width)` of the maps.
        """
        regression = self.regression(image_size)
        if regression is not None:
            return regression.saliency_rows(sums)
        center = self._center(sums)
        scale = sums.count * self.config.keep_prob
        return (sums.weighted - center * sums.mask_sum[None]) / scale + center

    def stderr_rows(self, sums, image_size):
        """Each pixel's standard error, `(B · T, H · W)`, by batch means.

        Each loop step is an independent sample of its `k_s` masks (pairs
        of complementary masks are never split), so the per-mask variance
        of `score · mask` is estimated from the spread between steps.
        NaN with fewer than two steps. With stratified masks, masks in a
        block are negatively correlated and the estimate errs on the large
        side.

        With the score regression, the spread is that of each step's own
        estimate made with the fit of earlier steps
        (`ScoreRegression.step_estimate`), over the steps after the first.
        Early fits, made from few masks, are worse than the final one, so
        this estimate too errs on the large side.
        """
        if self.regression(image_size) is not None:
            return _batch_means_stderr(
                sums.control_sum,
                sums.control_sq,
                sums.control_count,
                sums.control_steps,
                sums.count,
                self.config.keep_prob,
            )
        center = self._center(sums)
        centred = sums.weighted - center * sums.mask_sum[None]
        squares = (
            sums.weighted_sq
            - 2.0 * center * sums.weighted_mask
            + tf.square(center) * sums.mask_sq[None]
        )
        return _batch_means_stderr(
            centred, squares, sums.count, sums.steps, sums.count, self.config.keep_prob
        )

    def relative_stderr(self, sums, image_size):
        """Per row, the root-mean-square standard error over the map's
        standard deviation across pixels: `(B · T,)`."""
        maps = self.saliency_rows(sums, image_size)
        stderr = self.stderr_rows(sums, image_size)
        noise = tf.sqrt(tf.reduce_mean(tf.square(stderr), axis=1))
        spread = tf.math.reduce_std(maps, axis=1)
        return noise / tf.maximum(spread, 1e-12)

    def _as_images(self, rows, images_shape):
        """Rows `(B · T, H · W)` as maps `(B, H, W, T)`."""
        batch, height, width, _ = images_shape
        maps = tf.reshape(rows, [batch, -1, height, width])
        return tf.transpose(maps, [0, 2, 3, 1])

    def saliency_from_sums(self, sums, images_shape):
        """Normalises sums into maps (see `saliency_rows`): `(B, H, W, T)`."""
        rows = self.saliency_rows(sums, images_shape[1:3])
        return self._as_images(rows, images_shape)

    def explain(self, inputs, score, targets=None, tolerance=None, replica=None):
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

        Returns:
            A `RiseResult`; maps have a last axis of size `T` when the score
            returns `(batch, T)`.
        """
        if self._clone is not None:
            self._clone.sync()  # the current weights of a model in training
        outputs = _float_outputs(self.inputs.call(inputs))
        if targets is None:
            # Plain TensorFlow code, like `Score.__call__`: not for AutoGraph.
            targets = tf.autograph.experimental.do_not_convert(score.targets_of)(outputs)
        unmasked = tf.cast(score(outputs, targets), tf.float32)
        one_target = unmasked.shape.rank == 1
        num_targets = 1 if one_target else unmasked.shape[-1]

        def explain_batch(inputs, targets):
            images = self.inputs.image(inputs)
            if replica is None:
                sums = self.sums(
                    inputs, score, targets, 0, self.config.num_masks, num_targets, tolerance
                )
            else:
                share = -(-self.config.num_masks // replica.num_replicas)
                start = tf.cast(replica.replica_id, tf.int64) * share
                sums = self.sums(
                    inputs, score, targets, start, share, num_targets, limit=self.config.num_masks
                )
                sums = replica.all_reduce(sums)
            return (
                self.saliency_from_sums(sums, images.shape),
                self._as_images(
                    self.stderr_rows(sums, images.shape[1:3]), images.shape
                ),
                tf.fill([images.shape[0]], tf.cast(sums.count, tf.int32)),
            )

        images = self.inputs.image(inputs)
        if images.shape[0] is not None:
            saliency, stderr, used = explain_batch(inputs, targets)
        else:
            height, width = images.shape[1:3]
            map_spec = tf.TensorSpec([height, width, num_targets], tf.float32)

            def explain_one(example):
                inputs, targets = tf.nest.map_structure(lambda x: x[None], example)
                saliency, stderr, used = explain_batch(inputs, targets)
                return saliency[0], stderr[0], used[0]

            saliency, stderr, used = tf.map_fn(
                explain_one,
                (inputs, targets),
                fn_output_signature=(map_spec, map_spec, tf.int32),
                parallel_iterations=1,
            )
        if one_target:
            saliency, stderr = saliency[..., 0], stderr[..., 0]
        return RiseResult(saliency, targets, unmasked, stderr, used)
