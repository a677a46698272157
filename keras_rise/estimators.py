"""Estimators: how the RISE loop's sums become a map and its standard error.

Every estimator estimates the same expected map, `E[score · mask] /
keep_prob`, from sums over masks, and owns those sums:

- `PaperEstimator` — the paper's `Σ score · mask / (N · keep_prob)`, or with
  `centered=True` the same with the mean score subtracted and added back;
  its sums are `RiseSums`.
- `RegressionEstimator` — a regression control variate
  (`keras_rise.regression`); its sums are `RegressionSums`.

All sums are plain sums over masks or over "units" of masks, so the sums of
disjoint mask ranges (loop steps, replicas, workers) merge exactly by
addition: `merge(a, b)` is `tf.nest.map_structure(tf.add, a, b)`.

A unit is the group of consecutive masks that the standard error treats as
one independent sample (method of batch means): a loop step, or for masks
drawn in balanced runs (`GridMasks.run_length`: the orthogonal and
stratified samplings) a whole run, whose masks balance each other and are
not independent. The sums of the unit in progress are kept apart
(`unit_*` fields) until `close_unit()` adds its square to the spread; the
loop closes a unit at every run boundary and at the end of its range, so
the sums it returns hold closed units only and merge.

The loop (`keras_rise.engine`) knows no estimator's insides; per step it
asks for

1. `mask_data(factors)`: what the estimator needs of each mask besides its
   factors, made with the masks, ahead of the model;
2. `step_sums(factors, data, scores, valid, sums, state)`: the step's sums;
3. `state_update_due(units)`: whether the state carried from unit to unit
   (the regression's fit of the earlier units, for its standard error) is
   replaced by `update_state(sums)` at the start of the unit that follows
   `units` closed units. The loop counts `units` itself, in int32 ops on
   the host, so that deciding never waits for a GPU, or as a Python int
   where it is known before the graph runs (then a Python bool answers);

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
        units: float32 scalar, number of closed units (see the module
            docstring: loop steps, or whole runs of balanced masks).
        weighted_sq: float32 `(B · T, H · W)`, Σ_units W_u² / k_u, where
            `W_u` is a closed unit's `weighted` and `k_u` its number of masks.
        weighted_mask: float32 `(B · T, H · W)`, Σ_units W_u · M_u / k_u,
            `M_u` being a unit's `mask_sum`.
        mask_sq: float32 `(H · W,)`, Σ_units M_u² / k_u.
        unit_weighted, unit_mask, unit_count: `W_u`, `M_u` and `k_u` of the
            unit in progress (zero once it is closed, `close_unit`).

    `weighted_sq`, `weighted_mask` and `mask_sq` give the map's standard
    error by the method of batch means: every unit is an independent sample
    of `k_u` masks.
    """

    weighted: tf.Tensor
    count: tf.Tensor
    mask_sum: tf.Tensor
    score_sum: tf.Tensor
    units: tf.Tensor
    weighted_sq: tf.Tensor
    weighted_mask: tf.Tensor
    mask_sq: tf.Tensor
    unit_weighted: tf.Tensor
    unit_mask: tf.Tensor
    unit_count: tf.Tensor

    def merge(self, other):
        """Returns the sums over the union of two disjoint mask ranges."""
        return merge(self, other)

    def close_unit(self, close=True):
        """Returns the sums with the unit in progress closed: its square
        added to the spread and its `unit_*` fields zeroed. A unit of no
        masks counts for nothing.

        Args:
            close: bool or boolean scalar tensor; `False` returns the sums
                as they are (without a branch in the graph).
        """
        closing = tf.cast(close, tf.float32)
        keep = 1.0 - closing
        per_mask = closing / tf.maximum(self.unit_count, 1.0)
        weighted, mask = self.unit_weighted, self.unit_mask
        return self._replace(
            units=self.units + closing * tf.minimum(self.unit_count, 1.0),
            weighted_sq=self.weighted_sq + tf.square(weighted) * per_mask,
            weighted_mask=self.weighted_mask + weighted * mask * per_mask,
            mask_sq=self.mask_sq + tf.square(mask) * per_mask,
            unit_weighted=weighted * keep,
            unit_mask=mask * keep,
            unit_count=self.unit_count * keep,
        )

    @classmethod
    def zeros(cls, rows, pixels):
        """Empty sums for `rows` (image, target) rows of `pixels` pixels."""
        return cls(
            weighted=tf.zeros(tf.stack([rows, pixels])),
            count=tf.constant(0.0),
            mask_sum=tf.zeros([pixels]),
            score_sum=tf.zeros(tf.stack([rows])),
            units=tf.constant(0.0),
            weighted_sq=tf.zeros(tf.stack([rows, pixels])),
            weighted_mask=tf.zeros(tf.stack([rows, pixels])),
            mask_sq=tf.zeros([pixels]),
            unit_weighted=tf.zeros(tf.stack([rows, pixels])),
            unit_mask=tf.zeros([pixels]),
            unit_count=tf.constant(0.0),
        )

    @classmethod
    def of_step(cls, family, factors, scores, valid=None):
        """The sums of one step, all in the unit in progress.

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
        return cls(
            weighted=weighted,
            count=size,
            mask_sum=mask_sum,
            score_sum=tf.reduce_sum(scores, axis=1),
            units=tf.constant(0.0),
            weighted_sq=tf.zeros_like(weighted),
            weighted_mask=tf.zeros_like(weighted),
            mask_sq=tf.zeros_like(mask_sum),
            unit_weighted=weighted,
            unit_mask=mask_sum,
            unit_count=size,
        )

    def closed(self):
        """`(weighted, mask_sum, count)` over the closed units only."""
        return (
            self.weighted - self.unit_weighted,
            self.mask_sum - self.unit_mask,
            self.count - self.unit_count,
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
        control_sum: float32 `(B · T, H · W)`, Σ_units E_u over closed
            units, where `E_u` is a unit's own estimate with the fit of the
            units before it (`ScoreRegression.step_estimate`, summed over
            the unit's steps); units with no earlier mask are left out.
        control_sq: float32, `control_sum`'s shape, Σ_units E_u² / k_u.
        control_count: float32 scalar, masks in those units.
        control_units: float32 scalar, number of those units.
        unit_control, unit_control_count: `E_u` and `k_u` of the unit in
            progress (zero when it has no earlier fit, or once closed).
    """

    masks: RiseSums
    feature_sum: tf.Tensor
    feature_gram: tf.Tensor
    feature_score: tf.Tensor
    feature_mask: tf.Tensor
    control_sum: tf.Tensor
    control_sq: tf.Tensor
    control_count: tf.Tensor
    control_units: tf.Tensor
    unit_control: tf.Tensor
    unit_control_count: tf.Tensor

    def merge(self, other):
        """Returns the sums over the union of two disjoint mask ranges."""
        return merge(self, other)

    def close_unit(self, close=True):
        """Returns the sums with the unit in progress closed (see
        `RiseSums.close_unit`), for the masks and for the control sums."""
        closing = tf.cast(close, tf.float32)
        keep = 1.0 - closing
        estimate, size = self.unit_control, self.unit_control_count
        return self._replace(
            masks=self.masks.close_unit(close),
            control_sum=self.control_sum + closing * estimate,
            control_sq=self.control_sq
            + closing * tf.square(estimate) / tf.maximum(size, 1.0),
            control_count=self.control_count + closing * size,
            control_units=self.control_units + closing * tf.minimum(size, 1.0),
            unit_control=estimate * keep,
            unit_control_count=size * keep,
        )

    @property
    def units(self):
        """Closed units (`RiseSums.units`)."""
        return self.masks.units

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


def _batch_means_stderr(total, squares, count, units, num_masks, keep_prob):
    """Per-pixel standard error of a map by the method of batch means.

    Args:
        total: Σ_u X_u over the units used, `X_u` a unit's sum of `k_u`
            per-mask values.
        squares: Σ_u X_u² / k_u over the same units.
        count: Σ_u k_u.
        units: number of units used.
        num_masks: masks the map averages.
        keep_prob: the map's normalisation.

    Returns:
        `sqrt(per-mask variance / num_masks) / keep_prob`; NaN with fewer
        than two units.
    """
    spread = tf.maximum(squares - tf.square(total) / tf.maximum(count, 1.0), 0.0)
    variance = spread / (units - 1.0)  # per mask
    variance = tf.where(units > 1.0, variance, float("nan"))
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

    def state_update_due(self, units):
        """Whether `update_state` replaces the state at the start of the unit
        after `units` closed units (an int32 scalar tensor, on the host, or
        an int): a boolean tensor (a bool for an int), or `None` for never
        (here)."""
        del units
        return None

    def update_state(self, sums):
        """The new state, from the sums of the closed units so far."""
        return self.initial_state(sums)

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

        Each closed unit (a loop step, or a whole run of balanced masks;
        pairs of complementary masks are never split) is an independent
        sample of its `k_u` masks, so the per-mask variance of
        `score · mask` is estimated from the spread between units. NaN with
        fewer than two units.
        """
        center = self._center(sums)
        weighted, mask_sum, count = sums.closed()
        centred = weighted - center * mask_sum[None]
        squares = (
            sums.weighted_sq
            - 2.0 * center * sums.weighted_mask
            + tf.square(center) * sums.mask_sq[None]
        )
        return _batch_means_stderr(
            centred, squares, count, sums.units, sums.count, self.keep_prob
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
            control_units=tf.constant(0.0),
            unit_control=tf.zeros(tf.stack([rows, pixels])),
            unit_control_count=tf.constant(0.0),
        )

    def mask_data(self, factors):
        """The masks' features `(k, F)` and block averages `(k, S)`, from their
        factors rather than the masks themselves."""
        return (
            self.regression.factor_features(factors),
            self.regression.factor_shrink(factors),
        )

    def initial_state(self, sums):
        """The fit of no masks: `(center, beta, expected_part, count)`."""
        return self.update_state(sums)

    def state_update_due(self, units):
        """Refitted at the start of a unit when 1, 2, 4, 8, ... units are
        closed only, as a fit costs about as much as the rest of a step's
        bookkeeping; the fit stays the same through a unit, so a unit's
        estimate is its steps' sum. A Python bool for an int `units`."""
        if isinstance(units, int):
            return units > 0 and units & (units - 1) == 0
        return tf.logical_and(units > 0, tf.bitwise.bitwise_and(units, units - 1) == 0)

    def update_state(self, sums):
        """The fit of the units before, for the standard error:
        `(center, beta, expected_part, count)`."""
        return (*self.regression.control(sums), sums.count)

    def step_sums(self, factors, data, scores, valid, sums, state):
        """The `RegressionSums` of one step.

        Args:
            factors: `MaskFactors` of the step's `k` masks.
            data: `(features (k, F), shrunk (k, S))` from `mask_data`.
            scores: float32 `(B · T, k)`.
            valid: optional float32 `(k,)`, see `RiseSums.of_step`.
            sums: the sums of the steps before (unused).
            state: the fit of the units before (`update_state`); this step's
                own estimate with it enters the unit's control sums when
                that fit had masks.
        """
        del sums
        features, shrunk = data
        masks = RiseSums.of_step(self.family, factors, scores, valid)
        if valid is None:
            valid = tf.ones([features.shape[0]])
        scores = scores * valid[None, :]
        features = features * valid[:, None]
        center, beta, expected, fitted_count = state
        control = (center, beta, expected)
        # The regression's sums over masks are taken on their block averages
        # (`shrunk`: a few hundred pixels, not H · W): of the features, a row
        # of ones and each row's fitted score under the earlier units' fit.
        left = [
            tf.transpose(features),
            valid[None, :],
            tf.matmul(beta, features, transpose_b=True),
        ]
        smooth = tf.matmul(tf.concat(left, 0), shrunk)
        num_features = features.shape[1]
        estimate = self.regression.step_estimate(
            masks, smooth[num_features + 1 :], smooth[num_features], control
        )
        weight = tf.cast(fitted_count > 0, tf.float32)
        zeros = tf.constant(0.0)
        return RegressionSums(
            masks=masks,
            feature_sum=tf.reduce_sum(features, axis=0),
            feature_gram=tf.matmul(features, features, transpose_a=True),
            feature_score=tf.matmul(scores, features),
            feature_mask=smooth[:num_features],
            control_sum=tf.zeros_like(estimate),
            control_sq=tf.zeros_like(estimate),
            control_count=zeros,
            control_units=zeros,
            unit_control=weight * estimate,
            unit_control_count=weight * masks.count,
        )

    def saliency_rows(self, sums):
        """The maps, one row per (image, target): float32 `(B · T, H · W)`."""
        return self.regression.saliency_rows(sums)

    def stderr_rows(self, sums):
        """Each pixel's standard error, `(B · T, H · W)`.

        The spread is that of each closed unit's own estimate made with the
        fit of earlier units (`ScoreRegression.step_estimate`), over the
        units after the first. Early fits, made from few masks, are worse
        than the final one, so this estimate errs on the large side.
        """
        return _batch_means_stderr(
            sums.control_sum,
            sums.control_sq,
            sums.control_count,
            sums.control_units,
            sums.count,
            self.keep_prob,
        )


def for_config(config, family):
    """The estimator a `keras_rise.RiseConfig` asks for, over a mask family."""
    if config.score_regression:
        return RegressionEstimator(family)
    return PaperEstimator(family, config.centered_scores)
