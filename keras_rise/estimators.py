"""Estimators: how the RISE loop's sums become a map and its standard error.

Every estimator estimates the same expected map, `E[score · mask] /
keep_prob`, from sums over masks, and owns those sums:

- `PaperEstimator` — the paper's `Σ score · mask / (N · keep_prob)`, or with
  `centered=True` the same with the mean score subtracted and added back;
  its sums are `RiseSums`.
- `RegressionEstimator` — a regression control variate
  (`keras_rise.regression`); its sums are `RegressionSums`.

All sums are plain sums over masks or loop steps, so the sums of disjoint
mask ranges (loop steps, replicas, workers) merge exactly by addition:
`merge(a, b)` is `tf.nest.map_structure(tf.add, a, b)`. The loop
(`keras_rise.engine`) knows no estimator's insides; per step it asks for

1. `mask_data(factors)`: what the estimator needs of each mask besides its
   factors, made with the masks, ahead of the model;
2. `step_sums(factors, data, scores, valid, sums, state)`: the step's sums;
3. `update_state(step, sums, state)`: anything carried from step to step
   (the regression's fit of the earlier steps, for its standard error);

and at the end `saliency_rows(sums)` and `stderr_rows(sums)`.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_rise import regression as regression_lib


def merge(first, second):
    """The sums over the union of two disjoint mask ranges."""
    return tf.nest.map_structure(tf.add, first, second)


class RiseSums(NamedTuple):
    """The sums of `PaperEstimator`; add two to merge them (`merge`).

    With `T` targets per image and `B` images, a "row" is one (image,
    target) pair.

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

    `weighted_sq`, `weighted_mask` and `mask_sq` give the map's standard
    error by the method of batch means: every step is an independent sample
    of `k_s` masks.
    """

    weighted: tf.Tensor
    count: tf.Tensor
    mask_sum: tf.Tensor
    score_sum: tf.Tensor
    steps: tf.Tensor
    weighted_sq: tf.Tensor
    weighted_mask: tf.Tensor
    mask_sq: tf.Tensor

    def merge(self, other):
        """Returns the sums over the union of two disjoint mask ranges."""
        return merge(self, other)

    @classmethod
    def zeros(cls, rows, pixels):
        """Empty sums for `rows` (image, target) rows of `pixels` pixels."""
        return cls(
            weighted=tf.zeros(tf.stack([rows, pixels])),
            count=tf.constant(0.0),
            mask_sum=tf.zeros([pixels]),
            score_sum=tf.zeros(tf.stack([rows])),
            steps=tf.constant(0.0),
            weighted_sq=tf.zeros(tf.stack([rows, pixels])),
            weighted_mask=tf.zeros(tf.stack([rows, pixels])),
            mask_sq=tf.zeros([pixels]),
        )

    @classmethod
    def of_step(cls, family, factors, scores, valid=None):
        """The sums of one step.

        Args:
            family: the mask family (e.g. `keras_rise.masks.ImageMasks`, `GridMasks`),
                which sums its masks weighted.
            factors: the factors of the step's `k` masks, from `family`.
            scores: float32 `(B · T, k)`.
            valid: optional float32 `(k,)` of 1s and 0s: masks marked 0 (past
                the end of a range split across replicas) count for nothing.
        """
        count = tf.nest.flatten(factors)[0].shape[0]
        if valid is None:
            valid = tf.ones([count])
        size = tf.reduce_sum(valid)
        # One weighted sum of the masks gives both sums of them: the weights
        # are the scores and a row of ones (the mask total); masks not
        # valid get a weight of zero.
        scores = scores * valid[None, :]
        both = family.weighted_sum(factors, tf.concat([scores, valid[None, :]], 0))
        rows = tf.shape(scores)[0]
        weighted, mask_sum = both[:rows], both[rows]
        per_mask = 1.0 / tf.maximum(size, 1.0)
        return cls(
            weighted=weighted,
            count=size,
            mask_sum=mask_sum,
            score_sum=tf.reduce_sum(scores, axis=1),
            steps=tf.minimum(size, 1.0),
            weighted_sq=tf.square(weighted) * per_mask,
            weighted_mask=weighted * mask_sum * per_mask,
            mask_sq=tf.square(mask_sum) * per_mask,
        )


class RegressionSums(NamedTuple):
    """The sums of `RegressionEstimator`; add two to merge them (`merge`).

    Attributes:
        masks: the `RiseSums` of the same masks (`weighted`, `count`,
            `mask_sum` and `score_sum` are also read through this object).
        feature_sum: float32 `(F,)`, Σ_n φ_n, where `φ_n` are the features
            of mask `n` (see `keras_rise.regression`).
        feature_gram: float32 `(F, F)`, Σ_n φ_n φ_nᵀ.
        feature_score: float32 `(B · T, F)`, Σ_n score_n · φ_n.
        feature_mask: float32 `(F, S)`, Σ_n φ_n · shrink(mask_n), the
            masks averaged over `S` blocks (`ScoreRegression.shrink`).
        control_sum: float32 `(B · T, H · W)`, Σ_steps E_s, where `E_s` is a
            step's own estimate with the fit of the steps before it
            (`ScoreRegression.step_estimate`); steps with no earlier mask
            are left out.
        control_sq: float32, `control_sum`'s shape, Σ_steps E_s² / k_s.
        control_count: float32 scalar, masks in those steps.
        control_steps: float32 scalar, number of those steps.
    """

    masks: RiseSums
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
        return merge(self, other)

    @property
    def weighted(self):
        return self.masks.weighted

    @property
    def count(self):
        return self.masks.count

    @property
    def mask_sum(self):
        return self.masks.mask_sum

    @property
    def score_sum(self):
        return self.masks.score_sum


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


def relative_stderr(saliency_rows, stderr_rows):
    """Per map, the root-mean-square standard error of its pixels over the
    map's standard deviation across pixels: the rule a tolerance stops by.

    Args:
        saliency_rows, stderr_rows: float32 `(maps, pixels)`.

    Returns:
        float32 `(maps,)`; NaN where the standard error is unknown.
    """
    noise = tf.sqrt(tf.reduce_mean(tf.square(stderr_rows), axis=1))
    spread = tf.math.reduce_std(saliency_rows, axis=1)
    return noise / tf.maximum(spread, 1e-12)


class Estimator:
    """What every estimator offers the loop; see the module docstring."""

    def mask_data(self, factors):
        """Per-mask data besides the factors, made with the masks: `()` here."""
        del factors
        return ()

    def initial_state(self, sums):
        """What is carried through the loop, before any step: `()` here."""
        del sums
        return ()

    def update_state(self, step, sums, state):
        """The state for loop step `step` (int64 scalar), given the sums so far."""
        del step, sums
        return state

    def relative_stderr(self, sums):
        """Per row, the root-mean-square standard error over the map's
        standard deviation across pixels: `(B · T,)` (see
        `relative_stderr` of the module)."""
        return relative_stderr(self.saliency_rows(sums), self.stderr_rows(sums))


class PaperEstimator(Estimator):
    """The paper's estimator, or with `centered` its centred variant.

    Plain RISE: `Σ score · mask / (N · keep_prob)`. Centred:
    `c + Σ (score - c) · mask / (N · keep_prob)`, with `c` the mean score:
    the same expected map, without the noise that the random total of the
    masks (`Σ mask`, which varies from pixel to pixel) carries into it.

    Args:
        family: the mask family (e.g. `keras_rise.masks.ImageMasks`, `GridMasks`).
        centered: bool, subtract the mean score. Defaults to `False`.
    """

    def __init__(self, family, centered=False):
        self.family = family
        self.keep_prob = family.keep_prob
        self.centered = centered

    def zeros(self, rows):
        """Empty `RiseSums` for `rows` rows of maps."""
        return RiseSums.zeros(rows, self.family.num_pixels)

    def step_sums(self, factors, data, scores, valid, sums, state):
        """The `RiseSums` of one step (`data`, `sums` and `state` unused)."""
        del data, sums, state
        return RiseSums.of_step(self.family, factors, scores, valid)

    def _center(self, sums):
        """The control-variate constant per row: the mean score, or 0."""
        if not self.centered:
            return tf.zeros_like(sums.score_sum)[:, None]
        return (sums.score_sum / sums.count)[:, None]

    def saliency_rows(self, sums):
        """The maps, one row per (image, target): float32 `(B · T, H · W)`."""
        center = self._center(sums)
        scale = sums.count * self.keep_prob
        return (sums.weighted - center * sums.mask_sum[None]) / scale + center

    def stderr_rows(self, sums):
        """Each pixel's standard error, `(B · T, H · W)`, by batch means.

        Each loop step is an independent sample of its `k_s` masks (pairs
        of complementary masks are never split), so the per-mask variance
        of `score · mask` is estimated from the spread between steps.
        NaN with fewer than two steps. With stratified masks, masks in a
        block are negatively correlated and the estimate errs on the large
        side.
        """
        center = self._center(sums)
        centred = sums.weighted - center * sums.mask_sum[None]
        squares = (
            sums.weighted_sq
            - 2.0 * center * sums.weighted_mask
            + tf.square(center) * sums.mask_sq[None]
        )
        return _batch_means_stderr(
            centred, squares, sums.count, sums.steps, sums.count, self.keep_prob
        )


class RegressionEstimator(Estimator):
    """The regression control variate of `keras_rise.regression`.

    Args:
        family: the mask family, a `keras_rise.masks.GridMasks`: the
            regression's closed form is that of its masks, on any axes.
    """

    def __init__(self, family):
        self.family = family
        self.keep_prob = family.keep_prob
        self.regression = regression_lib.ScoreRegression(
            family.spatial_shape, family.grid_size, family.keep_prob, family.binary
        )

    def zeros(self, rows):
        """Empty `RegressionSums` for `rows` rows of maps."""
        pixels = self.family.num_pixels
        features = self.regression.num_features
        return RegressionSums(
            masks=RiseSums.zeros(rows, pixels),
            feature_sum=tf.zeros([features]),
            feature_gram=tf.zeros([features, features]),
            feature_score=tf.zeros(tf.stack([rows, features])),
            feature_mask=tf.zeros([features, self.regression.num_smooth_pixels]),
            control_sum=tf.zeros(tf.stack([rows, pixels])),
            control_sq=tf.zeros(tf.stack([rows, pixels])),
            control_count=tf.constant(0.0),
            control_steps=tf.constant(0.0),
        )

    def mask_data(self, factors):
        """The masks' features `(k, F)` and block averages `(k, S)`, from their
        factors rather than the masks themselves."""
        return (
            self.regression.factor_features(factors),
            self.regression.factor_shrink(factors),
        )

    def initial_state(self, sums):
        """The fit of no masks: `(center, beta, expected_part)`."""
        return self.regression.control(sums)

    def update_state(self, step, sums, state):
        """The fit of the steps before, for the standard error.

        Refitted after steps 1, 2, 4, 8, ... only, as a fit costs about as
        much as the rest of a step's bookkeeping.
        """
        due = tf.logical_and(step > 0, tf.bitwise.bitwise_and(step, step - 1) == 0)
        return tf.cond(due, lambda: self.regression.control(sums), lambda: state)

    def step_sums(self, factors, data, scores, valid, sums, state):
        """The `RegressionSums` of one step.

        Args:
            factors: `MaskFactors` of the step's `k` masks.
            data: `(features (k, F), shrunk (k, S))` from `mask_data`.
            scores: float32 `(B · T, k)`.
            valid: optional float32 `(k,)`, see `RiseSums.of_step`.
            sums: the sums of the steps before (to know whether any).
            state: the fit of the steps before (`update_state`); this step's
                own estimate with it enters the `control_*` sums when there
                were earlier masks.
        """
        features, shrunk = data
        masks = RiseSums.of_step(self.family, factors, scores, valid)
        if valid is None:
            valid = tf.ones([features.shape[0]])
        scores = scores * valid[None, :]
        features = features * valid[:, None]
        center, beta, expected = state
        # The regression's sums over masks are taken on their block averages
        # (`shrunk`: a few hundred pixels, not H · W): of the features, a row
        # of ones and each row's fitted score under the earlier steps' fit.
        left = [
            tf.transpose(features),
            valid[None, :],
            tf.matmul(beta, features, transpose_b=True),
        ]
        smooth = tf.matmul(tf.concat(left, 0), shrunk)
        num_features = features.shape[1]
        estimate = self.regression.step_estimate(
            masks, smooth[num_features + 1 :], smooth[num_features], state
        )
        weight = tf.cast(sums.count > 0, tf.float32)
        per_mask = 1.0 / tf.maximum(masks.count, 1.0)
        return RegressionSums(
            masks=masks,
            feature_sum=tf.reduce_sum(features, axis=0),
            feature_gram=tf.matmul(features, features, transpose_a=True),
            feature_score=tf.matmul(scores, features),
            feature_mask=smooth[:num_features],
            control_sum=weight * estimate,
            control_sq=weight * tf.square(estimate) * per_mask,
            control_count=weight * masks.count,
            control_steps=weight * tf.minimum(masks.count, 1.0),
        )

    def saliency_rows(self, sums):
        """The maps, one row per (image, target): float32 `(B · T, H · W)`."""
        return self.regression.saliency_rows(sums)

    def stderr_rows(self, sums):
        """Each pixel's standard error, `(B · T, H · W)`.

        The spread is that of each step's own estimate made with the fit of
        earlier steps (`ScoreRegression.step_estimate`), over the steps
        after the first. Early fits, made from few masks, are worse than the
        final one, so this estimate errs on the large side.
        """
        return _batch_means_stderr(
            sums.control_sum,
            sums.control_sq,
            sums.control_count,
            sums.control_steps,
            sums.count,
            self.keep_prob,
        )


def for_config(config, family):
    """The estimator a `keras_rise.RiseConfig` asks for, over a mask family."""
    if config.score_regression:
        return RegressionEstimator(family)
    return PaperEstimator(family, config.centered_scores)
