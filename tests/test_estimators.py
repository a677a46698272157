"""Estimators own their sums: they merge with tf.nest and normalise to maps."""

import numpy as np
import tensorflow as tf

import keras_rise
from keras_rise import estimators


def test_each_option_picks_its_estimator():
    def estimator(**options):
        config = keras_rise.RiseConfig(**options)
        return estimators.for_config(
            config, keras_rise.masks.ImageMasks.for_config(config, (32, 32))
        )

    assert isinstance(estimator(), estimators.RegressionEstimator)
    paper = estimator(score_regression=False)
    assert isinstance(paper, estimators.PaperEstimator) and not paper.centered
    assert estimator(score_regression=False, centered_scores=True).centered


def test_regression_sums_merge_exactly_over_split_ranges(cnn):
    # The default samples in runs of 128 masks; steps of 64 tile them.
    config = keras_rise.RiseConfig(num_masks=512, batch_size=64, seed=3)
    engine = keras_rise.RiseEngine(cnn, config)
    images = tf.constant(np.random.default_rng(1).random((1, 32, 32, 3), np.float32))
    assert engine.step_layout(images) == (64, 128)
    score, ids = keras_rise.scores.ClassScore(), tf.constant([2])
    whole = engine.sums(images, score, ids, 0, 512, 1)
    merged = estimators.merge(
        engine.sums(images, score, ids, 0, 256, 1), engine.sums(images, score, ids, 256, 256, 1)
    )
    assert isinstance(whole, estimators.RegressionSums)
    # Sums over masks merge exactly, whatever the split; so do the spreads
    # of whole units when the split falls between units.
    for mine, theirs in zip(tf.nest.flatten(whole.masks), tf.nest.flatten(merged.masks)):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    exact = [whole.feature_sum, whole.feature_gram, whole.feature_score, whole.feature_mask]
    split = [merged.feature_sum, merged.feature_gram, merged.feature_score,
             merged.feature_mask]
    for mine, theirs in zip(exact, split):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    assert float(whole.units) == float(merged.units) == 4.0
    # The control sums (for the regression's standard error) are over units
    # with a fit of earlier units: all 4 but the first as one loop, 1 + 1
    # when split. Every unit is closed.
    assert float(whole.control_units) == 3.0
    assert float(merged.control_units) == 2.0
    assert float(whole.unit_control_count) == float(whole.masks.unit_count) == 0.0


def test_a_unit_is_a_whole_run_of_balanced_masks(cnn):
    images = tf.constant(np.random.default_rng(1).random((1, 32, 32, 3), np.float32))
    score, ids = keras_rise.scores.ClassScore(), tf.constant([2])

    def units(count, **options):
        engine = keras_rise.RiseEngine(cnn, keras_rise.RiseConfig(**options))
        return engine.step_layout(images), float(engine.sums(images, score, ids, 0, count, 1).units)

    # Independent masks: every step is a unit (the last one partial).
    assert units(130, batch_size=20, mask_sampling="independent") == ((20, 20), 7.0)
    # Orthogonal runs of 128: steps shrink to a power of two that tiles a
    # run; a unit is a run, and a range starting mid-run closes its part.
    assert units(300, batch_size=20) == ((16, 128), 3.0)
    assert units(300, batch_size=300) == ((256, 256), 2.0)
    # Stratified blocks of 64, in complementary pairs: runs of 128 masks.
    assert units(
        256, batch_size=100, mask_sampling="stratified", complementary_masks=True,
        score_regression=False,
    ) == ((64, 128), 2.0)


def test_paper_and_centred_maps_from_hand_made_sums():
    sums = estimators.RiseSums(
        weighted=tf.constant([[3.0, 1.0]]),  # two masks, two pixels
        count=tf.constant(2.0),
        mask_sum=tf.constant([2.0, 1.0]),
        score_sum=tf.constant([2.0]),
        units=tf.constant(1.0),
        weighted_sq=tf.zeros([1, 2]),
        weighted_mask=tf.zeros([1, 2]),
        mask_sq=tf.zeros([2]),
        unit_weighted=tf.zeros([1, 2]),
        unit_mask=tf.zeros([2]),
        unit_count=tf.constant(0.0),
    )
    family = keras_rise.masks.ImageMasks((1, 2), grid_size=1, keep_prob=0.5, seed=0)
    paper = estimators.PaperEstimator(family)
    np.testing.assert_allclose(paper.saliency_rows(sums), [[3.0, 1.0]])
    # Centred: c + (W - c · M) / (N p), c = 1 (the mean score).
    centred = estimators.PaperEstimator(family, centered=True)
    np.testing.assert_allclose(centred.saliency_rows(sums), [[2.0, 1.0]])
    # One unit: no spread between units, no standard error.
    assert np.isnan(paper.stderr_rows(sums).numpy()).all()


def test_wide_binary_inputs_are_fitted_on_blocks_and_stay_unbiased():
    # Field test: a vector of 4096 features read by a Dense layer (binary
    # masks, a cell per feature) gave the regression 4096 features, and one
    # row's explanation took 80 times the grid's. Beyond MAX_BINARY_FEATURES
    # cells, neighbouring cells share a feature; the map's expectation is
    # the paper's still.
    import keras

    from keras_rise import regression

    assert regression.feature_grid((300,), None, binary=True) == (300,)
    assert regression.feature_grid((4096,), None, binary=True) == (
        regression.MAX_BINARY_FEATURES,
    )
    width = regression.MAX_BINARY_FEATURES + 88
    weights = np.random.default_rng(0).normal(size=width).astype(np.float32)
    inputs = keras.Input((width,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights[:, None]])
    row = np.ones(width, np.float32)
    exact = weights * 0.5 + 0.5 * weights.sum()
    explainer = keras_rise.RiseExplainer(model, num_masks=2000)
    assert explainer._engine.estimator(((width,), False)).regression.num_features == (
        regression.MAX_BINARY_FEATURES
    )
    saliency = explainer.explain(row, targets=keras_rise.scores.OutputScore(), verbose=0)
    paper = keras_rise.RiseExplainer(model, num_masks=2000, score_regression=False).explain(
        row, targets=keras_rise.scores.OutputScore(), verbose=0
    )
    fitted_r, paper_r = np.corrcoef(saliency, exact)[0, 1], np.corrcoef(paper, exact)[0, 1]
    assert fitted_r > 0.95 and fitted_r > paper_r + 0.03, (fitted_r, paper_r)
    # Its level: the mean score, whose noise is sd(score) / sqrt(N) = 12 / 45.
    assert abs(np.mean(saliency - exact)) < 0.5
