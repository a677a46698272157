"""Variance reduction, standard errors and early stopping."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import region_model, small_cnn

import keras_rise

IMAGE = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)


def _constant_model(value=0.3):
    inputs = keras.Input((32, 32, 3))
    zero = keras.layers.Lambda(lambda x: 0.0 * keras.ops.mean(x, axis=(1, 2)))(inputs)
    scores = keras.layers.Lambda(
        lambda z: z[:, :2] + keras.ops.convert_to_tensor([value, 1 - value])
    )(zero)
    return keras.Model(inputs, scores)


@pytest.fixture(scope="module")
def spread_over_seeds():
    """Maps and standard errors of one image for 16 seeds, per option set."""
    model = small_cnn(seed=3)
    options = {
        "plain": {"score_regression": False},
        "centred": {"centered_scores": True, "score_regression": False},
        "complementary": {"complementary_masks": True, "score_regression": False},
        "regression": {"score_regression": True, "mask_sampling": "independent"},
        "orthogonal": {"mask_sampling": "orthogonal", "score_regression": False},
        "default": {},
    }
    results = {}
    for name, extra in options.items():
        maps, errors = [], []
        for seed in range(16):
            explainer = keras_rise.RiseExplainer(
                model, num_masks=640, batch_size=20, seed=seed, **extra
            )
            saliency, stderr = explainer.explain(IMAGE, 0, return_stderr=True)
            maps.append(saliency)
            errors.append(stderr)
        results[name] = (np.array(maps), np.array(errors))
    return results


@pytest.mark.parametrize(
    "name,most", [("plain", 1.4), ("centred", 1.4), ("complementary", 1.4),
                  ("regression", 1.6), ("orthogonal", 1.4), ("default", 1.6)]
)
def test_stderr_matches_the_spread_over_seeds(spread_over_seeds, name, most):
    maps, errors = spread_over_seeds[name]
    empirical = maps.std(axis=0, ddof=1).mean()
    estimated = errors.mean()
    # 16 seeds pin the spread down to about ±20%. The regression's estimate
    # uses fits from early units and errs on the large side. The orthogonal
    # design's units are whole runs of 128 masks (5 here, 4 with a fit of
    # earlier runs for the default), whose masks balance each other: steps
    # within a run are not independent samples (by steps it read 1.48).
    assert 0.7 < estimated / empirical < most


def test_orthogonal_masks_reduce_the_noise_of_the_same_map(spread_over_seeds):
    plain_maps = spread_over_seeds["plain"][0]
    orthogonal_maps = spread_over_seeds["orthogonal"][0]
    plain = plain_maps.std(axis=0).mean()
    assert orthogonal_maps.std(axis=0).mean() < 0.8 * plain
    # Every mask is the paper's: the mean maps agree within their noise.
    difference = np.abs(plain_maps.mean(axis=0) - orthogonal_maps.mean(axis=0)).mean()
    assert difference < 3 * plain / np.sqrt(16)
    # With the regression (the default), less noise than the regression alone.
    default = spread_over_seeds["default"][0].std(axis=0).mean()
    assert default < spread_over_seeds["regression"][0].std(axis=0).mean()


def test_regression_reduces_the_noise_below_centring(spread_over_seeds):
    centred = spread_over_seeds["centred"][0].std(axis=0).mean()
    assert spread_over_seeds["regression"][0].std(axis=0).mean() < centred / 2


def test_centring_and_complements_reduce_the_noise(spread_over_seeds):
    plain = spread_over_seeds["plain"][0].std(axis=0).mean()
    for name in ("centred", "complementary"):
        assert spread_over_seeds[name][0].std(axis=0).mean() < plain / 3
    # Same expected map: the mean maps over seeds agree within their noise.
    mean_plain = spread_over_seeds["plain"][0].mean(axis=0)
    mean_centred = spread_over_seeds["centred"][0].mean(axis=0)
    assert np.abs(mean_plain - mean_centred).mean() < 3 * plain / np.sqrt(16)


def test_centred_map_is_plain_map_minus_the_masks_total(cnn):
    options = {"num_masks": 150, "seed": 2, "score_regression": False}
    plain = keras_rise.RiseExplainer(cnn, **options)
    centred = keras_rise.RiseExplainer(cnn, centered_scores=True, **options)
    masks = keras_rise.generate_masks(150, (32, 32), seed=2).numpy()
    masked = IMAGE * masks[..., None]
    mean_score = cnn.predict(masked, verbose=0)[:, 1].mean()
    # c + (Σ s m - c Σ m) / (N p)  =  plain - c (Σ m / (N p) - 1)
    expected = plain.explain(IMAGE, 1) - mean_score * (masks.sum(0) / 75.0 - 1.0)
    np.testing.assert_allclose(centred.explain(IMAGE, 1), expected, atol=2e-5)


def test_complementary_masks_make_a_constant_model_exact():
    model = _constant_model(0.3)
    plain = {"score_regression": False}
    paired = keras_rise.RiseExplainer(
        model, num_masks=10, complementary_masks=True, **plain
    )
    np.testing.assert_allclose(paired.explain(IMAGE, 0), 0.3, rtol=1e-5)
    # An odd count ends on the first mask of a pair: a plain RISE mask.
    odd = keras_rise.RiseExplainer(
        model, num_masks=11, complementary_masks=True, **plain
    )
    masks = keras_rise.generate_masks(11, (32, 32), complementary=True).numpy()
    np.testing.assert_allclose(
        odd.explain(IMAGE, 0), 0.3 * masks.sum(0) / (11 * 0.5), rtol=1e-5
    )
    independent = keras_rise.RiseExplainer(model, num_masks=10, **plain)
    assert np.ptp(independent.explain(IMAGE, 0)) > 0.05


# Feature blocks of a 32-pixel side with grid_size=4 (6 blocks) start at
# 0, 6, 12, 17, 22, 27: this box is a union of whole blocks.
BLOCK_BOX = (6, 17, 12, 22)


@pytest.fixture(scope="module")
def many_mask_maps():
    """Plain maps from 16 000 masks: references for the regression."""
    ones = np.ones((32, 32, 3), np.float32)
    models = {"linear": region_model(box=BLOCK_BOX), "square": _squared_region()}
    return ones, models, {
        name: keras_rise.RiseExplainer(
            model, num_masks=16000, grid_size=4, batch_size=1000, seed=99,
            score_regression=False,
        ).explain(ones, 0)
        for name, model in models.items()
    }


def _squared_region():
    inputs = keras.Input((32, 32, 3))
    region = region_model(box=(2, 14, 3, 30))(inputs)
    return keras.Model(inputs, keras.layers.Lambda(lambda s: s**2)(region))


def test_regression_is_nearly_exact_for_a_score_linear_in_the_blocks(
    many_mask_maps,
):
    # The score is the mean of the mask over whole feature blocks: the fit
    # explains it all, and only the ridge's shrinkage is left to chance.
    ones, models, references = many_mask_maps
    reference = references["linear"]
    options = {"num_masks": 200, "grid_size": 4, "seed": 5}
    plain = keras_rise.RiseExplainer(
        models["linear"], score_regression=False, **options
    ).explain(ones, 0)
    fitted = keras_rise.RiseExplainer(
        models["linear"], score_regression=True, **options
    ).explain(ones, 0)
    plain_error = np.abs(plain - reference).mean()
    assert np.abs(fitted - reference).mean() < plain_error / 4


def test_regression_has_the_plain_expectation_for_a_nonlinear_score(
    many_mask_maps,
):
    # Cells of 8 pixels: the fitted part is summed on 2-pixel blocks
    # (`SMOOTHING_PER_CELL`), which must leave the expectation unchanged.
    ones, models, references = many_mask_maps
    maps = np.array([
        keras_rise.RiseExplainer(
            models["square"], num_masks=150, grid_size=4, seed=seed,
            score_regression=True,
        ).explain(ones, 0)
        for seed in range(8)
    ])
    noise = maps.std(axis=0, ddof=1).mean() / np.sqrt(8)
    # The 16 000-mask reference carries noise of its own, about 1/10 of a
    # 150-mask plain map's.
    plain = keras_rise.RiseExplainer(
        models["square"], num_masks=150, grid_size=4, seed=0, score_regression=False
    ).explain(ones, 0)
    reference_noise = np.abs(plain - references["square"]).mean() / np.sqrt(16000 / 150)
    bias = np.abs(maps.mean(axis=0) - references["square"]).mean()
    # Both noises as one: a mean absolute deviation of 0.8 of it is expected.
    assert bias < 1.5 * np.hypot(noise, reference_noise)
    # And the fit made it less noisy than plain RISE.
    assert noise * np.sqrt(8) < np.abs(plain - references["square"]).mean() / 2


def test_regression_maps_do_not_depend_on_the_batch_size(cnn):
    options = {"num_masks": 130, "score_regression": True, "seed": 4}
    small = keras_rise.RiseExplainer(cnn, batch_size=7, **options).explain(IMAGE, 1)
    large = keras_rise.RiseExplainer(cnn, batch_size=64, **options).explain(IMAGE, 1)
    np.testing.assert_allclose(small, large, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sampling", ["independent", "stratified"])
@pytest.mark.parametrize("complementary", [False, True])
def test_features_from_factors_equal_block_averages_of_masks(sampling, complementary):
    # 30x26 with a 4x4 grid: uneven blocks (6 per side), odd start and count;
    # cells of 8x7 pixels, smoothed on 2x1-pixel blocks.
    regression = keras_rise.regression.ScoreRegression((30, 26), 4, 0.5)
    factors = keras_rise.masks.factors_in_range(
        5, 3, 17, (30, 26), 4, 0.5, sampling, complementary
    )
    masks = tf.reshape(keras_rise.masks.expand(factors), [17, -1])
    direct = regression.features(masks).numpy()
    np.testing.assert_allclose(regression.factor_features(factors), direct, atol=1e-6)
    assert direct.shape == (17, 36) and np.ptp(direct) > 0.5
    shrunk = regression.shrink(masks).numpy()
    np.testing.assert_allclose(regression.factor_shrink(factors), shrunk, atol=1e-6)
    assert shrunk.shape == (17, 15 * 26) and np.ptp(shrunk) > 0.9


@pytest.mark.parametrize("size, grid_size", [((224, 224), 7), ((30, 26), 4)])
def test_smoothing_keeps_masks_and_constants(size, grid_size):
    regression = keras_rise.regression.ScoreRegression(size, grid_size, 0.5)
    pixels = size[0] * size[1]
    assert regression.num_smooth_pixels <= pixels * 0.6
    masks = tf.reshape(keras_rise.generate_masks(20, size, grid_size), [20, -1])
    smoothed = regression.grow(regression.shrink(masks)).numpy()
    spread = np.abs(masks - np.mean(masks)).mean()
    assert np.abs(smoothed - masks).mean() < 0.05 * spread
    ones = regression.grow(regression.shrink(tf.ones([1, pixels])))
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)


def test_smoothing_is_the_identity_for_small_cells():
    # 32 px with 7 cells: cells of 5 pixels, blocks of one pixel.
    regression = keras_rise.regression.ScoreRegression((32, 32), 7, 0.5)
    assert regression.smooth_size == (32, 32)
    masks = tf.reshape(keras_rise.generate_masks(5, (32, 32)), [5, -1])
    np.testing.assert_allclose(regression.grow(regression.shrink(masks)), masks, atol=1e-6)


def test_regression_tolerance_stops_early(cnn):
    explainer = keras_rise.RiseExplainer(
        cnn, num_masks=2000, batch_size=25, score_regression=True
    )
    saliency, stderr = explainer.explain(IMAGE, 0, tolerance=0.5, return_stderr=True)
    # The default's orthogonal runs of 128 masks are its units: it stops
    # after whole runs, at least 4 of them (steps of 16 masks tile a run).
    used = int(explainer.last_num_masks)
    assert 4 * 128 <= used < 2000 and used % 128 == 0
    assert np.sqrt(np.mean(stderr**2)) / saliency.std() < 0.5


def test_stratified_keeps_every_cell_equally_often():
    words = keras_rise.masks.stratified_words(7, 64, 128, 51).numpy()
    kept = (words[:, :49] < 0.5).reshape(2, 64, 49).sum(axis=1)
    np.testing.assert_array_equal(kept, 32)
    independent = keras_rise.masks.uniform_words(7, 64, 128, 51).numpy()
    assert np.ptp((independent[:64, :49] < 0.5).sum(axis=0)) > 0


def test_tolerance_stops_early_and_meets_it(cnn):
    explainer = keras_rise.RiseExplainer(
        cnn, num_masks=2000, batch_size=25, centered_scores=True, score_regression=False
    )
    saliency, stderr = explainer.explain(IMAGE, 0, tolerance=0.5, return_stderr=True)
    used = int(explainer.last_num_masks)
    assert 4 * 25 <= used < 2000 and used % 25 == 0
    relative = np.sqrt(np.mean(stderr**2)) / saliency.std()
    assert relative < 0.5
    # A tolerance too tight to reach uses every mask, says so, and equals no
    # tolerance.
    with pytest.warns(UserWarning, match="not reached"):
        full = explainer.explain(IMAGE, 0, tolerance=1e-9)
    assert int(explainer.last_num_masks) == 2000
    np.testing.assert_allclose(full, explainer.explain(IMAGE, 0), rtol=1e-6)
    # The tolerance is a tensor: new values do not retrace (no tolerance is
    # the loop without the check, traced once).
    assert explainer._explain_fn.experimental_get_tracing_count() == 2


def test_layer_takes_the_options(cnn):
    inputs = keras.Input((32, 32, 3))
    layer = keras_rise.RiseLayer(
        cnn, num_masks=60, complementary_masks=True, centered_scores=True, seed=1
    )
    model = keras.Model(inputs, layer(inputs))
    explainer = keras_rise.RiseExplainer(
        cnn, num_masks=60, complementary_masks=True, centered_scores=True, seed=1
    )
    np.testing.assert_allclose(
        model.predict(IMAGE[None], verbose=0)[0], explainer.explain(IMAGE), atol=1e-5
    )
    assert layer.get_config()["complementary_masks"] is True


@pytest.mark.parametrize(
    "arguments,error,match",
    [
        ({"complementary_masks": True, "keep_prob": 0.3}, ValueError, "keep_prob=0.5"),
        ({"complementary_masks": 1}, TypeError, "bool"),
        ({"mask_sampling": "sobol"}, ValueError, "mask_sampling"),
        ({"centered_scores": "yes"}, TypeError, "centered_scores"),
        ({"score_regression": 1}, TypeError, "score_regression"),
    ],
)
def test_option_errors(cnn, arguments, error, match):
    with pytest.raises(error, match=match):
        keras_rise.RiseExplainer(cnn, **arguments)


@pytest.mark.parametrize(
    "tolerance,error",
    [(0.0, ValueError), (-1.0, ValueError), (np.nan, ValueError), ("1", TypeError)],
)
def test_tolerance_errors(cnn, tolerance, error):
    with pytest.raises(error, match="tolerance"):
        keras_rise.RiseExplainer(cnn, num_masks=10).explain(IMAGE, tolerance=tolerance)


def test_engine_sums_with_every_field_merge_exactly(cnn):
    config = keras_rise.RiseConfig(
        num_masks=384,
        batch_size=40,
        seed=3,
        mask_sampling="stratified",
        complementary_masks=True,
        centered_scores=True,
        score_regression=False,
    )
    engine = keras_rise.RiseEngine(cnn, config)
    images = tf.constant(IMAGE[None])
    ids = tf.constant([2])
    # Units of 128 masks (stratified blocks of 64, in pairs), steps of 32.
    assert engine.step_layout(images) == (32, 128)
    whole = engine.sums(images, keras_rise.scores.ClassScore(), ids, 0, 384, 1)
    # Splits between units keep the same units, so every field matches.
    merged = engine.sums(images, keras_rise.scores.ClassScore(), ids, 0, 128, 1).merge(
        engine.sums(images, keras_rise.scores.ClassScore(), ids, 128, 256, 1)
    )
    for mine, theirs in zip(whole, merged):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_jit_compile_gives_the_same_maps(cnn, images):
    plain = keras_rise.RiseExplainer(cnn, num_masks=120, batch_size=50)
    compiled = keras_rise.RiseExplainer(
        cnn, num_masks=120, batch_size=50, jit_compile=True
    )
    np.testing.assert_allclose(
        compiled.explain(images), plain.explain(images), rtol=1e-4, atol=1e-6
    )


def _loop_nodes_outside_xla(explainer):
    """Nodes of the explain loop's body, with those inside XLA programs left
    out (the body's function and what it calls, recursively)."""
    function = explainer._loop.function._list_all_concrete_functions()[0]
    library = {f.signature.name: f for f in function.graph.as_graph_def().library.function}
    nodes, seen = [], set()

    def compiled(attrs):
        return "_XlaMustCompile" in attrs and attrs["_XlaMustCompile"].b

    def walk(name):
        if name in seen or name not in library or compiled(library[name].attr):
            return
        seen.add(name)
        for node in library[name].node_def:
            if compiled(node.attr):
                continue
            nodes.append(node)
            for attr in node.attr.values():
                if attr.HasField("func"):
                    walk(attr.func.name)

    for name in library:
        if name.startswith("while_body"):
            walk(name)
    return nodes


def test_jit_compile_puts_the_model_and_the_estimator_in_xla_programs(cnn, images):
    # On a GPU every op outside XLA is a launch of its own: with
    # `jit_compile=True` only the loop's counters and schedule stay outside,
    # on the host (int32 and bool ops), the branch that launches the
    # estimator's refit between units, and the one int64 add on the device
    # that advances the first mask index (in the model's program, the next
    # step's program would wait for this one to finish: see the engine's
    # `sums`).
    options = {"num_masks": 256, "batch_size": 64}
    plain = keras_rise.RiseExplainer(cnn, **options)
    compiled = keras_rise.RiseExplainer(cnn, jit_compile=True, **options)
    plain.explain(images, verbose=0)
    compiled.explain(images, verbose=0)
    inside = {
        "Conv2D", "MatMul", "Cholesky", "MatrixTriangularSolve", "Square", "Sum",
        "StatelessRandomUniformV2", "TopKV2",
    }
    assert inside <= {node.op for node in _loop_nodes_outside_xla(plain)}
    outside = [
        node for node in _loop_nodes_outside_xla(compiled)
        if node.op not in ("Const", "Identity", "NoOp")
    ]
    assert not inside & {node.op for node in outside}
    on_device = [
        (node.op, node.attr["T"].type) for node in outside
        if "CPU" not in node.device and node.op != "StatelessIf"
        and node.attr["T"].type not in (0, tf.int32.as_datatype_enum)
    ]
    assert on_device == [("AddV2", tf.int64.as_datatype_enum)]
    assert [node.op for node in outside].count("StatelessIf") <= 1


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_follows_the_model_weights(policy, images):
    model = small_cnn(seed=5)
    # Plain RISE: on this untrained CNN the default map is nearly flat, and
    # its correlation would measure rounding, not the policy.
    options = {"num_masks": 100, "score_regression": False}
    reduced = keras_rise.RiseExplainer(model, dtype_policy=policy, **options)
    full = keras_rise.RiseExplainer(model, **options)
    saliency = reduced.explain(images, 0)
    assert saliency.dtype == np.float32
    assert reduced.engine._forward.layers[1].compute_dtype == policy.split("_")[1]
    reference = full.explain(images, 0)
    assert np.corrcoef(saliency.ravel(), reference.ravel())[0, 1] > 0.99
    # Weights changed after the explainer was built (as in training) are used.
    model.set_weights([w * 1.5 for w in model.get_weights()])
    changed = full.explain(images, 0)
    assert np.corrcoef(reduced.explain(images, 0).ravel(), changed.ravel())[0, 1] > 0.99
    assert not np.allclose(changed, reference, atol=1e-4)


def test_mixed_precision_reaches_models_inside_the_model():
    # Field test: a backbone model inside the explained model (transfer
    # learning) stayed in float32 under dtype_policy, without a word.
    inner_inputs = keras.Input((16, 16, 3))
    backbone = keras.Model(inner_inputs, keras.layers.Conv2D(4, 3)(inner_inputs))
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    explainer = keras_rise.RiseExplainer(model, dtype_policy="mixed_bfloat16", num_masks=64)
    clone = explainer.engine._forward
    inner = [layer for layer in clone.layers if isinstance(layer, keras.Model)][0]
    assert inner.layers[-1].compute_dtype == "bfloat16"
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    reference = keras_rise.RiseExplainer(model, num_masks=64).explain(image, 0, verbose=0)
    saliency = explainer.explain(image, 0, verbose=0)
    assert np.abs(saliency - reference).max() < 0.05 * np.abs(reference).max() + 1e-3


def test_mixed_precision_keeps_an_adapted_normalization():
    # Field test: the float16 copy of a model with an adapted Normalization
    # layer normalized with the statistics of an empty adapt (mean 0,
    # variance 1), so its scores and maps were wrong without a word.
    rng = np.random.default_rng(0)
    images = rng.random((4, 16, 16, 3)).astype(np.float32)
    normalization = keras.layers.Normalization()
    normalization.adapt(images * 10 + 5)
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(normalization(inputs))
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    options = {"num_masks": 100, "score_regression": False}
    full = keras_rise.RiseExplainer(model, **options).explain_result(images * 10 + 5, 0)
    reduced = keras_rise.RiseExplainer(model, dtype_policy="mixed_float16", **options)
    half = reduced.explain_result(images * 10 + 5, 0)
    np.testing.assert_allclose(half.scores, full.scores, atol=2e-3)
    assert np.corrcoef(half.saliency.ravel(), full.saliency.ravel())[0, 1] > 0.99


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, images):
        return self.dense(keras.ops.mean(images, axis=(1, 2)))


def test_dtype_policy_errors(cnn):
    with pytest.raises(ValueError, match="dtype_policy"):
        keras_rise.RiseExplainer(cnn, dtype_policy="float8")
    model = _Subclassed()
    model(IMAGE[None])
    with pytest.raises(ValueError, match="functional or Sequential"):
        keras_rise.RiseExplainer(model, dtype_policy="mixed_bfloat16")


class _CountImages(keras.layers.Layer):
    """Passes images through, counting how many the model has seen."""

    def build(self, input_shape):
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, images):
        self.seen.assign_add(keras.ops.cast(keras.ops.shape(images)[0], "float32"))
        return images


def test_all_classes_and_many_images_share_the_forward_passes():
    inputs = keras.Input((32, 32, 3))
    counter = _CountImages()
    pooled = keras.layers.GlobalAveragePooling2D()(counter(inputs))
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(pooled))
    explainer = keras_rise.RiseExplainer(model, num_masks=90, batch_size=40)
    images = np.random.default_rng(2).random((4, 32, 32, 3), dtype=np.float32)
    explainer.explain(images)  # trace
    passes = {}
    for targets in (None, "all"):
        before = float(counter.seen.numpy())
        explainer.explain(images, targets=targets)
        passes[targets] = float(counter.seen.numpy()) - before
    # Every mask is applied to each image once, plus one unmasked pass each.
    assert passes[None] == passes["all"] == 4 * 90 + 4


@pytest.mark.parametrize(
    "shape,grid_size,binary",
    [
        ((40,), 5, False), ((6, 10, 10), 3, False), ((20,), None, True), ((21,), 4, True),
        ((40, 3), (5, 3), (False, True)),  # a series' steps blended, channels whole
    ],
)
def test_closed_form_on_any_axes_matches_the_masks(shape, grid_size, binary):
    # E[(φ - p) · shrink(mask)], the covariance the regression adds exactly,
    # against its Monte Carlo average over many masks of the family.
    regression = keras_rise.regression.ScoreRegression(shape, grid_size, 0.5, binary)
    factors = keras_rise.masks.factors_in_range(3, 0, 20000, shape, grid_size, 0.5,
                                                binary=binary)
    masks = tf.reshape(keras_rise.masks.expand(factors), [20000, -1])
    features = regression.factor_features(factors).numpy()
    np.testing.assert_allclose(features, regression.features(masks), atol=1e-5)
    np.testing.assert_allclose(
        regression.factor_shrink(factors), regression.shrink(masks), atol=1e-5
    )
    products = (features - 0.5)[:, :, None] * regression.shrink(masks).numpy()[:, None, :]
    sampled = products.mean(axis=0)
    stderr = products.std(axis=0) / np.sqrt(20000)
    exact = regression.expected_part(tf.eye(regression.num_features)).numpy()
    assert exact.shape == sampled.shape
    assert np.abs(exact - sampled).max() < 5 * stderr.max() + 1e-4
    assert np.abs(exact).max() > 0.05  # not trivially zero
