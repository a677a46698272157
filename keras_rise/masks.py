"""Random RISE masks, generated on the device and addressed by index.

Mask number `n` of a seed is a pure function of `(seed, n)`: its random bits
come from a Philox counter-based generator whose key is the seed and whose
counter starts at `n`'s own offset in the stream. Any slice of the stream can
therefore be generated on its own — in batches, on another replica, after a
restart — and equals the same rows of one big call.
"""

import math

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


def _interpolation_matrix(size_in, size_out):
    """Bilinear weights `(size_out, size_in)` of `tf.image.resize` on one axis.

    Resizing an identity image along its height gives, row by row, the
    weights bilinear upsampling puts on each input cell; the width is left
    at its size, which bilinear resizing keeps unchanged.
    """
    identity = tf.eye(size_in)[:, :, None]
    resized = tf.image.resize(identity, (size_out, size_in), method="bilinear")
    return resized[..., 0]


def masks_from_words(draws, image_size, grid_size, keep_prob):
    """Turns uniform draws into RISE masks (the paper's recipe).

    A binary `grid_size`×`grid_size` grid keeps each cell with `keep_prob`,
    is upsampled bilinearly to `(grid_size + 1) · cell` and cropped to the
    image at a random shift of less than one cell in each direction.

    Bilinear upsampling is separable, so the upsampled-and-cropped mask is
    `rows @ grid @ cols^T`, where `rows` and `cols` are the crop's slices of
    `tf.image.resize`'s interpolation weights. Two small batched matmuls
    replace a resize to the full upsampled size and two gathers.

    Args:
        draws: float32 `(count, grid_size**2 + 2)` from `uniform_words`.
        image_size: static `(height, width)`.
        grid_size: static int.
        keep_prob: float or scalar tensor in (0, 1).

    Returns:
        float32 tensor `(count, height, width)` with values in [0, 1].
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
    rows = tf.gather(
        _interpolation_matrix(grid_size, up_h),
        shift_y[:, None] + tf.range(height)[None, :],
    )  # (count, height, grid_size)
    cols = tf.gather(
        _interpolation_matrix(grid_size, up_w),
        shift_x[:, None] + tf.range(width)[None, :],
    )  # (count, width, grid_size)
    # Weights sum to one; clipping removes float rounding just above 1.
    return tf.minimum(tf.matmul(tf.matmul(rows, grid), cols, transpose_b=True), 1.0)


def generate_masks(num_masks, image_size, grid_size=7, keep_prob=0.5, seed=0, start=0):
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
    draws = uniform_words(seed, start, num_masks, grid_size)
    return masks_from_words(draws, image_size, grid_size, keep_prob)
