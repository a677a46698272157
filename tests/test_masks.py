import numpy as np
import pytest
import tensorflow as tf

import keras_rise
from keras_rise import masks as masks_lib


def _linear_weights(size_in, size_out):
    """Reference linear resize weights with half-pixel centres, edges clamped."""
    src = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    src = np.clip(src, 0, size_in - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = src - low
    weights = np.zeros((size_out, size_in))
    weights[np.arange(size_out), low] += 1 - frac
    weights[np.arange(size_out), high] += frac
    return weights


def _bilinear_upsample(grid, out_h, out_w):
    """Reference bilinear resize with half-pixel centres, edges clamped."""
    rows = _linear_weights(grid.shape[0], out_h)
    cols = _linear_weights(grid.shape[1], out_w)
    return rows @ grid @ cols.T


@pytest.mark.parametrize("image_size,grid_size", [((32, 32), 7), ((24, 40), 5)])
def test_masks_follow_the_paper_recipe(image_size, grid_size):
    num, keep_prob = 6, 0.4
    draws = masks_lib.uniform_words(3, 0, num, grid_size**2 + 2).numpy()
    masks = keras_rise.generate_masks(
        num, image_size, grid_size, keep_prob, seed=3
    ).numpy()
    (cell_h, cell_w), (up_h, up_w) = masks_lib.mask_geometry(image_size, grid_size)
    cells = grid_size * grid_size
    for n in range(num):
        grid = (draws[n, :cells] < keep_prob).reshape(grid_size, grid_size)
        up = _bilinear_upsample(grid.astype(float), up_h, up_w)
        dy = int(draws[n, cells] * cell_h)
        dx = int(draws[n, cells + 1] * cell_w)
        expected = up[dy : dy + image_size[0], dx : dx + image_size[1]]
        np.testing.assert_allclose(masks[n], expected, atol=1e-5)


def test_mask_statistics():
    masks = keras_rise.generate_masks(2000, (32, 32), keep_prob=0.5, seed=0)
    assert masks.dtype == tf.float32
    assert masks.shape == (2000, 32, 32)
    assert float(tf.reduce_min(masks)) >= 0.0
    assert float(tf.reduce_max(masks)) <= 1.0
    assert abs(float(tf.reduce_mean(masks)) - 0.5) < 0.01
    sparse = keras_rise.generate_masks(2000, (32, 32), keep_prob=0.2, seed=0)
    assert abs(float(tf.reduce_mean(sparse)) - 0.2) < 0.01
    # Pixel-wise the probability of being kept is the same everywhere.
    pixel_means = tf.reduce_mean(masks, axis=0).numpy()
    assert pixel_means.min() > 0.4 and pixel_means.max() < 0.6


def test_batched_masks_equal_one_call():
    whole = keras_rise.generate_masks(50, (20, 28), grid_size=5, seed=11)
    parts = [
        keras_rise.generate_masks(size, (20, 28), grid_size=5, seed=11, start=start)
        for start, size in [(0, 7), (7, 13), (20, 30)]
    ]
    np.testing.assert_array_equal(whole.numpy(), tf.concat(parts, 0).numpy())


def test_seed_selects_the_stream():
    a = keras_rise.generate_masks(8, (16, 16), grid_size=4, seed=1)
    b = keras_rise.generate_masks(8, (16, 16), grid_size=4, seed=1)
    c = keras_rise.generate_masks(8, (16, 16), grid_size=4, seed=2)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    # Masks within one stream differ from each other too.
    assert not np.allclose(a[0].numpy(), a[1].numpy())


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"num_masks": 0}, ValueError, "num_masks"),
        ({"num_masks": 2.5}, TypeError, "num_masks"),
        ({"image_size": (4, 4, 4, 4)}, ValueError, "image_size"),
        ({"image_size": ()}, ValueError, "image_size"),
        ({"image_size": (0, 32)}, ValueError, "image_size"),
        ({"grid_size": 0}, ValueError, "grid_size"),
        ({"grid_size": 40}, ValueError, "grid_size"),
        ({"grid_size": (4, 4, 4)}, ValueError, "one number of cells per masked axis"),
        ({"grid_size": (4, 0)}, ValueError, "grid_size"),
        ({"keep_prob": 1.0}, ValueError, "keep_prob"),
        ({"keep_prob": 0.0}, ValueError, "keep_prob"),
        ({"keep_prob": "half"}, TypeError, "keep_prob"),
        ({"start": -1}, ValueError, "start"),
        ({"seed": 2**64}, ValueError, "seed"),
    ],
)
def test_generate_masks_rejects_bad_arguments(kwargs, error, match):
    arguments = {"num_masks": 4, "image_size": (32, 32), **kwargs}
    with pytest.raises(error, match=match):
        keras_rise.generate_masks(**arguments)


@pytest.mark.parametrize("sampling", ["independent", "stratified"])
@pytest.mark.parametrize("complementary", [False, True])
def test_every_stream_is_addressed_by_index(sampling, complementary):
    options = dict(seed=11, sampling=sampling, complementary=complementary)
    whole = keras_rise.generate_masks(200, (24, 30), **options).numpy()
    # Odd starts and lengths, crossing the 64-mask strata and the pairs.
    parts = [
        keras_rise.generate_masks(count, (24, 30), start=start, **options).numpy()
        for start, count in [(0, 37), (37, 64), (101, 99)]
    ]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.min() >= 0.0 and whole.max() <= 1.0
    assert abs(whole.mean() - 0.5) < 0.03
    if complementary:
        np.testing.assert_allclose(whole[0::2] + whole[1::2], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "seed,offset,stream,shape",
    [
        (0, 0, 0, [8]),
        (7, 5, 3, [3, 7]),
        (2**40 + 3, 2**32 - 2, 1, [5, 9]),  # the counter's low word carries
        (-5, 2**63 - 2, 2, [17]),
        (9, -1, 0, [40]),  # the 64-bit half wraps and carries into the stream's
    ],
)
def test_philox_in_ops_draws_the_kernels_numbers_under_xla(seed, offset, stream, shape):
    offset = tf.constant(offset, tf.int64)
    kernel = masks_lib._philox_uniforms(seed, offset, stream, shape)
    in_ops = tf.function(
        lambda offset: masks_lib._philox_in_ops(seed, offset, stream, shape),
        jit_compile=True,
        autograph=False,
    )(offset)
    np.testing.assert_array_equal(in_ops.numpy(), kernel.numpy())


@pytest.mark.parametrize(
    "sampling,complementary",
    [("independent", False), ("stratified", True), ("orthogonal", False)],
)
def test_masks_made_in_xla_equal_the_kernels(sampling, complementary):
    family = masks_lib.GridMasks(
        (24, 30), 7, 0.5, seed=5, sampling=sampling, complementary=complementary
    )

    def masks(start):
        return family.expand(family.factors(start, 70))

    def portable(start):
        with masks_lib.portable_random():
            return masks(start)

    start = tf.constant(101, tf.int64)
    compiled = tf.function(portable, jit_compile=True, autograph=False)(start)
    np.testing.assert_allclose(compiled.numpy(), masks(start).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "size, grid_size, count, rows, grouped",
    [
        ((224, 224), 7, 100, 2, True),
        ((64, 64), 7, 40, 2, True),
        ((30, 26), 4, 17, 3, True),
        ((33, 97), 5, 17, 40, False),
    ],
)
def test_weighted_sum_of_factors_equals_the_product_with_the_masks(
    size, grid_size, count, rows, grouped
):
    factors = masks_lib.factors_in_range(
        3, 5, count, size, grid_size, 0.5, complementary=True
    )
    cell = masks_lib.mask_geometry(size, grid_size)[0][0]
    assert masks_lib._grouping_is_cheaper(
        rows, count, *size, grid_size, cell
    ) == grouped
    weights = tf.random.stateless_uniform([rows, count], seed=[1, 2]) - 0.5
    masks = tf.reshape(masks_lib.expand(factors), [count, -1])
    summed = masks_lib.weighted_sum(factors, weights).numpy()
    expected = tf.matmul(weights, masks).numpy()
    np.testing.assert_allclose(summed, expected, atol=2e-5)
    assert np.ptp(expected) > 1.0


def test_weighted_sum_needs_one_weight_column_per_mask():
    factors = masks_lib.factors_in_range(0, 0, 5, (16, 16), 4, 0.5)
    with pytest.raises(ValueError, match=r"\(rows, 5\).*received shape \(2, 4\)"):
        masks_lib.weighted_sum(factors, tf.ones([2, 4]))
    with pytest.raises(ValueError, match="received shape"):
        masks_lib.weighted_sum(factors, np.ones(5, np.float32))


@pytest.mark.parametrize(
    "shape,grid_size", [((50,), 7), ((37,), 5), ((6, 20, 18), (3, 5, 4)), ((9, 9, 9), 3)]
)
def test_masks_on_any_axes_follow_the_paper_recipe(shape, grid_size):
    # Linear upsampling on every axis of a binary grid, cropped at a shift of
    # less than one cell per axis: an independent NumPy reference.
    num, keep_prob = 5, 0.4
    cells = (grid_size,) * len(shape) if isinstance(grid_size, int) else grid_size
    num_cells = int(np.prod(cells))
    draws = masks_lib.uniform_words(4, 0, num, num_cells + len(shape)).numpy()
    masks = keras_rise.generate_masks(num, shape, grid_size, keep_prob, seed=4).numpy()
    assert masks.shape == (num, *shape)
    for n in range(num):
        mask = (draws[n, :num_cells] < keep_prob).reshape(cells).astype(float)
        for axis, (size, s) in enumerate(zip(shape, cells)):
            cell = -(-size // s)
            shift = int(draws[n, num_cells + axis] * cell)
            weights = _linear_weights(s, (s + 1) * cell)[shift : shift + size]
            mask = np.moveaxis(np.tensordot(weights, mask, axes=([1], [axis])), 0, axis)
        np.testing.assert_allclose(masks[n], mask, atol=1e-5)


@pytest.mark.parametrize("length,grid_size", [(12, None), (12, 4), (10, 3)])
def test_binary_masks_keep_or_drop_whole_runs(length, grid_size):
    num = 400
    masks = keras_rise.generate_masks(num, (length,), grid_size, seed=2, binary=True).numpy()
    assert set(np.unique(masks)) == {0.0, 1.0}
    cells = length if grid_size is None else grid_size
    run = -(-length // cells)
    draws = masks_lib.uniform_words(2, 0, num, (length + run - 2) // run + 2).numpy()
    for n in range(5):
        shift = int(draws[n, -1] * run)
        runs = (np.arange(length) + shift) // run
        expected = (draws[n, runs] < 0.5).astype(float)
        np.testing.assert_array_equal(masks[n], expected)
    # Every position is kept with probability keep_prob.
    assert np.abs(masks.mean(axis=0) - 0.5).max() < 0.1
    if grid_size is None:  # one cell per token: positions independent
        correlation = np.corrcoef(masks[:, 0], masks[:, 1])[0, 1]
        assert abs(correlation) < 0.15


def test_masks_binary_on_some_axes_blend_the_others_only():
    # A series (steps, channels) with binary_masks=(False, True): each channel
    # is its own column of grid cells, blended along the steps as a signal's
    # mask and independent of the other channels' (the grayscale-image
    # reading of grid_size=(7, C) blended neighbouring channels).
    steps, channels, cells = 40, 3, 5
    family = keras_rise.masks.GridMasks(
        (steps, channels), (cells, channels), 0.5, seed=4, binary=(False, True)
    )
    assert family.binary == (False, True) and family.num_cells == cells * channels
    factors = family.factors(0, 600)
    masks = family.expand(factors).numpy()
    grid, shifts = factors.grid.numpy(), factors.shifts.numpy()
    assert np.all(shifts[:, 1] == 0)  # one channel per cell: nothing to shift
    for n in range(4):
        rows = family.tables[0].upsampled[shifts[n, 0] : shifts[n, 0] + steps]
        np.testing.assert_allclose(masks[n], rows @ grid[n], atol=1e-6)
    assert abs(np.corrcoef(masks[:, 20, 0], masks[:, 20, 1])[0, 1]) < 0.15
    assert np.corrcoef(masks[:, 20, 0], masks[:, 22, 0])[0, 1] > 0.8
    # Unbiased: every position is kept with probability keep_prob.
    assert np.abs(masks.mean(axis=0) - 0.5).max() < 0.1
    whole = keras_rise.generate_masks(9, (steps, channels), binary=(False, True), seed=1)
    np.testing.assert_array_equal(
        whole[5:], keras_rise.generate_masks(
            4, (steps, channels), binary=(False, True), seed=1, start=5)
    )
    assert keras_rise.masks.grid_shape((steps, channels), None, (False, True)) == (7, 3)
    with pytest.raises(ValueError, match=r"one bool per masked axis \(2 of them\)"):
        keras_rise.generate_masks(2, (steps, channels), binary=(False, True, True))
    with pytest.raises(TypeError, match="tuple of bools"):
        keras_rise.generate_masks(2, (steps, channels), binary=(0, 1))


@pytest.mark.parametrize("shape,binary", [((40,), False), ((5, 12, 12), False), ((30,), True)])
def test_masks_on_any_axes_are_addressed_by_index(shape, binary):
    whole = keras_rise.generate_masks(9, shape, 3, seed=6, binary=binary)
    tail = keras_rise.generate_masks(4, shape, 3, seed=6, start=5, binary=binary)
    np.testing.assert_array_equal(whole[5:], tail)
    pairs = keras_rise.generate_masks(6, shape, 3, seed=6, complementary=True, binary=binary)
    np.testing.assert_allclose(pairs[0::2] + pairs[1::2], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "shape,grid_size,binary",
    [
        ((40,), 5, False), ((5, 12, 12), 3, False), ((30,), None, True),
        ((24, 20), (3, 5), False), ((24, 4), (5, 4), (False, True)),
    ],
)
def test_weighted_sums_and_apply_on_any_axes(shape, grid_size, binary):
    family = keras_rise.masks.GridMasks.for_config(
        keras_rise.RiseConfig(grid_size=grid_size, seed=1), shape, binary=binary
    )
    factors = family.factors(3, 7)
    masks = family.expand(factors).numpy().reshape(7, -1)
    weights = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    np.testing.assert_allclose(
        family.weighted_sum(factors, weights), weights @ masks, rtol=1e-4, atol=1e-4
    )
    if binary is True:
        tokens = np.arange(2 * shape[0], dtype=np.int32).reshape(2, *shape) + 5
        masked = family.apply(factors, tf.constant(tokens), 0).numpy()
        expected = np.where(masks[:, None] > 0.5, tokens[None], 0).reshape(14, *shape)
        np.testing.assert_array_equal(masked, expected)
    else:
        inputs = np.random.default_rng(1).random((2, *shape, 3)).astype(np.float32)
        masked = family.apply(factors, tf.constant(inputs), 0.25).numpy()
        keep = masks.reshape(7, 1, *shape, 1)
        expected = (0.25 + (inputs[None] - 0.25) * keep).reshape(14, *shape, 3)
        np.testing.assert_allclose(masked, expected, atol=1e-5)


@pytest.mark.parametrize("size,cells,binary", [(50, 7, False), (31, 4, True), (12, 12, True)])
def test_axis_weights_at_every_shift(size, cells, binary):
    axis = masks_lib.axis_weights(size, cells, binary)
    table = axis.table()
    assert table.shape == (axis.cell, size, axis.cells)
    np.testing.assert_allclose(table.sum(axis=2), 1.0, atol=1e-6)  # rows sum to one
    shifts = np.arange(axis.cell, dtype=np.int32)
    at = axis.at(tf.constant(shifts)).numpy()
    if binary:
        np.testing.assert_array_equal(np.eye(axis.cells)[at], table)
    else:
        np.testing.assert_allclose(at, table, atol=0)
        reference = _linear_weights(cells, (cells + 1) * axis.cell)
        np.testing.assert_allclose(table[2], reference[2 : 2 + size], atol=1e-6)
    bounds = np.array([[0, 3], [3, 10], [10, size]])
    averages = np.stack([table[:, a:b].mean(axis=1) for a, b in bounds], axis=1)
    np.testing.assert_allclose(axis.block_averages(bounds), averages, atol=1e-6)
    # Long axes keep only the upsampled rows a crop reaches, never size × size.
    if not binary:
        assert axis.upsampled.shape == (axis.cell + size - 1, cells)


def test_orthogonal_runs_balance_every_cell_pair_and_triple():
    grid = masks_lib.factors_in_range(5, 0, 384, (24, 24), 4, 0.5, "orthogonal").grid
    bits = grid.numpy().reshape(384, 16)
    run = masks_lib.code_run_length(16)
    assert run == 128
    rng = np.random.default_rng(0)
    for first in (0, 128, 256):
        block = bits[first : first + run]
        np.testing.assert_array_equal(block.sum(axis=0), run / 2)
        for _ in range(20):
            a, b, c = rng.choice(16, 3, replace=False)
            assert (block[:, a] * block[:, b]).sum() == run / 4
            assert (block[:, a] * (1 - block[:, b]) * block[:, c]).sum() == run / 8
    # Runs differ (each draws its own code), and any slice equals one call.
    assert not np.array_equal(bits[:128], bits[128:256])
    part = masks_lib.factors_in_range(5, 100, 60, (24, 24), 4, 0.5, "orthogonal")
    np.testing.assert_array_equal(part.grid.numpy().reshape(60, 16), bits[100:160])
    np.testing.assert_array_equal(
        part.shifts.numpy(),
        masks_lib.factors_in_range(5, 0, 384, (24, 24), 4, 0.5, "orthogonal").shifts[100:160],
    )


def test_orthogonal_runs_pair_each_mask_with_its_complement():
    family = keras_rise.masks.ImageMasks((24, 30), 4, 0.5, seed=2, sampling="orthogonal")
    assert family.run_length == 128
    masks = family.expand(family.factors(128, 128)).numpy()  # the second run
    # Masks 2k and 2k + 1: complementary cells, the same shift.
    np.testing.assert_allclose(masks[0::2] + masks[1::2], 1.0, atol=1e-6)
    # So a run cut short after whole pairs covers every position equally.
    np.testing.assert_allclose(masks[:50].sum(axis=0), 25.0, atol=1e-4)
    # The pairs' shifts are stratified: each of a cell's 64 strata of shift
    # once per run, so every shift value appears (nearly) equally often.
    shifts = family.factors(128, 128).shifts.numpy()[0::2]
    cell = masks_lib.mask_geometry((24, 30), 4)[0]
    for axis in range(2):
        counts = np.bincount(shifts[:, axis], minlength=cell[axis])
        assert counts.max() - counts.min() <= -(-64 // cell[axis]) - 64 // cell[axis] + 1


def test_orthogonal_masks_are_the_papers_masks_one_by_one():
    # Mask j of a run, over many runs (seeds), keeps each cell with
    # probability 1/2 independently: its first cell pairs are balanced too.
    first = np.stack([
        masks_lib.factors_in_range(seed, 37, 1, (16, 16), 4, 0.5, "orthogonal").grid.numpy()
        for seed in range(400)
    ]).reshape(400, 16)
    assert abs(first.mean() - 0.5) < 0.03
    assert abs(np.corrcoef(first[:, 0], first[:, 1])[0, 1]) < 0.15
    with pytest.raises(ValueError, match="keep_prob=0.5"):
        keras_rise.generate_masks(4, (16, 16), keep_prob=0.4, sampling="orthogonal")
    with pytest.raises(ValueError, match="keep_prob=0.5"):
        keras_rise.RiseConfig(mask_sampling="orthogonal", keep_prob=0.3)


@pytest.mark.parametrize(
    "options,shape,binary,expected",
    [
        ({}, (64, 64), False, "orthogonal"),  # a 7×7 image grid
        ({}, (512,), False, "orthogonal"),  # a signal's 7 cells
        ({"score_regression": False}, (64, 64), False, "independent"),  # the paper's
        ({"keep_prob": 0.4}, (64, 64), False, "independent"),
        ({}, (16, 32, 32), False, "independent"),  # 343 cells: runs of 1024
        ({}, (256,), True, "independent"),  # a cell per token
        ({"grid_size": 8}, (64, 64), False, "orthogonal"),  # 64 cells: runs of 128
        ({"grid_size": 9}, (64, 64), False, "independent"),  # 81 cells: runs of 256
        ({"mask_sampling": "stratified"}, (64, 64), False, "stratified"),
    ],
)
def test_auto_sampling_is_orthogonal_with_the_regression_on_small_grids(
    options, shape, binary, expected
):
    config = keras_rise.RiseConfig(**options)
    family = keras_rise.masks.GridMasks.for_config(config, shape, binary=binary)
    assert family.sampling == expected
