"""A regression control variate for RISE: the linear part of the score, exactly.

RISE estimates `E[score · mask(x)] / keep_prob` by Monte Carlo. Much of the
score's variation from mask to mask is nearly linear in the mask: covering a
region lowers the score by about the same amount whatever else is covered.
`ScoreRegression` fits each score linearly on a coarse copy of its mask
(`features`: the mask averaged over a small grid of blocks) and splits the
map in two:

    map(x) = c + P(E[(φ - keep_prob) · mask]ᵀ β)(x) / keep_prob
               + Σ_n [(score_n - c) · mask_n(x)
                      - βᵀ(φ_n - keep_prob) · (P mask_n)(x)] / (N · keep_prob)

The first line is computed exactly: for the paper's masks the covariance of
a pixel's mask value with a block average has a closed form (below), so
only the residual of the fit is left to Monte Carlo. On the bundled demo
model the fit explains 50-80 % of the score's variance and the map's
variance falls to about a quarter of plain RISE's.

`P` is a fixed linear smoothing: average over blocks of a quarter of a grid
cell (`shrink`), then interpolate linearly back to pixels (`grow`). Masks
are linear between grid cells, so `P mask` keeps nearly all of a mask (mean
error 0.01 at 224×224) and the fitted part can be summed over masks at a few
hundred pixels instead of `H · W` — for 100 features per mask, the bulk of
the regression's cost at full size. Whatever `P` is, the map's expectation
is unchanged, since the second line's `P` term is matched exactly in the
first; `P` costs only what it misses of the fitted part: measured on the
bundled demo model (`N = 1000`, 8 seeds), the variance ratio to plain RISE
went from 0.2318 (no smoothing) to 0.2320 at 64×64 (cells of 10 pixels,
2-pixel blocks), and from 0.3260 to 0.3264 at 224×224 (its images and masks
upsampled, 8-pixel blocks). Cells under 8 pixels get none (1-pixel blocks).

Every quantity the fit needs is a sum over masks (`RegressionSums`' `feature_*`
fields), so maps stay exactly mergeable across steps, replicas and workers
and do not depend on the batch size. `c` and `β` come from the whole stream,
which biases the map by O(1 / N) — small next to the noise (measured in
`benchmarks/efficiency.py`).

The closed form. A mask is `rows_d · grid · cols_eᵀ`, with `grid` the coin
flips and `rows_d`, `cols_e` the bilinear weights at vertical shift `d` and
horizontal shift `e`; the weights of each pixel sum to one, so
`E[mask(y) · mask(x)] = p² + p (1 - p) E_d[rows_d rows_dᵀ](y, x) ·
E_e[cols_e cols_eᵀ](y, x)`: the mask's covariance is separable, and so is
that of its block averages with any pixel. The same holds on any number of
axes (one factor per axis) and for the binary run masks of token sequences,
whose weights are 0 or 1 (`keras_rise.masks.axis_weights`): everything
below is a product over axes.
"""

import numpy as np
import tensorflow as tf

from keras_rise import masks as masks_lib
from keras_rise._tracing import instance_function

# Ridge on the fit, relative to the features' mean variance: keeps it stable
# when there are fewer masks than features (early loop steps, small N). It is
# `max(RIDGE, F / N)` for `F` features and `N` masks: a fit of 100 features
# from 128 masks is mostly noise in its smallest directions, and the
# stronger ridge there took 2-10% off the map's variance at N = 128 on the
# three models of `benchmarks/sampling_study.py` (none from N = 512 on).
RIDGE = 0.1

# Most features of a binary axis (token ids, a table's features): one per
# cell up to this many, blocks of neighbouring cells beyond. The fit's sums
# and solve grow with F²–F³: with a feature per cell of a 4096-wide vector,
# `explain` of one row (1000 masks, a one-layer model) took 2.4 s against
# 0.03 s with the grid; capped at 512, 0.10 s (1024 cells: 0.04 s, against
# 0.11 s uncapped). Blocks weaken the fit, never its expectation: on a linear
# score over 300 cells, r with the exact map at 1000 masks was 0.989 with a
# feature per cell and 0.975 with 256 blocks.
MAX_BINARY_FEATURES = 512

# Blocks per grid cell side of the smoothing `P` (see the module docstring):
# 2 blocks raised the variance 1% over none, 4 blocks 0.1%.
SMOOTHING_PER_CELL = 4


def feature_grid(image_size, grid_size, binary=False):
    """Blocks per axis of the coarse mask copy the scores are fitted on.

    1.5 blocks per grid cell on one or two axes, one per cell on three (343
    features for a 7×7×7 grid), never more than the axis' length: for token
    sequences with one cell per token, each token's bit is a feature, up to
    `MAX_BINARY_FEATURES` (blocks of neighbouring tokens beyond).

    Args:
        image_size: the masks' axes, e.g. `(height, width)`.
        grid_size: an int, a tuple per axis or `None`
            (`keras_rise.masks.grid_shape`).
        binary: bool, binary run masks (token ids), or one bool per axis.

    Returns:
        A tuple with one number of blocks per axis.
    """
    axes = masks_lib.axis_tables(tuple(image_size), grid_size, binary)
    per_cell = 1.0 if len(image_size) > 2 else 1.5
    return tuple(
        int(min(per_cell * axis.cells, size, MAX_BINARY_FEATURES if axis.binary else size))
        for size, axis in zip(image_size, axes)
    )


def smoothing_grid(image_size, grid_size, binary=False):
    """Blocks per axis of the smoothed masks the fitted part is summed at.

    Blocks of `cell // SMOOTHING_PER_CELL` positions (at least one): linear
    masks are linear between grid cells, so a few blocks per cell,
    interpolated back linearly, keep nearly all of a mask. Binary masks
    (runs) are not smoothed.

    Args:
        image_size: the masks' axes, e.g. `(height, width)`.
        grid_size: an int, a tuple per axis or `None`.
        binary: bool, binary run masks (token ids), or one bool per axis.

    Returns:
        A tuple with one number of blocks per axis; the axis' length (no
        smoothing) when a cell is shorter than `2 · SMOOTHING_PER_CELL` or
        the axis is binary.
    """
    sizes = []
    for axis in masks_lib.axis_tables(tuple(image_size), grid_size, binary):
        block = 1 if axis.binary else max(1, axis.cell // SMOOTHING_PER_CELL)
        sizes.append(-(-axis.size // block))
    return tuple(sizes)


def _block_bounds(blocks, size):
    """`(blocks, 2)` first and past-the-end positions of near-equal blocks."""
    parts = np.array_split(np.arange(size), blocks)
    return np.array([[part[0], part[-1] + 1] for part in parts])


def _block_average(blocks, size):
    """`(blocks, size)` matrix averaging `size` pixels into near-equal blocks."""
    matrix = np.zeros((blocks, size), np.float32)
    for block, (first, last) in enumerate(_block_bounds(blocks, size)):
        matrix[block, first:last] = 1.0 / (last - first)
    return matrix


def _block_interpolation(blocks, size):
    """`(size, blocks)` matrix interpolating block values back to pixels.

    Linear between the centres of `_block_average`'s blocks, constant beyond
    the outer ones; each row sums to one. With `blocks == size` it is the
    identity.
    """
    centers = [pixels.mean() for pixels in np.array_split(np.arange(size), blocks)]
    identity = np.eye(blocks)
    columns = [np.interp(np.arange(size), centers, row) for row in identity]
    return np.stack(columns, axis=1).astype(np.float32)


class ScoreRegression:
    """The control variate's constants for one shape of masks.

    Args:
        image_size: static shape of the masks' axes, e.g. `(height, width)`
            (any number of axes).
        grid_size: the masks' grid: an int, a tuple per axis or `None`
            (`keras_rise.masks.grid_shape`).
        keep_prob: float, the masks' keep probability.
        binary: bool, binary run masks (token sequences).

    Example:

    >>> regression = ScoreRegression((32, 32), grid_size=4, keep_prob=0.5)
    >>> masks = keras_rise.generate_masks(3, (32, 32), grid_size=4)
    >>> regression.features(tf.reshape(masks, [3, -1])).shape
    TensorShape([3, 36])
    """

    def __init__(self, image_size, grid_size, keep_prob, binary=False):
        self.image_size = tuple(image_size)
        blocks = feature_grid(self.image_size, grid_size, binary)
        self.smooth_size = smoothing_grid(self.image_size, grid_size, binary)
        self.feature_shape = blocks
        self.keep_prob = keep_prob
        self.num_features = int(np.prod(blocks))
        self.num_smooth_pixels = int(np.prod(self.smooth_size))
        axes = masks_lib.axis_tables(self.image_size, grid_size, binary)
        # Token ids: binary runs on their one axis, expanded for their
        # features (cheap); a binary axis among blended ones goes by tables.
        self.binary = len(axes) == 1 and axes[0].binary
        # NumPy constants, one per axis, so that one instance serves any
        # graph; `None` for the identity (binary masks: a feature per token,
        # no smoothing), which is skipped rather than multiplied.
        self._average = [
            _averaging(b, axis.size, axis.binary) for b, axis in zip(blocks, axes)
        ]
        self._shrink = [
            _averaging(b, axis.size, axis.binary) for b, axis in zip(self.smooth_size, axes)
        ]
        self._grow = [
            None if axis.binary else _block_interpolation(b, axis.size)
            for b, axis in zip(self.smooth_size, axes)
        ]
        # Each shift's weights, block-averaged: `(shifts, blocks, cells)`,
        # from running sums of the axis' weights (no `size²` table).
        self._blocks = [
            axis.block_averages(_block_bounds(b, n))
            for axis, b, n in zip(axes, blocks, self.image_size)
        ]
        # (Binary axes are not smoothed: their shrunk masks are the masks, a
        # block per position.)
        self._smooth = [
            None if self.binary else axis.block_averages(_block_bounds(b, n))
            for axis, b, n in zip(axes, self.smooth_size, self.image_size)
        ]
        # Cov(block average, shrunk mask(x)) = p(1-p) · ⊗_axes cov_axis, with
        # cov_axis the shift average of (averaged weights)(shrunk weights)ᵀ.
        self._cov = [
            _shift_covariance(blocks_d, smooth_d, axis)
            for blocks_d, smooth_d, axis in zip(self._blocks, self._smooth, axes)
        ]
        # The fit (`control`) is traced once per shape of the sums and
        # called as a function wherever a graph needs it (the state between
        # units, the final map).
        self.control = instance_function(self._control)

    def features(self, masks):
        """Block averages of flat masks `(k, pixels)`: float32 `(k, F)`."""
        return _separable(masks, self.image_size, self._average)

    def shrink(self, masks):
        """Flat masks `(k, pixels)` averaged over the smoothing's blocks.

        Returns:
            float32 `(k, S)`, `S = num_smooth_pixels`.
        """
        return _separable(masks, self.image_size, self._shrink)

    def grow(self, shrunk):
        """Interpolates `(rows, S)` block values back to `(rows, pixels)`.

        `grow(shrink(m))` is the smoothing `P` of the module docstring.
        """
        return _separable(shrunk, self.smooth_size, self._grow)

    def factor_features(self, factors):
        """Block averages of masks in factored form: float32 `(k, F)`.

        The same features as `features` of the expanded masks, to float
        rounding, without touching them: block averages of `rows @ grid @
        colsᵀ` are `(A rows) @ grid @ (A' cols)ᵀ`, with `A` and `A'` the
        averaging matrices, and `A rows` depends on the mask's vertical
        shift only (`A' cols` on the horizontal one): both come from tables
        made once, leaving grid-sized products per mask (one per axis).

        Binary masks (one axis of token ids) are cheap to expand, so their
        features are the expanded masks' block averages.

        Args:
            factors: `keras_rise.masks.MaskFactors` of `k` masks.
        """
        if self.binary:
            return self.features(_flat(masks_lib.expand(factors)))
        return _from_factors(factors, self._blocks)

    def factor_shrink(self, factors):
        """`shrink` of masks in factored form, as `factor_features`: `(k, S)`."""
        if self.binary:
            return self.shrink(_flat(masks_lib.expand(factors)))
        return _from_factors(factors, self._smooth)

    def expected_part(self, beta):
        """`E[(φ - p) · shrink(mask)]ᵀ β` for coefficients `(rows, F)`: `(rows, S)`."""
        variance = self.keep_prob * (1.0 - self.keep_prob)
        covariances = [cov.T for cov in self._cov]
        return variance * _separable(beta, self.feature_shape, covariances)

    def fit(self, sums):
        """Intercept `(rows, 1)` and coefficients `(rows, F)` from `RegressionSums`.

        Least squares of the scores on the features with a ridge of
        `max(RIDGE, F / N)` relative to the features' mean variance; zeros
        before any mask was summed.
        """
        count = tf.maximum(sums.count, 1.0)
        mean_features = sums.feature_sum / count
        mean_scores = sums.score_sum / count
        covariance = sums.feature_gram / count - (
            mean_features[:, None] * mean_features[None, :]
        )
        strength = tf.maximum(RIDGE, self.num_features / count)
        ridge = strength * tf.maximum(tf.linalg.trace(covariance), 1e-12) / self.num_features
        covariance += ridge * tf.eye(self.num_features)
        cross = sums.feature_score / count - mean_scores[:, None] * mean_features
        beta = tf.transpose(tf.linalg.cholesky_solve(
            tf.linalg.cholesky(covariance), tf.transpose(cross)
        ))
        return mean_scores[:, None], beta

    def _control(self, sums):
        """A fit ready for `step_estimate`: `(center, beta, expected_part)`."""
        center, beta = self.fit(sums)
        return center, beta, self.expected_part(beta)

    def residual_sum(self, weighted, mask_sum, fitted, shrunk_sum, center, beta):
        """The residual `Σ_n (score_n - c) · mask_n - βᵀ(φ_n - p) · P mask_n`, in two parts.

        Args:
            weighted: `Σ_n score_n · mask_n`, `(rows, H · W)`.
            mask_sum: `Σ_n mask_n`, `(H · W,)`.
            fitted: `Σ_n βᵀφ_n · shrink(mask_n)`, i.e. `β @ feature_mask`,
                `(rows, S)`.
            shrunk_sum: `Σ_n shrink(mask_n)`, `(S,)`.
            center: `(rows, 1)`, `c`.
            beta: `(rows, F)`, `β`.

        Returns:
            `(full, smooth)`: `Σ_n (score_n - c) · mask_n`, `(rows, H · W)`,
            and `Σ_n βᵀ(φ_n - p) · shrink(mask_n)`, `(rows, S)`; the residual
            is `full - grow(smooth)`.
        """
        offset = self.keep_prob * tf.reduce_sum(beta, axis=1, keepdims=True)
        return weighted - center * mask_sum[None], fitted - offset * shrunk_sum[None]

    def saliency_rows(self, sums):
        """The maps, one row per (image, target): float32 `(rows, H · W)`."""
        center, beta, expected = self.control(sums)
        full, smooth = self.residual_sum(
            sums.weighted,
            sums.mask_sum,
            tf.matmul(beta, sums.feature_mask),
            self.shrink(sums.mask_sum[None])[0],
            center,
            beta,
        )
        count = tf.maximum(sums.count, 1.0)
        smooth = expected - smooth / count
        return center + (full / count + self.grow(smooth)) / self.keep_prob

    def step_estimate(self, step_sums, fitted, shrunk_sum, control):
        """One step's unbiased estimate of `k · E[score · mask]`.

        With a `control` (from `control`) fitted on earlier steps only, the
        steps' estimates are uncorrelated: their spread gives the standard
        error.

        Args:
            step_sums: the step's own `RiseSums` (`weighted`, `mask_sum`
                and `count` are used).
            fitted: `(rows, S)`, `Σ_n βᵀφ_n · shrink(mask_n)` over the
                step's masks, with the `β` of `control`.
            shrunk_sum: `(S,)`, `Σ_n shrink(mask_n)` over the step's masks.
            control: `(center, beta, expected)` from `control`.

        Returns:
            float32 `(rows, H · W)`.
        """
        center, beta, expected = control
        full, smooth = self.residual_sum(
            step_sums.weighted, step_sums.mask_sum, fitted, shrunk_sum, center, beta
        )
        count = step_sums.count
        smooth = count * expected - smooth
        return full + count * self.keep_prob * center + self.grow(smooth)


def _averaging(blocks, size, binary):
    """The block-averaging matrix of one axis, `None` for the identity of a
    binary axis with a block per position."""
    if binary and blocks == size:
        return None
    return _block_average(blocks, size)


def _shift_covariance(blocks, smooth, axis):
    """One axis' factor of `Cov(φ, shrink(mask))`, `E_d[B_d S_dᵀ]`: `(F_axis, S_axis)`.

    `blocks` and `smooth` are the axis' weights at every shift averaged over
    the feature and smoothing blocks (`AxisWeights.block_averages`). A
    binary axis is not smoothed, so `S_d` is the one-hot of each position's
    run at shift `d`: the product is a lookup of `B_d`'s columns.
    """
    if axis.binary:
        positions = np.arange(axis.size)
        runs = (positions[None] + np.arange(axis.cell)[:, None]) // axis.cell
        looked_up = np.take_along_axis(blocks, runs[:, None, :], axis=2)  # (d, F, size)
        return looked_up.mean(axis=0).astype(np.float32)
    products = np.einsum("dbg,dsg->bs", blocks.astype(np.float64), smooth)
    return (products / blocks.shape[0]).astype(np.float32)


def _flat(masks):
    return tf.reshape(masks, [tf.shape(masks)[0], -1])


def _from_factors(factors, tables):
    """Per mask, its grid contracted with each axis' table row at its shift: `(k, ·)`."""
    gathered = [tf.gather(table, factors.shifts[:, axis]) for axis, table in enumerate(tables)]
    blocks = masks_lib.contract(factors.grid, gathered)
    return tf.reshape(blocks, [tf.shape(blocks)[0], -1])


_LETTERS = "abcdefgh"


def _separable(flat, size, matrices):
    """Flat arrays `(k, prod(size))` with matrix `i` `(out_i, size_i)` applied
    along axis `i`: `(k, prod(out))` (on images `rows @ image @ colsᵀ`).
    A `None` matrix is the identity."""
    if all(matrix is None for matrix in matrices):
        return flat
    if len(size) == 2 and all(matrix is not None for matrix in matrices):
        rows, cols = matrices
        height, width = size
        across = tf.matmul(tf.reshape(flat, [-1, width]), cols, transpose_b=True)
        across = tf.reshape(across, [-1, height, cols.shape[0]])
        out = tf.matmul(rows[None], across)  # (k, rows, cols)
        return tf.reshape(out, [tf.shape(flat)[0], -1])
    if len(size) == 1:
        return tf.matmul(flat, matrices[0], transpose_b=True)
    result = tf.reshape(flat, [-1, *size])
    rank = len(size)
    for axis, matrix in enumerate(matrices):
        if matrix is None:
            continue
        before = "k" + _LETTERS[:rank]
        after = before.replace(_LETTERS[axis], "z")
        result = tf.einsum(f"{before},z{_LETTERS[axis]}->{after}", result, matrix)
    return tf.reshape(result, [tf.shape(flat)[0], -1])
