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
    config = keras_rise.RiseConfig(num_masks=120, batch_size=20, seed=3)
    engine = keras_rise.RiseEngine(cnn, config)
    images = tf.constant(np.random.default_rng(1).random((1, 32, 32, 3), np.float32))
    score, ids = keras_rise.scores.ClassScore(), tf.constant([2])
    whole = engine.sums(images, score, ids, 0, 120, 1)
    merged = estimators.merge(
        engine.sums(images, score, ids, 0, 60, 1), engine.sums(images, score, ids, 60, 60, 1)
    )
    assert isinstance(whole, estimators.RegressionSums)
    # Sums over masks merge exactly, whatever the split.
    exact = [whole.masks, whole.feature_sum, whole.feature_gram, whole.feature_score,
             whole.feature_mask]
    split = [merged.masks, merged.feature_sum, merged.feature_gram, merged.feature_score,
             merged.feature_mask]
    for mine, theirs in zip(tf.nest.flatten(exact), tf.nest.flatten(split)):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    # The control sums (for the standard error) are over steps with a fit of
    # earlier steps: all 6 steps but the first as one loop, 2 + 2 when split.
    assert float(whole.control_steps) == 5.0
    assert float(merged.control_steps) == 4.0


def test_paper_and_centred_maps_from_hand_made_sums():
    sums = estimators.RiseSums(
        weighted=tf.constant([[3.0, 1.0]]),  # two masks, two pixels
        count=tf.constant(2.0),
        mask_sum=tf.constant([2.0, 1.0]),
        score_sum=tf.constant([2.0]),
        steps=tf.constant(1.0),
        weighted_sq=tf.zeros([1, 2]),
        weighted_mask=tf.zeros([1, 2]),
        mask_sq=tf.zeros([2]),
    )
    family = keras_rise.masks.ImageMasks((1, 2), grid_size=1, keep_prob=0.5, seed=0)
    paper = estimators.PaperEstimator(family)
    np.testing.assert_allclose(paper.saliency_rows(sums), [[3.0, 1.0]])
    # Centred: c + (W - c · M) / (N p), c = 1 (the mean score).
    centred = estimators.PaperEstimator(family, centered=True)
    np.testing.assert_allclose(centred.saliency_rows(sums), [[2.0, 1.0]])
    # One step: no spread between steps, no standard error.
    assert np.isnan(paper.stderr_rows(sums).numpy()).all()
