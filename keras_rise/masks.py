"""Random RISE masks, generated on the device and addressed by index.

Mask number `n` of a seed is a pure function of `(seed, n)`: its random bits
come from a Philox counter-based generator whose key is the seed and whose
counter starts at `n`'s own offset in the stream. Any slice of the stream can
therefore be generated on its own — in batches, on another replica, after a
restart — and equals the same rows of one big call.

Masks cover the input's mask axes, any number of them: `(length,)` for a
signal `(length, channels)` or a token sequence, `(height, width)` for an
image, `(depth, height, width)` for a volume or `(frames, height, width)` for
a video. Each axis has its own number of grid cells and its own table of
weights, one per shift (`axis_weights`): the paper's linear upsampling
(bilinear on images, trilinear on volumes) for real-valued inputs, or runs
of positions kept or dropped whole (`binary=True`) for token ids, which
cannot be blended. `GridMasks` is the family on any axes; `ImageMasks`, the
2-D family, adds the fast paths of images.
"""

import contextlib
import functools
import math
import threading
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from keras_rise import _checks

# Philox (algorithm 1 of TensorFlow's stateless RNG ops) yields 4 uint32 words
# per counter increment, so every mask owns a whole number of increments.
_PHILOX = 1
_WORDS_PER_COUNTER = 4


def _words_per_mask(num_draws):
    """Random words one mask consumes: its draws, padded to whole counters."""
    return -(-num_draws // _WORDS_PER_COUNTER) * _WORDS_PER_COUNTER


def _philox_uniforms(seed, offset, stream, shape):
    """Uniform [0, 1) float32 numbers of shape `shape` from Philox keyed on
    `seed`, starting at counter `offset` of stream `stream` (each sampling
    draws from a stream of its own, so their ranges never overlap).

    Inside `portable_random()` (while an XLA program is traced), the same
    numbers come from `_philox_in_ops`: XLA's own Philox kernel draws others.

    Args:
        seed: int or scalar int tensor, the key.
        offset: scalar int64 tensor, the first counter (4 words each).
        stream: int, the counter's high word.
        shape: static list of ints.
    """
    if _random_context.portable:
        return _philox_in_ops(seed, offset, stream, shape)
    key = tf.bitcast(tf.reshape(tf.cast(seed, tf.int64), [1]), tf.uint64)
    counter = tf.bitcast(tf.stack([offset, tf.constant(stream, tf.int64)]), tf.uint64)
    return tf.raw_ops.StatelessRandomUniformV2(
        shape=tf.constant(shape, tf.int32),
        key=key,
        counter=counter,
        alg=_PHILOX,
        dtype=tf.float32,
    )


class _RandomContext(threading.local):
    portable = False


_random_context = _RandomContext()


def random_is_portable():
    """Whether masks made now draw with plain ops (`portable_random`)."""
    return _random_context.portable


@contextlib.contextmanager
def portable_random():
    """Masks made while this is active draw their random numbers with plain
    TensorFlow ops (`_philox_in_ops`), which XLA compiles to the numbers of
    TensorFlow's Philox kernel: for tracing a function with
    `jit_compile=True` that makes masks (a `with` block, or a decorator of
    the function)."""
    before = _random_context.portable
    _random_context.portable = True
    try:
        yield
    finally:
        _random_context.portable = before


# Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
# 3", SC 2011): multipliers and key increments.
_PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_PHILOX_KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
_PHILOX_ROUNDS = 10
_LOW32 = 0xFFFFFFFF


def _philox_in_ops(seed, offset, stream, shape):
    """`_philox_uniforms` in elementwise uint64 ops, bit for bit: counter
    `offset + g` of stream `stream` gives numbers `4g .. 4g + 3`, each the
    low 23 bits of a Philox word as the mantissa of a float in [1, 2), less 1.
    """
    size = int(np.prod(shape))
    groups = -(-size // _WORDS_PER_COUNTER)
    low32 = tf.constant(_LOW32, tf.uint64)

    def split(word):  # a uint64 into its (low, high) uint32 halves, as uint64
        return tf.bitwise.bitwise_and(word, low32), tf.bitwise.right_shift(
            word, tf.constant(32, tf.uint64)
        )

    key = tf.bitcast(tf.cast(seed, tf.int64), tf.uint64)
    start = tf.bitcast(tf.cast(offset, tf.int64), tf.uint64)
    first = start + tf.cast(tf.range(groups, dtype=tf.int64), tf.uint64)
    # The 128-bit counter's high half takes the carry of the low half's sum.
    high = tf.constant(stream, tf.uint64) + tf.cast(first < start, tf.uint64)
    words = [*split(first), *split(high)]
    key_low, key_high = split(key)
    keys = [key_low, key_high]
    for round_index in range(_PHILOX_ROUNDS):
        product0 = tf.constant(_PHILOX_MULTIPLIERS[0], tf.uint64) * words[0]
        product1 = tf.constant(_PHILOX_MULTIPLIERS[1], tf.uint64) * words[2]
        low0, high0 = split(product0)
        low1, high1 = split(product1)
        words = [
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(high1, words[1]), keys[0]),
            low1,
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(high0, words[3]), keys[1]),
            low0,
        ]
        if round_index < _PHILOX_ROUNDS - 1:
            keys = [
                tf.bitwise.bitwise_and(k + tf.constant(step, tf.uint64), low32)
                for k, step in zip(keys, _PHILOX_KEY_STEPS)
            ]
    words = tf.reshape(tf.stack(words, axis=1), [-1])[:size]
    mantissa = tf.bitwise.bitwise_and(words, tf.constant(0x7FFFFF, tf.uint64))
    ones = tf.bitwise.bitwise_or(mantissa, tf.constant(127 << 23, tf.uint64))
    floats = tf.bitcast(tf.cast(ones, tf.uint32), tf.float32) - 1.0
    return tf.reshape(floats, shape)


# Cells per axis when `grid_size` is None (the paper's 7×7 on images).
DEFAULT_GRID_SIZE = 7


def binary_flags(binary, num_axes, name="binary"):
    """Whether each of `num_axes` axes takes binary masks: a tuple of bools.

    Args:
        binary: a bool for every axis, or a tuple with one per axis (e.g.
            `(False, True)` for a series' steps blended and its channels
            kept or dropped whole).
        num_axes: int, the masks' axes.
        name: the argument that gave `binary`, for messages.
    """
    if isinstance(binary, (tuple, list)):
        if len(binary) != num_axes:
            raise ValueError(
                f"`{name}` must give one bool per masked axis ({num_axes} of them), "
                f"or one bool for all. Received: {name}={tuple(binary)}."
            )
        return tuple(bool(flag) for flag in binary)
    return (bool(binary),) * num_axes


def simplified_flags(binary, num_axes, name="binary"):
    """`binary` checked (a bool, or one per axis: `binary_flags`), as a bool
    when every axis agrees, else a tuple of bools."""
    flags = binary_flags(_checks.binary_axes(name, binary), num_axes, name)
    return flags[0] if len(set(flags)) == 1 else flags


def grid_shape(spatial_shape, grid_size, binary=False):
    """Cells per axis of the grid a `grid_size` stands for.

    Args:
        spatial_shape: the masks' axes, e.g. `(height, width)`.
        grid_size: an int (the same on every axis), a tuple with one int per
            axis, or `None`: 7 per axis (one per position on a shorter
            axis), or on an axis of `binary` masks (token sequences, a
            series' channels) one cell per position.
        binary: bool, masks of whole runs (see `axis_weights`), or one bool
            per axis.

    Returns:
        A tuple of ints, one per axis.
    """
    if grid_size is None:
        flags = binary_flags(binary, len(spatial_shape))
        return tuple(
            size if flag
            else DEFAULT_GRID_SIZE if size is None else min(DEFAULT_GRID_SIZE, int(size))
            for size, flag in zip(spatial_shape, flags)
        )
    if isinstance(grid_size, (tuple, list)):
        return tuple(int(cells) for cells in grid_size)
    flags = binary_flags(binary, len(spatial_shape))
    if all(flags):  # token runs: an int sets the runs' cells
        flags = (False,) * len(flags)
    # Axes kept whole among blended ones have a cell per position.
    return tuple(size if flag else int(grid_size) for size, flag in zip(spatial_shape, flags))


def mask_geometry(image_size, grid_size):
    """Cell size and upsampled size of the paper's recipe, per axis.

    Args:
        image_size: the masks' axes, e.g. `(height, width)`.
        grid_size: cells per axis, an int or one per axis.

    Returns:
        `(cell, up)`, tuples with one entry per axis: `cell = ceil(size /
        cells)` and `up = (cells + 1) · cell`.
    """
    cells = grid_shape(image_size, grid_size)
    cell = tuple(math.ceil(size / s) for size, s in zip(image_size, cells))
    up = tuple((s + 1) * c for s, c in zip(cells, cell))
    return cell, up


def uniform_words(seed, start, count, num_draws):
    """Uniform [0, 1) numbers for masks `start .. start + count - 1`.

    Args:
        seed: int or scalar int64 tensor, the Philox key.
        start: int or scalar int tensor, index of the first mask.
        count: static int, number of masks.
        num_draws: static int, draws per mask: one per grid cell and one
            shift per axis (`grid_size**2 + 2` for the paper's square grid
            on images), which fixes the words each mask uses.

    Returns:
        float32 tensor `(count, num_draws)`: for `GridMasks`, the cell
        draws, then the shift draws of each axis.
    """
    words = _words_per_mask(num_draws)
    offset = tf.cast(start, tf.int64) * (words // _WORDS_PER_COUNTER)
    draws = _philox_uniforms(seed, offset, 0, [count, words])
    return draws[:, :num_draws]


# Masks per stratification block of the "stratified" sampling.
STRATA = 64


def stratified_words(seed, start, count, num_draws):
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
        num_draws: static int, draws per mask.

    Returns:
        float32 `(count, num_draws)`, as `uniform_words`.
    """
    dims = num_draws
    words = _words_per_mask(num_draws)
    start = tf.cast(start, tf.int64)
    first_block = start // STRATA
    blocks = count // STRATA + 2  # enough for any alignment of the range
    counters_per_block = 2 * STRATA * words // _WORDS_PER_COUNTER
    draws = _philox_uniforms(
        seed, first_block * counters_per_block, 1, [blocks, 2, STRATA, words]
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


def code_run_length(num_cells):
    """Masks per run of the "orthogonal" sampling: `2^m`, with `2^(m - 1)`
    odd-weight codewords of `m` bits for the cells, and at least 128."""
    bits = max(7, math.ceil(math.log2(max(num_cells, 2))) + 1)
    return 2**bits


def _odd_weight_words(bits):
    """All `bits`-bit integers with an odd number of ones, int32 NumPy."""
    values = np.arange(2**bits)
    ones = np.array([bin(v).count("1") for v in values])
    return values[ones % 2 == 1].astype(np.int32)


def orthogonal_words(seed, start, count, num_draws, num_cells):
    """Uniforms whose cell draws form an orthogonal array of strength 3.

    Masks come in runs of `R = code_run_length(num_cells)` consecutive
    indices (128 for a 7×7 grid). Each run draws its own code: a distinct
    odd-weight `m`-bit word `a_c` and a random bit `s_c` for every cell
    `c`; mask `j` of the run keeps cell `c` when `parity(a_c & j) XOR s_c`
    is 1. Any three odd-weight words are linearly independent, so over a
    run every cell, every pair and every triple of cells takes each of its
    on/off patterns equally often; and since `s` is uniform, every single
    mask's cells are independent fair coins — the paper's masks at
    `keep_prob=0.5`. Code rows `k` and `R - 1 - k` keep complementary cells
    (the words have odd weight); they are masks `2k` and `2k + 1` of the
    run and share their shifts, so each mask is followed by its complement
    and every position is covered exactly once per pair — also by a run
    cut short, which ends on whole pairs.
    The `R / 2` pairs' shifts are stratified per axis: each takes one of
    `R / 2` equal strata of [0, 1) (a random permutation per run and axis)
    with a uniform jitter inside it, so each shift is still uniform. Runs
    are independent, drawn from Philox keyed on the seed at counters of
    their own. A pure function of `(seed, index)`, like the others.

    Args:
        seed: int or scalar int64 tensor.
        start: int or scalar int tensor, index of the first mask.
        count: static int.
        num_draws: static int, draws per mask: the cells', then the shifts'.
        num_cells: static int, how many of the draws are cells.

    Returns:
        float32 `(count, num_draws)`: a cell's draw is 0.25 when the code
        keeps it and 0.75 when it drops it (for `factors_from_words` at
        `keep_prob=0.5`), then the shift draws.
    """
    run = code_run_length(num_cells)
    half = run // 2
    axes = num_draws - num_cells
    words = _odd_weight_words(int(math.log2(run)))
    start = tf.cast(start, tf.int64)
    first_run = start // run
    runs = count // run + 2  # enough for any alignment of the range
    # Per run: keys to choose the cells' words, the cells' bits s, and per
    # axis a key and a jitter per pair.
    sizes = [len(words), num_cells, axes * half, axes * half]
    per_run = _words_per_mask(sum(sizes))
    draws = _philox_uniforms(
        seed, first_run * (per_run // _WORDS_PER_COUNTER), 2, [runs, per_run]
    )
    word_keys, flips, shift_keys, jitter, _ = tf.split(
        draws, sizes + [per_run - sum(sizes)], axis=1
    )
    # A random choice of distinct odd-weight words per run, and the bits s.
    codes = tf.gather(tf.constant(words), tf.argsort(word_keys, axis=1)[:, :num_cells])
    flips = tf.cast(flips < 0.5, tf.int32)
    # Each pair's stratum per axis: a random permutation of the R / 2 strata.
    strata = tf.argsort(tf.reshape(shift_keys, [runs, axes, half]), axis=2)
    shifts = (tf.cast(strata, tf.float32) + tf.reshape(jitter, [runs, axes, half])) / half
    shifts = tf.minimum(shifts, 1.0 - 2.0**-24)  # stay below 1 in float32

    index = start + tf.range(count, dtype=tf.int64)
    which = tf.cast(index // run - first_run, tf.int32)
    # Mask 2k of a run is code row k, mask 2k + 1 its complement R - 1 - k.
    within = tf.cast(index % run, tf.int32)
    pair = within // 2
    position = tf.where(within % 2 == 0, pair, run - 1 - pair)
    masked = tf.bitwise.bitwise_and(tf.gather(codes, which), position[:, None])
    parity = tf.cast(tf.raw_ops.PopulationCount(x=masked), tf.int32) % 2
    kept = tf.bitwise.bitwise_xor(parity, tf.gather(flips, which))
    pair_shifts = tf.gather_nd(
        tf.transpose(shifts, [0, 2, 1]), tf.stack([which, pair], axis=1)
    )  # (count, axes)
    # Kept cells read 0.25, dropped ones 0.75: `draw < keep_prob` (0.5)
    # reads the code back.
    cells = 0.75 - 0.5 * tf.cast(kept, tf.float32)
    return tf.concat([cells, pair_shifts], axis=1)


SAMPLINGS = ("independent", "stratified", "orthogonal")

# The most cells for which `"auto"` sampling picks the orthogonal design:
# runs of 128 masks. More cells need longer runs (a 7×7×7 grid: 1024), and
# the standard error, taken over whole runs, would need many thousands of
# masks.
AUTO_ORTHOGONAL_CELLS = 64


def auto_sampling(score_regression, keep_prob, num_cells):
    """What `mask_sampling="auto"` (the default) means for an explanation.

    `"orthogonal"` with the score regression at `keep_prob=0.5` when the
    grid has at most `AUTO_ORTHOGONAL_CELLS` cells (a 7×7 image grid, a
    signal's 7 cells): each run of 128 masks balances every cell, pair and
    triple, which halves the regression's remaining variance on the models
    of `benchmarks/efficiency.py`. `"independent"` otherwise — in
    particular without the regression, which is then the paper's estimator
    on the paper's masks.

    Args:
        score_regression: bool, the explanation's estimator.
        keep_prob: float.
        num_cells: int, cells of the grid.

    Returns:
        `"orthogonal"` or `"independent"`.
    """
    if score_regression and keep_prob == 0.5 and num_cells <= AUTO_ORTHOGONAL_CELLS:
        return "orthogonal"
    return "independent"


def _interpolation_matrix(size_in, size_out):
    """Bilinear weights `(size_out, size_in)` of `tf.image.resize` on one axis.

    Resizing an identity image along its height gives, row by row, the
    weights bilinear upsampling puts on each input cell; the width is left
    at its size, which bilinear resizing keeps unchanged. Linear
    upsampling on any number of axes is this matrix on each axis.
    """
    identity = tf.eye(size_in)[:, :, None]
    resized = tf.image.resize(identity, (size_out, size_in), method="bilinear")
    return resized[..., 0]


class AxisWeights(NamedTuple):
    """How the masks on one axis come from its grid cells, at every shift.

    At shift `d`, position `i` of the axis takes row `d + i` of the axis'
    upsampled cells: for the paper's linear masks, the weights that
    upsample `cells` grid cells linearly to `(cells + 1) · cell` positions
    (`tf.image.resize`'s bilinear on one axis), cropped at `d`; for binary
    masks (token ids), runs of `cell` positions kept or dropped whole —
    position `i` is in run `(i + d) // cell`. Shifts are `0 .. cell - 1`.

    Nothing here grows as `size²`: a long signal or sequence costs its
    upsampled rows (linear) or nothing (binary), and per-mask weights are
    gathered from them (`at`).

    Attributes:
        size: positions on the axis.
        cells: grid cells on the axis (binary masks with runs longer than
            one position meet one run more than the grid size asks).
        cell: positions per grid cell, also the number of shifts.
        binary: bool, runs kept or dropped whole.
        upsampled: float32 NumPy `(rows, cells)` for linear masks, `None`
            for binary ones.
    """

    size: int
    cells: int
    cell: int
    binary: bool
    upsampled: object

    @property
    def num_shifts(self):
        return self.cell

    def at(self, shifts):
        """Each mask's weights on this axis at its shift (graph code).

        Args:
            shifts: int32 `(count,)`.

        Returns:
            Linear: float32 `(count, size, cells)`, the weights each
            position puts on the grid's cells. Binary: int32 `(count,
            size)`, the run (grid cell) of each position.
        """
        positions = shifts[:, None] + tf.range(self.size, dtype=shifts.dtype)
        if self.binary:
            return positions // self.cell
        return tf.gather(self.upsampled, positions)

    def table(self):
        """`at` of every shift, as NumPy `(shifts, size, cells)` (small axes only)."""
        if self.binary:
            table = np.zeros((self.cell, self.size, self.cells), np.float32)
            positions = np.arange(self.size)
            for shift in range(self.cell):
                table[shift, positions, (positions + shift) // self.cell] = 1.0
            return table
        return np.stack(
            [self.upsampled[shift : shift + self.size] for shift in range(self.cell)]
        )

    def block_averages(self, bounds):
        """Each shift's weights averaged over blocks of positions.

        Args:
            bounds: int `(blocks, 2)`, each block's first and past-the-end
                position (contiguous blocks).

        Returns:
            float32 NumPy `(shifts, blocks, cells)`: entry `[d, b]` is the
            mean over block `b`'s positions of the weights at shift `d` —
            for binary masks, the fraction of the block in each run. Made
            from running sums, without the `(shifts, size, cells)` table.
        """
        if self.binary:
            rows = np.eye(self.cells)[
                np.arange(self.cell + self.size - 1) // self.cell
            ]
        else:
            rows = self.upsampled.astype(np.float64)
        running = np.concatenate([np.zeros((1, self.cells)), np.cumsum(rows, axis=0)])
        shifts = np.arange(self.cell)[:, None]
        first, last = bounds[:, 0][None], bounds[:, 1][None]
        sums = running[shifts + last] - running[shifts + first]
        return (sums / (last - first)[..., None]).astype(np.float32)


@functools.lru_cache(maxsize=64)
def axis_weights(size, cells, binary=False):
    """How masks of one axis come from its grid: an `AxisWeights`.

    Args:
        size: positions on the axis.
        cells: grid cells on the axis (`grid_shape`).
        binary: `False` for the paper's linear upsampling to `(cells + 1) ·
            cell` positions and a crop at a shift of less than one cell;
            `True` for runs of `cell` positions kept or dropped whole (one
            run more than `cells` when a run is longer than one position).

    Returns:
        An `AxisWeights` (cached; treat its arrays as read-only).
    """
    cell = math.ceil(size / cells)
    if binary:
        grid_cells = (size + cell - 2) // cell + 1
        return AxisWeights(size, grid_cells, cell, True, None)
    upsampled = _interpolation_matrix_numpy(cells, (cells + 1) * cell)
    # Only rows a crop can reach: shifts 0 .. cell - 1 of `size` positions.
    upsampled = upsampled[: cell + size - 1].astype(np.float32)
    return AxisWeights(size, cells, cell, False, upsampled)


def _interpolation_matrix_numpy(size_in, size_out):
    """`_interpolation_matrix` as a NumPy constant, also inside a graph."""
    with tf.init_scope():
        return _interpolation_matrix(size_in, size_out).numpy()


def cell_count(tables):
    """Grid cells per mask of the `axis_tables` `tables`: their product."""
    return int(np.prod([axis.cells for axis in tables]))


def axis_tables(spatial_shape, grid_size, binary=False):
    """The `AxisWeights` of every axis of the masks.

    Args:
        spatial_shape: the masks' axes, e.g. `(height, width)`.
        grid_size: an int, a tuple per axis or `None` (`grid_shape`).
        binary: bool, runs kept or dropped whole, or one bool per axis.

    Returns:
        A tuple of `AxisWeights`, one per axis.
    """
    cells = grid_shape(spatial_shape, grid_size, binary)
    flags = binary_flags(binary, len(spatial_shape))
    return tuple(
        axis_weights(size, per_axis, flag)
        for size, per_axis, flag in zip(spatial_shape, cells, flags)
    )


class MaskFactors(NamedTuple):
    """Masks in factored form: a binary grid and each axis' weights.

    Upsampling is separable, so mask `n` is its grid contracted with one
    matrix per axis: on images `rows[n] @ grid[n] @ cols[n]ᵀ`, on any axes
    `contract(grid, axes)`.

    Attributes:
        axes: tuple with one float32 `(count, size, cells)` per axis: the
            weights each position of the axis puts on the grid's cells, at
            the mask's shift on that axis (`AxisWeights.at`); for binary
            masks on one axis (token ids), int32 `(count, size)`, each
            position's cell (a binary axis among others: its one-hot).
        grid: float32 `(count, *cells)`, the kept cells (1) and dropped ones
            (0).
        shifts: int32 `(count, axes)`, each mask's shift on every axis,
            which `axes` are the crops at.
    """

    axes: tuple
    grid: tf.Tensor
    shifts: tf.Tensor

    @property
    def rows(self):
        """The first axis' weights (images: the rows)."""
        return self.axes[0]

    @property
    def cols(self):
        """The second axis' weights (images: the columns)."""
        return self.axes[1]


def factors_from_words(draws, tables, keep_prob):
    """Turns uniform draws into the factors of RISE masks (the paper's recipe).

    A binary grid keeps each cell with `keep_prob`; each axis picks a shift
    uniformly among its table's, and the table's entry at that shift is
    the axis' weights (for linear tables: the grid upsampled to `(cells +
    1) · cell` and cropped at a shift of less than one cell).

    Args:
        draws: float32 `(count, cells + axes)` from `uniform_words`: the
            cells' draws, then one shift draw per axis.
        tables: `axis_tables` of the masks' axes.
        keep_prob: float or scalar tensor in (0, 1).

    Returns:
        `MaskFactors`; `expand` makes the masks.
    """
    cells_shape = [axis.cells for axis in tables]
    cells = int(np.prod(cells_shape))
    grid = tf.cast(draws[:, :cells] < keep_prob, tf.float32)
    grid = tf.reshape(grid, [-1, *cells_shape])
    axes, shifts = [], []
    for index, axis in enumerate(tables):
        shift = tf.cast(draws[:, cells + index] * axis.num_shifts, tf.int32)
        # Guard against a draw that rounds up to exactly 1.0 in float32.
        shift = tf.minimum(shift, axis.num_shifts - 1)
        weights = axis.at(shift)
        if axis.binary and len(tables) > 1:  # runs among blended axes
            weights = tf.one_hot(weights, axis.cells)
        axes.append(weights)
        shifts.append(shift)
    return MaskFactors(tuple(axes), grid, tf.stack(shifts, axis=1))


_POSITIONS, _CELLS = "abcdefgh", "stuvwxyz"


def contract(grid, axes):
    """A grid contracted with per-mask weights on every axis.

    `expand` with `MaskFactors.axes`, and what the regression's features
    are made with (per-axis block averages instead of the weights).

    Args:
        grid: float32 `(count, *cells)`.
        axes: one float32 `(count, size, cells)` per axis; or, for binary
            masks on one axis, int32 `(count, size)`: each position's cell.

    Returns:
        float32 `(count, *sizes)`.
    """
    if len(axes) == 1 and axes[0].dtype.is_integer:  # binary runs: a lookup
        return tf.gather(grid, axes[0], batch_dims=1)
    if len(axes) == 2:  # images: two batched matmuls
        return tf.matmul(tf.matmul(axes[0], grid), axes[1], transpose_b=True)
    result = grid
    for axis, weights in enumerate(axes):
        before = "k" + _POSITIONS[:axis] + _CELLS[axis:len(axes)]
        after = "k" + _POSITIONS[: axis + 1] + _CELLS[axis + 1 : len(axes)]
        result = tf.einsum(
            f"{before},k{_POSITIONS[axis]}{_CELLS[axis]}->{after}", result, weights
        )
    return result


def widen(factors):
    """Each image mask's grid interpolated along the width: `grid @ colsᵀ`.

    Returns:
        float32 `(count, cells_y, width)`; a mask is `rows @ widen(...)`.
    """
    return tf.matmul(factors.grid, factors.cols, transpose_b=True)


def expand(factors):
    """The masks of `MaskFactors`: float32 `(count, *spatial)` in [0, 1].

    On images `rows @ (grid @ colsᵀ)`: two small batched matmuls, the first
    on the grid's side. (Fusing the second product and the clip into one XLA
    kernel was 30-40% faster on CPU, but under the default `malloc`
    allocator its output buffers made peak memory grow with the number of
    masks.)
    """
    if len(factors.axes) == 2:
        masks = tf.matmul(factors.rows, widen(factors))
    else:
        masks = contract(factors.grid, factors.axes)
    # Weights sum to one; clipping removes float rounding just above 1.
    return tf.minimum(masks, 1.0)


def weighted_sum(factors, weights, row_table=None):
    """`Σ_n weights[r, n] · mask_n` of factored masks: float32 `(rows, pixels)`.

    On images, when it is cheaper (few rows, many masks) and the table the
    rows were gathered from is given, the masks are never expanded: masks
    with the same vertical shift `d` share their row weights `rows_d`, so
    the sum is `Σ_d rows_d @ (Σ_{n: shift n = d} weights[r, n] ·
    widen(n))` — one matmul that groups the masks by shift, one that
    applies the shifts' row weights. Otherwise the masks are expanded and
    multiplied.

    Args:
        factors: `MaskFactors` of `count` masks.
        weights: float32 `(rows, count)` with a static number of rows.
        row_table: optional NumPy `(shifts, height, cells)`, the first
            axis' weights at every shift (`AxisWeights.table`), which
            `factors.rows` were gathered from.

    Returns:
        The same sums as `weights @ reshape(expand(factors), [count, -1])`,
        to float rounding.
    """
    count = factors.grid.shape[0]
    sizes = [axis.shape[1] for axis in factors.axes]
    pixels = int(np.prod(sizes))
    weights = tf.convert_to_tensor(weights, tf.float32)
    if weights.shape.rank != 2 or weights.shape[1] not in (None, count):
        raise ValueError(
            f"`weights` must have shape (rows, {count}), one column per mask; "
            f"received shape {tuple(weights.shape)}."
        )
    rows = weights.shape[0]
    grouped = len(sizes) == 2 and row_table is not None and rows is not None
    if grouped:
        (height, width), cells_y = sizes, factors.grid.shape[1]
        cell = row_table.shape[0]
        grouped = _grouping_is_cheaper(rows, count, height, width, cells_y, cell)
    if not grouped:
        return tf.matmul(weights, tf.reshape(expand(factors), [count, pixels]))
    by_shift = tf.one_hot(factors.shifts[:, 0], cell)  # (count, cell)
    grouped = tf.reshape(weights[:, None, :] * tf.transpose(by_shift)[None], [-1, count])
    widened = tf.reshape(widen(factors), [count, cells_y * width])
    partial = tf.reshape(tf.matmul(grouped, widened), [rows, cell * cells_y, width])
    # rows_d side by side: (height, cell · cells_y).
    shifted_rows = np.transpose(row_table, [1, 0, 2]).reshape(height, cell * cells_y)
    return tf.reshape(tf.matmul(shifted_rows[None], partial), [rows, pixels])


@tf.function(jit_compile=True, autograph=False)
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


@tf.function(jit_compile=True, autograph=False)
def apply_masks(masks, inputs, fill):
    """Every mask on every input, mask-major, on any axes.

    Real-valued inputs become `fill + (input - fill) · mask`; integer inputs
    (token ids) keep their value where the mask is 1 and take `fill` where
    it is 0 (their masks are binary, `AxisWeights`).

    Args:
        masks: float32 `(size, *spatial)`.
        inputs: `(B, *spatial)` or `(B, *spatial, C)`.
        fill: scalar or array broadcastable to one input, inputs' dtype.

    Returns:
        `(size · B, *inputs.shape[1:])` in the inputs' dtype.
    """
    keep = masks[:, None]
    if inputs.shape.rank == masks.shape.rank + 1:  # a channel axis
        keep = keep[..., None]
    if inputs.dtype.is_integer:
        masked = tf.where(keep > 0.5, inputs[None], fill)
    else:
        masked = fill + (inputs[None] - fill) * tf.cast(keep, inputs.dtype)
    return tf.reshape(masked, tf.concat([[-1], tf.shape(inputs)[1:]], 0))


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
    binary=False,
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
        image_size: static shape of the masks' axes, e.g. `(height, width)`.
        grid_size: static int, tuple or `None` (see `grid_shape`).
        keep_prob: float in (0, 1).
        sampling: `"independent"` (the paper's coin flips),
            `"stratified"` (see `stratified_words`) or `"orthogonal"` (see
            `orthogonal_words`; needs `keep_prob=0.5`).
        complementary: bool.
        binary: bool, runs kept or dropped whole (see `axis_weights`), or
            one bool per axis.

    Returns:
        `MaskFactors` of `count` masks.
    """
    tables = axis_tables(tuple(image_size), grid_size, binary)
    num_cells = cell_count(tables)
    num_draws = num_cells + len(tables)
    words_fn = {
        "independent": uniform_words,
        "stratified": stratified_words,
        "orthogonal": functools.partial(orthogonal_words, num_cells=num_cells),
    }[sampling]
    if not complementary:
        draws = words_fn(seed, start, count, num_draws)
        return factors_from_words(draws, tables, keep_prob)
    start = tf.cast(start, tf.int64)
    base_count = count // 2 + 1
    draws = words_fn(seed, start // 2, base_count, num_draws)
    base = factors_from_words(draws, tables, keep_prob)
    first = tf.cast(start % 2, tf.int32)

    def pairs(mine, theirs):
        both = tf.stack([mine, theirs], axis=1)  # (base_count, 2, ...)
        both = tf.reshape(both, [2 * base_count, *mine.shape[1:]])
        begin = tf.concat([[first], tf.zeros([len(mine.shape) - 1], tf.int32)], 0)
        return tf.slice(both, begin, [count, *mine.shape[1:]])

    flipped = MaskFactors(base.axes, 1.0 - base.grid, base.shifts)
    return tf.nest.map_structure(pairs, base, flipped)


def generate_masks(
    num_masks,
    image_size,
    grid_size=None,
    keep_prob=0.5,
    seed=0,
    start=0,
    sampling="independent",
    complementary=False,
    binary=False,
):
    """Generates RISE masks `start .. start + num_masks - 1` of a seed.

    Masks follow the paper's recipe (Petsiuk et al., 2018): a binary grid
    (`grid_size` cells per axis) whose cells are kept with probability
    `keep_prob`, upsampled linearly (as `tf.image.resize`'s bilinear on
    images) to `(grid_size + 1) · cell` positions per axis (`cell =
    ceil(size / grid_size)`) and cropped to `image_size` at a random shift.
    `image_size` may have 1, 2 or 3 axes: `(length,)`, `(height, width)`,
    `(depth, height, width)`. Randomness is stateless and indexed: mask `n`
    depends only on `(seed, n)`, so any batching of the stream reproduces
    the rows of one big call exactly.

    Args:
        num_masks: int, number of masks to generate.
        image_size: the masks' shape without the batch: `(length,)`,
            `(height, width)` (may be non-square) or `(depth, height,
            width)`.
        grid_size: int, cells per axis of the coarse grid, or a tuple with
            one per axis. Defaults to `None`: 7 per axis (for binary
            masks one per position).
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
        binary: bool, masks for token sequences: runs of `ceil(size /
            grid_size)` positions kept or dropped whole, at a random shift,
            values 0 or 1; or one bool per axis, e.g. `(False, True)` for a
            series `(steps, channels)` blended along its steps and with
            each channel kept or dropped whole. Defaults to `False`.

    Returns:
        float32 `tf.Tensor` of shape `(num_masks, *image_size)`, values in
        [0, 1], on the current device.

    Example:

    >>> masks = keras_rise.generate_masks(4, (32, 48), grid_size=4)
    >>> masks.shape
    TensorShape([4, 32, 48])
    >>> tail = keras_rise.generate_masks(2, (32, 48), grid_size=4, start=2)
    >>> bool(tf.reduce_all(masks[2:] == tail))
    True
    >>> keras_rise.generate_masks(3, (16, 32, 32), grid_size=(4, 7, 7)).shape
    TensorShape([3, 16, 32, 32])
    """
    num_masks = _checks.integer("num_masks", num_masks, minimum=1)
    start = _checks.integer("start", start, minimum=0)
    seed = _checks.seed(seed)
    image_size = _checks.image_size(image_size)
    binary = simplified_flags(binary, len(image_size))
    grid_size = _checks.grid_size(grid_size, image_size, binary)
    keep_prob = _checks.keep_prob(keep_prob)
    sampling = _checks.sampling(sampling, keep_prob=keep_prob)
    complementary = _checks.complementary(complementary, keep_prob)
    factors = factors_in_range(
        seed, start, num_masks, image_size, grid_size, keep_prob, sampling, complementary,
        binary,
    )
    return expand(factors)


class GridMasks:
    """The paper's mask family on any number of axes: what the RISE loop asks of masks.

    The loop (`keras_rise.engine`) and the estimators know masks only
    through a family's methods: make the factors of masks `start ..`
    (addressed by index, on the device), apply them to a batch, and sum them
    weighted. Masks cover the input's axes between the batch and the
    channels: `(length,)` for signals `(batch, length, channels)`,
    `(depth, height, width)` for volumes `(batch, depth, height, width,
    channels)`, `(frames, height, width)` for videos; token sequences
    `(batch, length)` of integer ids have no channel axis and take binary
    masks (`binary=True`). `ImageMasks` is the 2-D family with the fast
    paths of images; `for_config` picks the family.

    Args:
        spatial_shape: static shape of the masks' axes, e.g. `(length,)`.
        grid_size: int, tuple of one int per axis, or `None` (see
            `grid_shape`).
        keep_prob: float in (0, 1).
        seed: int, the mask stream.
        sampling: `"independent"`, `"stratified"` or `"orthogonal"`.
        complementary: bool, masks in complementary pairs.
        binary: bool, runs kept or dropped whole (token ids), or one bool
            per axis (a series' channels whole, its steps blended: `(False,
            True)`).

    Example:

    >>> family = keras_rise.masks.GridMasks((16, 32, 32), (4, 7, 7), 0.5, seed=0)
    >>> family.expand(family.factors(0, 3)).shape
    TensorShape([3, 16, 32, 32])
    """

    def __init__(
        self,
        spatial_shape,
        grid_size,
        keep_prob,
        seed,
        sampling="independent",
        complementary=False,
        binary=False,
    ):
        self.spatial_shape = _checks.image_size(tuple(spatial_shape))
        self.binary = simplified_flags(binary, len(self.spatial_shape))
        self.grid_size = _checks.grid_size(grid_size, self.spatial_shape, self.binary)
        self.keep_prob = _checks.keep_prob(keep_prob)
        self.seed = seed if tf.is_tensor(seed) else _checks.seed(seed)
        self.sampling = _checks.sampling(sampling, keep_prob=self.keep_prob)
        self.complementary = _checks.complementary(complementary, self.keep_prob)
        self.tables = axis_tables(self.spatial_shape, self.grid_size, self.binary)

    @classmethod
    def for_config(cls, config, spatial_shape, binary=False):
        """The family of a `keras_rise.RiseConfig` for inputs of a shape.

        Args:
            config: a `keras_rise.RiseConfig`.
            spatial_shape: the masked axes (`keras_rise.inputs.layout`).
            binary: bool, token ids or binary masks, or one bool per axis.

        Returns:
            `ImageMasks` for images (2 axes, not binary), `GridMasks` for
            any other axes; `mask_sampling="auto"` resolved by
            `auto_sampling`.
        """
        family = cls
        blended = not any(binary_flags(binary, len(spatial_shape)))
        if cls is GridMasks and len(spatial_shape) == 2 and blended:
            family = ImageMasks
        sampling = config.mask_sampling
        if sampling == "auto":
            spatial_shape = _checks.image_size(tuple(spatial_shape))
            grid = _checks.grid_size(config.grid_size, spatial_shape, binary)
            num_cells = cell_count(axis_tables(spatial_shape, grid, binary))
            sampling = auto_sampling(config.score_regression, config.keep_prob, num_cells)
        return family(
            spatial_shape,
            config.grid_size,
            config.keep_prob,
            config.seed,
            sampling,
            config.complementary_masks,
            binary,
        )

    @property
    def num_cells(self):
        """Grid cells per mask: the product of the cells per axis."""
        return cell_count(self.tables)

    @property
    def run_length(self):
        """Consecutive masks drawn together, which balance each other: a
        run of the orthogonal code, a block of the stratified draws, a
        complementary pair, or 1 for independent masks. Standard errors take
        whole runs as their independent samples (`keras_rise.estimators`)."""
        run = {
            "independent": 1,
            "stratified": STRATA,
            "orthogonal": code_run_length(self.num_cells),
        }[self.sampling]
        return run * 2 if self.complementary else run

    @property
    def num_pixels(self):
        """Positions per mask: the product of `spatial_shape`."""
        return int(np.prod(self.spatial_shape))

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
            self.binary,
        )

    def apply(self, factors, inputs, fill):
        """Every mask on every input, mask-major (see `apply_masks`).

        Returns:
            `(count · B, *inputs.shape[1:])` in the inputs' dtype: copy
            `k · B + b` is mask `k` on input `b`.
        """
        return apply_masks(self.expand(factors), inputs, tf.cast(fill, inputs.dtype))

    def weighted_sum(self, factors, weights):
        """`Σ_n weights[r, n] · mask_n`, `(rows, pixels)`; see `weighted_sum`."""
        return weighted_sum(factors, weights)

    def expand(self, factors):
        """The masks themselves, `(count, *spatial_shape)`; see `expand`."""
        return expand(factors)


class ImageMasks(GridMasks):
    """The paper's mask family on images `(batch, height, width, channels)`.

    `GridMasks` on two axes, with the fast paths of images: masks made and
    applied in one XLA kernel (`apply_factors`), and weighted sums that
    group masks by shift rather than expand them (`weighted_sum`).

    Args:
        spatial_shape: static `(height, width)` of the images.
        grid_size: int, cells per side of the grid, a `(rows, columns)`
            pair, or `None` (7).
        keep_prob: float in (0, 1).
        seed: int, the mask stream.
        sampling: `"independent"`, `"stratified"` or `"orthogonal"`.
        complementary: bool, masks in complementary pairs.
        binary: must be `False`: images take the paper's blended masks.

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
        binary=False,
    ):
        if len(spatial_shape) != 2 or any(binary_flags(binary, 2)):
            raise ValueError(
                "ImageMasks are the blended masks of (height, width) images; use "
                f"GridMasks for spatial_shape={tuple(spatial_shape)}, binary={binary}."
            )
        super().__init__(
            spatial_shape, grid_size, keep_prob, seed, sampling, complementary, binary
        )
        self._row_table = self.tables[0].table()  # for grouped weighted sums

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
        return weighted_sum(factors, weights, row_table=self._row_table)
