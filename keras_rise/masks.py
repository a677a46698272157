"""Random RISE masks, generated on the device and addressed by index.

Mask number `n` of a seed is a pure function of `(seed, n)`: its random bits
come from a Philox counter-based generator whose key is the seed and whose
counter starts at `n`'s own offset in the stream. Any slice of the stream can
therefore be generated on its own — in batches, on another replica, after a
restart — and equals the same rows of one big call.
"""

import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_rise import _checks

# Philox (algorithm 1 of TensorFlow's stateless RNG ops) yields 4 uint32 words
# per counter increment, so every mask owns a whole number of increments.
_PHILOX = 1
_WORDS_PER_COUNTER = 4


def _words_per_mask(grid_size):
    """Random words one mask consumes: one per grid cell plus two shifts."""
    words = grid_size * grid_size + 2
    return -(-words // _WORDS_PER_COUNTER) * _WORDS_PER_COUNTER


def mask_geometry(image_size, grid_size):
    """Cell size and upsampled size of the paper's recipe.

    Args:
        image_size: `(height, width)` of the masks.
        grid_size: cells per side of the coarse grid.

    Returns:
        `((cell_height, cell_width), (up_height, up_width))` with
        `cell = ceil(size / grid_size)` and `up = (grid_size + 1) * cell`.
    """
    height, width = image_size
    cell = (math.ceil(height / grid_size), math.ceil(width / grid_size))
    up = ((grid_size + 1) * cell[0], (grid_size + 1) * cell[1])
    return cell, up


def uniform_words(seed, start, count, grid_size):
    """Uniform [0, 1) numbers for masks `start .. start + count - 1`.

    Args:
        seed: int or scalar int64 tensor, the Philox key.
        start: int or scalar int tensor, index of the first mask.
        count: static int, number of masks.
        grid_size: cells per side, which fixes the words each mask uses.

    Returns:
        float32 tensor `(count, grid_size**2 + 2)`: the cell draws, then the
        vertical and horizontal shift draws of each mask.
    """
    words = _words_per_mask(grid_size)
    seed = tf.cast(seed, tf.int64)
    offset = tf.cast(start, tf.int64) * (words // _WORDS_PER_COUNTER)
    key = tf.bitcast(tf.reshape(seed, [1]), tf.uint64)
    counter = tf.bitcast(tf.stack([offset, tf.constant(0, tf.int64)]), tf.uint64)
    draws = tf.raw_ops.StatelessRandomUniformV2(
        shape=tf.constant([count, words], tf.int32),
        key=key,
        counter=counter,
        alg=_PHILOX,
        dtype=tf.float32,
    )
    return draws[:, : grid_size * grid_size + 2]


# Masks per stratification block of the "stratified" sampling.
STRATA = 64


def stratified_words(seed, start, count, grid_size):
    """Latin-hypercube uniforms for masks `start .. start + count - 1`.

    Masks come in blocks of `STRATA` (64) consecutive indices. Within a
    block, each draw (cell or shift) takes each of the 64 strata
    `[i / 64, (i + 1) / 64)` exactly once, in an order shuffled
    independently per block and per draw, with a uniform jitter inside the
    stratum. Every single mask is therefore distributed exactly as an
    independent one (all its draws are independent uniforms), but over a
    block every cell is kept exactly `keep_prob · 64` times (rounded), which
    removes most of the noise of independent coin flips.

    The block's randomness comes from Philox with key `seed`, in a counter
    range disjoint from `uniform_words`, so this too is a pure function of
    `(seed, index)`.

    Args:
        seed: int or scalar int64 tensor.
        start: int or scalar int tensor, index of the first mask.
        count: static int.
        grid_size: cells per side.

    Returns:
        float32 `(count, grid_size**2 + 2)`, as `uniform_words`.
    """
    dims = grid_size * grid_size + 2
    words = _words_per_mask(grid_size)
    start = tf.cast(start, tf.int64)
    first_block = start // STRATA
    blocks = count // STRATA + 2  # enough for any alignment of the range
    counters_per_block = 2 * STRATA * words // _WORDS_PER_COUNTER
    key = tf.bitcast(tf.reshape(tf.cast(seed, tf.int64), [1]), tf.uint64)
    counter = tf.bitcast(
        tf.stack([first_block * counters_per_block, tf.constant(1, tf.int64)]),
        tf.uint64,
    )
    draws = tf.raw_ops.StatelessRandomUniformV2(
        shape=tf.constant([blocks, 2, STRATA, words], tf.int32),
        key=key,
        counter=counter,
        alg=_PHILOX,
        dtype=tf.float32,
    )[..., :dims]
    order, jitter = draws[:, 0], draws[:, 1]
    # The rank of each mask's key within its block: a random permutation.
    strata = tf.argsort(tf.argsort(order, axis=1), axis=1)
    uniforms = (tf.cast(strata, tf.float32) + jitter) / STRATA
    uniforms = tf.minimum(uniforms, 1.0 - 2.0**-24)  # stay below 1 in float32
    uniforms = tf.reshape(uniforms, [blocks * STRATA, dims])
    return tf.slice(
        uniforms,
        tf.stack([tf.cast(start - first_block * STRATA, tf.int32), 0]),
        [count, dims],
    )


SAMPLINGS = ("independent", "stratified")


def _interpolation_matrix(size_in, size_out):
    """Bilinear weights `(size_out, size_in)` of `tf.image.resize` on one axis.

    Resizing an identity image along its height gives, row by row, the
    weights bilinear upsampling puts on each input cell; the width is left
    at its size, which bilinear resizing keeps unchanged.
    """
    identity = tf.eye(size_in)[:, :, None]
    resized = tf.image.resize(identity, (size_out, size_in), method="bilinear")
    return resized[..., 0]


class MaskFactors(NamedTuple):
    """Masks in factored form: mask `n` is `rows[n] @ grid[n] @ cols[n]ᵀ`.

    Bilinear upsampling is separable, so an upsampled-and-cropped mask is
    the product of its binary grid with the crop's slices of
    `tf.image.resize`'s interpolation weights on each axis.

    Attributes:
        rows: float32 `(count, height, grid_size)`, the weights each mask
            row puts on the grid's rows, at the mask's vertical shift.
        grid: float32 `(count, grid_size, grid_size)`, the kept cells (1)
            and dropped ones (0).
        cols: float32 `(count, width, grid_size)`, the same for columns.
        shifts: int32 `(count, 2)`, each mask's vertical and horizontal
            shift in pixels, which `rows` and `cols` are the crops at.
    """

    rows: tf.Tensor
    grid: tf.Tensor
    cols: tf.Tensor
    shifts: tf.Tensor


def factors_from_words(draws, image_size, grid_size, keep_prob):
    """Turns uniform draws into the factors of RISE masks (the paper's recipe).

    A binary `grid_size`×`grid_size` grid keeps each cell with `keep_prob`,
    is upsampled bilinearly to `(grid_size + 1) · cell` and cropped to the
    image at a random shift of less than one cell in each direction.

    Args:
        draws: float32 `(count, grid_size**2 + 2)` from `uniform_words`.
        image_size: static `(height, width)`.
        grid_size: static int.
        keep_prob: float or scalar tensor in (0, 1).

    Returns:
        `MaskFactors`; `expand` makes the masks.
    """
    height, width = image_size
    (cell_h, cell_w), (up_h, up_w) = mask_geometry(image_size, grid_size)
    cells = grid_size * grid_size
    grid = tf.cast(draws[:, :cells] < keep_prob, tf.float32)
    grid = tf.reshape(grid, [-1, grid_size, grid_size])

    shift_y = tf.cast(draws[:, cells] * cell_h, tf.int32)
    shift_x = tf.cast(draws[:, cells + 1] * cell_w, tf.int32)
    # Guard against a draw that rounds up to exactly 1.0 in float32.
    shift_y = tf.minimum(shift_y, cell_h - 1)
    shift_x = tf.minimum(shift_x, cell_w - 1)
    rows = tf.gather(crop_weights(grid_size, up_h, height, cell_h), shift_y)
    cols = tf.gather(crop_weights(grid_size, up_w, width, cell_w), shift_x)
    return MaskFactors(rows, grid, cols, tf.stack([shift_y, shift_x], axis=1))


def widen(factors):
    """Each mask's grid interpolated along the width: `grid @ colsᵀ`.

    Returns:
        float32 `(count, grid_size, width)`; a mask is `rows @ widen(...)`.
    """
    return tf.matmul(factors.grid, factors.cols, transpose_b=True)


def expand(factors):
    """The masks of `MaskFactors`: float32 `(count, height, width)` in [0, 1].

    `rows @ (grid @ colsᵀ)`: two small batched matmuls, the first on the
    grid's side. (Fusing the second product and the clip into one XLA kernel
    was 30-40% faster on CPU, but under the default `malloc` allocator its
    output buffers made peak memory grow with the number of masks.)
    """
    # Weights sum to one; clipping removes float rounding just above 1.
    return tf.minimum(tf.matmul(factors.rows, widen(factors)), 1.0)


def crop_weights(grid_size, up_size, size, cell):
    """Bilinear weights of one axis at every shift: NumPy `(cell, size, grid_size)`.

    Entry `d` is what `MaskFactors.rows` (or `cols`) holds for a mask at
    shift `d` on that axis: `factors_from_words` gathers from this table.
    """
    with tf.init_scope():  # a constant, also when first built inside a graph
        weights = _interpolation_matrix(grid_size, up_size).numpy()
    return np.stack([weights[shift : shift + size] for shift in range(cell)])


def weighted_sum(factors, weights):
    """`Σ_n weights[r, n] · mask_n` of factored masks: float32 `(rows, H · W)`.

    When it is cheaper (few rows, many masks), the masks are never expanded:
    masks with the same vertical shift `d` share their row weights `rows_d`,
    so the sum is `Σ_d rows_d @ (Σ_{n: shift n = d} weights[r, n] ·
    widen(n))` — one matmul that groups the masks by shift, one that applies
    the shifts' row weights. Otherwise the masks are expanded and multiplied.

    Args:
        factors: `MaskFactors` of `count` masks.
        weights: float32 `(rows, count)` with a static number of rows.

    Returns:
        The same sums as `weights @ reshape(expand(factors), [count, -1])`,
        to float rounding.
    """
    count, height, grid_size = factors.rows.shape
    width = factors.cols.shape[1]
    weights = tf.convert_to_tensor(weights, tf.float32)
    if weights.shape.rank != 2 or weights.shape[1] not in (None, count):
        raise ValueError(
            f"`weights` must have shape (rows, {count}), one column per mask; "
            f"received shape {tuple(weights.shape)}."
        )
    (cell, _), (up, _) = mask_geometry((height, width), grid_size)
    rows = weights.shape[0]
    if rows is None or not _grouping_is_cheaper(rows, count, height, width, grid_size, cell):
        masks = tf.reshape(expand(factors), [count, height * width])
        return tf.matmul(weights, masks)
    by_shift = tf.one_hot(factors.shifts[:, 0], cell)  # (count, cell)
    grouped = tf.reshape(weights[:, None, :] * tf.transpose(by_shift)[None], [-1, count])
    widened = tf.reshape(widen(factors), [count, grid_size * width])
    partial = tf.reshape(tf.matmul(grouped, widened), [rows, cell * grid_size, width])
    # rows_d side by side: (height, cell · grid_size).
    shifted_rows = np.transpose(crop_weights(grid_size, up, height, cell), [1, 0, 2])
    shifted_rows = shifted_rows.reshape(height, cell * grid_size)
    return tf.reshape(tf.matmul(shifted_rows[None], partial), [rows, height * width])


@tf.function(jit_compile=True)
def apply_factors(rows, widened, images, fill):
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


def _grouping_is_cheaper(rows, count, height, width, grid_size, cell):
    """Whether `weighted_sum` should group the masks rather than expand them.

    Grouping costs `rows · (count + height) · cell · grid_size · width`
    multiply-adds. Expanding costs `grid_size` per mask pixel, plus writing
    and reading the masks back, counted as twice that again (a rough
    weight: at 224×224 with two rows, grouping measured 1% faster per step
    of the whole explanation), plus `rows` per pixel for the product.
    """
    grouped = rows * (count + height) * cell * grid_size * width
    expanded = count * height * width * (rows + 3 * grid_size)
    return grouped < expanded


def factors_in_range(
    seed,
    start,
    count,
    image_size,
    grid_size,
    keep_prob,
    sampling="independent",
    complementary=False,
):
    """`MaskFactors` of masks `start .. start + count - 1`, in graph code.

    With `complementary`, mask `2k + 1` has the grid `1 - grid 2k` and the
    same shifts, which makes it `1 - mask 2k` to float rounding (the
    weights of every pixel sum to one), and mask `2k` is the `k`-th mask of
    the underlying stream. `expand` makes the masks.

    Args:
        seed: int or scalar int64 tensor.
        start: int or scalar int tensor.
        count: static int.
        image_size: static `(height, width)`.
        grid_size: static int.
        keep_prob: float in (0, 1).
        sampling: `"independent"` (the paper's coin flips) or
            `"stratified"` (see `stratified_words`).
        complementary: bool.
    """
    words_fn = stratified_words if sampling == "stratified" else uniform_words
    if not complementary:
        draws = words_fn(seed, start, count, grid_size)
        return factors_from_words(draws, image_size, grid_size, keep_prob)
    start = tf.cast(start, tf.int64)
    base_count = count // 2 + 1
    draws = words_fn(seed, start // 2, base_count, grid_size)
    base = factors_from_words(draws, image_size, grid_size, keep_prob)
    first = tf.cast(start % 2, tf.int32)

    def pairs(mine, theirs):
        both = tf.stack([mine, theirs], axis=1)  # (base_count, 2, ...)
        both = tf.reshape(both, [2 * base_count, *mine.shape[1:]])
        begin = tf.concat([[first], tf.zeros([len(mine.shape) - 1], tf.int32)], 0)
        return tf.slice(both, begin, [count, *mine.shape[1:]])

    return MaskFactors(
        pairs(base.rows, base.rows),
        pairs(base.grid, 1.0 - base.grid),
        pairs(base.cols, base.cols),
        pairs(base.shifts, base.shifts),
    )


def generate_masks(
    num_masks,
    image_size,
    grid_size=7,
    keep_prob=0.5,
    seed=0,
    start=0,
    sampling="independent",
    complementary=False,
):
    """Generates RISE masks `start .. start + num_masks - 1` of a seed.

    Masks follow the paper's recipe (Petsiuk et al., 2018): a binary
    `grid_size`×`grid_size` grid whose cells are kept with probability
    `keep_prob`, upsampled bilinearly with `tf.image.resize` to
    `(grid_size + 1) · cell` pixels (`cell = ceil(size / grid_size)`) and
    cropped to `image_size` at a random shift. Randomness is stateless and
    indexed: mask `n` depends only on `(seed, n)`, so any batching of the
    stream reproduces the rows of one big call exactly.

    Args:
        num_masks: int, number of masks to generate.
        image_size: `(height, width)` of the masks; may be non-square.
        grid_size: int, cells per side of the coarse grid. Defaults to `7`.
        keep_prob: float in (0, 1), probability of keeping a cell.
            Defaults to `0.5`.
        seed: int, selects the mask stream. Defaults to `0`.
        start: int, index of the first mask in the stream. Defaults to `0`.
        sampling: `"independent"` (default; each cell an independent coin
            flip, as in the paper) or `"stratified"` (Latin-hypercube draws
            in blocks of 64 masks: each mask is distributed as before, but
            every cell is kept equally often over a block).
        complementary: bool, pair every mask with its complement: mask
            `2k + 1` is `1 - mask 2k` (to float rounding). Needs
            `keep_prob=0.5`, where the complement is itself a RISE mask.
            Defaults to `False`.

    Returns:
        float32 `tf.Tensor` of shape `(num_masks, height, width)`, values in
        [0, 1], on the current device.

    Example:

    >>> masks = keras_rise.generate_masks(4, (32, 48), grid_size=4)
    >>> masks.shape
    TensorShape([4, 32, 48])
    >>> tail = keras_rise.generate_masks(2, (32, 48), grid_size=4, start=2)
    >>> bool(tf.reduce_all(masks[2:] == tail))
    True
    """
    num_masks = _checks.integer("num_masks", num_masks, minimum=1)
    start = _checks.integer("start", start, minimum=0)
    seed = _checks.seed(seed)
    image_size = _checks.image_size(image_size)
    grid_size = _checks.grid_size(grid_size, image_size)
    keep_prob = _checks.keep_prob(keep_prob)
    sampling = _checks.sampling(sampling)
    complementary = _checks.complementary(complementary, keep_prob)
    factors = factors_in_range(
        seed, start, num_masks, image_size, grid_size, keep_prob, sampling, complementary
    )
    return expand(factors)


class ImageMasks:
    """The paper's mask family on images: what the RISE loop asks of masks.

    The loop (`keras_rise.engine`) and the estimators know masks only
    through a family's methods: make the factors of masks `start ..`
    (addressed by index, on the device), apply them to a batch, and sum them
    weighted, expanding them only where that is cheaper. This family is the
    paper's recipe for images `(batch, height, width, channels)`; a family
    for other input ranks offers the same methods and `spatial_shape`.

    Args:
        spatial_shape: static `(height, width)` of the images.
        grid_size: int, cells per side of the grid.
        keep_prob: float in (0, 1).
        seed: int, the mask stream.
        sampling: `"independent"` or `"stratified"`.
        complementary: bool, masks in complementary pairs.

    Example:

    >>> family = keras_rise.masks.ImageMasks((32, 48), 4, 0.5, seed=0)
    >>> family.expand(family.factors(0, 3)).shape
    TensorShape([3, 32, 48])
    """

    def __init__(
        self,
        spatial_shape,
        grid_size,
        keep_prob,
        seed,
        sampling="independent",
        complementary=False,
    ):
        self.spatial_shape = tuple(spatial_shape)
        self.grid_size = grid_size
        self.keep_prob = keep_prob
        self.seed = seed
        self.sampling = sampling
        self.complementary = complementary

    @classmethod
    def for_config(cls, config, spatial_shape):
        """The family of a `keras_rise.RiseConfig` for images of a size."""
        return cls(
            spatial_shape,
            config.grid_size,
            config.keep_prob,
            config.seed,
            config.mask_sampling,
            config.complementary_masks,
        )

    @property
    def num_pixels(self):
        """Pixels per mask: `height · width`."""
        return self.spatial_shape[0] * self.spatial_shape[1]

    def factors(self, start, count, seed=None):
        """`MaskFactors` of masks `start .. start + count - 1` (graph code).

        `seed` (an int or scalar int tensor) replaces the family's own.
        """
        return factors_in_range(
            self.seed if seed is None else seed,
            start,
            count,
            self.spatial_shape,
            self.grid_size,
            self.keep_prob,
            self.sampling,
            self.complementary,
        )

    def apply(self, factors, images, fill):
        """`fill + (image - fill) · mask` for every mask and image, mask-major.

        Returns:
            `(count · B, height, width, channels)` in the images' dtype: copy
            `k · B + b` is mask `k` on image `b`.
        """
        return apply_factors(
            factors.rows, widen(factors), images, tf.cast(fill, images.dtype)
        )

    def weighted_sum(self, factors, weights):
        """`Σ_n weights[r, n] · mask_n`, `(rows, height · width)`; see `weighted_sum`."""
        return weighted_sum(factors, weights)

    def expand(self, factors):
        """The masks themselves, `(count, height, width)`; see `expand`."""
        return expand(factors)
