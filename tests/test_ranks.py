"""RISE beyond 2-D images: signals, vectors, token sequences, volumes and videos.

Each modality gets an analytic model whose important region is known; the
maps must rank it first (ranking AUC ≥ 0.9) for the default estimator and
the paper's, and the rest of the API (targets, stderr, tolerance, seeds,
errors) must behave as on images.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_rise


def ranking_auc(saliency, important):
    """Probability that an important position outranks an unimportant one."""
    inside, outside = saliency[important], saliency[~important]
    greater = (inside[:, None] > outside[None, :]).mean()
    ties = (inside[:, None] == outside[None, :]).mean()
    return greater + 0.5 * ties


def _region_score(region, sharpness=6.0):
    """A model whose score is a sigmoid of the input's mean over `region`
    (a tuple of slices over the axes after the batch)."""

    def score(x):
        inside = tf.reduce_mean(x[(slice(None), *region)], axis=list(range(1, x.shape.rank)))
        return tf.sigmoid(sharpness * (inside - 0.5))[:, None]

    return score


def _model(shape, function, dtype="float32", outputs=1):
    inputs = keras.Input(shape, dtype=dtype)
    layer = keras.layers.Lambda(function, output_shape=(outputs,))
    return keras.Model(inputs, layer(inputs))


SIGNAL = (64, 2)  # (time steps, channels)
VECTOR = (48,)  # (features,), no channel axis
VOLUME = (8, 16, 16, 1)  # (depth, height, width, channels)
VIDEO = (6, 16, 16, 3)  # (frames, height, width, channels)

CASES = {
    "signal": (SIGNAL, (slice(20, 30), slice(0, 1)), None),
    "vector": (VECTOR, (slice(30, 40),), None),
    "volume": (VOLUME, (slice(2, 4), slice(4, 8), slice(9, 13)), (4, 7, 7)),
    "video": (VIDEO, (slice(1, 3), slice(8, 12), slice(2, 6)), (3, 5, 5)),
}


# Module-scoped models and explainers: an explainer holds its compiled loop,
# and the tests that explain inputs of equal shapes with the same model and
# options share its traces (a new model, or new options, traces it anew).
@pytest.fixture(scope="module")
def region_models():
    """Each case's model of known region."""
    return {name: _model(shape, _region_score(region)) for name, (shape, region, _) in
            CASES.items()}


@pytest.fixture(scope="module")
def region_explainers(region_models):
    """The default estimator on each case's model, 400 masks."""
    return {
        name: keras_rise.RiseExplainer(model, num_masks=400, grid_size=CASES[name][2])
        for name, model in region_models.items()
    }


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("score_regression", [True, False])
def test_known_region_ranks_first_on_every_rank(
    name, score_regression, region_models, region_explainers
):
    shape, region, grid_size = CASES[name]
    inputs = np.ones((2, *shape), np.float32)
    if score_regression:
        explainer = region_explainers[name]
    else:
        explainer = keras_rise.RiseExplainer(
            region_models[name], num_masks=400, grid_size=grid_size, score_regression=False
        )
    saliency = explainer.explain(inputs)
    spatial = shape if len(shape) == 1 else shape[:-1]
    assert saliency.shape == (2, *spatial)
    important = np.zeros(spatial, bool)
    important[region[: len(spatial)]] = True
    for map_ in saliency:
        assert ranking_auc(map_, important) >= 0.9


KEYWORDS = (7, 9)


def _keyword_model(length=30):
    """Token ids `(batch, length)`: a sigmoid of how many keywords appear."""

    def score(tokens):
        hits = tf.reduce_sum(
            tf.cast(tf.reduce_any(tokens[..., None] == KEYWORDS, axis=-1), tf.float32),
            axis=1,
        )
        return tf.sigmoid(2.0 * hits - 1.0)[:, None]

    return _model((length,), score, dtype="int32")


def _sentences(length=30):
    tokens = np.arange(100, 100 + 2 * length).reshape(2, length)
    tokens[0, [5, 17]] = KEYWORDS
    tokens[1, [0, 29]] = KEYWORDS
    return tokens


@pytest.fixture(scope="module")
def keyword_model():
    return _keyword_model()


@pytest.fixture(scope="module")
def keyword_explainer(keyword_model):
    """The default estimator on `keyword_model`, 300 masks."""
    return keras_rise.RiseExplainer(keyword_model, num_masks=300)


@pytest.mark.parametrize("grid_size", [None, 10])
@pytest.mark.parametrize("score_regression", [True, False])
def test_keywords_rank_first_in_token_sequences(
    grid_size, score_regression, keyword_model, keyword_explainer
):
    tokens = _sentences()
    if grid_size is None and score_regression:
        explainer = keyword_explainer
    else:
        explainer = keras_rise.RiseExplainer(
            keyword_model, num_masks=300, grid_size=grid_size, score_regression=score_regression
        )
    saliency = explainer.explain(tokens)
    assert saliency.shape == (2, 30)
    for map_, ids in zip(saliency, tokens):
        important = np.isin(ids, KEYWORDS)
        assert ranking_auc(map_, important) >= 0.9
        if grid_size is None:  # one cell per token: the keywords stand alone
            assert np.argsort(map_)[-2:].tolist() in (
                np.flatnonzero(important).tolist(),
                np.flatnonzero(important)[::-1].tolist(),
            )


def test_token_masks_replace_tokens_with_the_fill_id():
    # The score is 1000 on any masked copy holding an id that is neither the
    # token's own nor the fill: the map is exactly 0 only if none does.
    original = tf.constant([[3, 4, 5, 6, 7, 8]])

    def score(tokens):
        own, fill = tf.equal(tokens, original), tf.equal(tokens, 1)
        valid = tf.reduce_all(own | fill, axis=1)
        both = tf.reduce_any(own, axis=1) & tf.reduce_any(fill, axis=1)
        return tf.stack([1000.0 * (1.0 - tf.cast(valid, tf.float32)),
                         tf.cast(both, tf.float32)], axis=1)

    model = _model((6,), score, dtype="int32", outputs=2)
    explainer = keras_rise.RiseExplainer(model, num_masks=64, fill_value=1, grid_size=3)
    maps = explainer.explain(original.numpy(), targets="all")
    np.testing.assert_array_equal(maps[0, :, 0], 0.0)
    assert maps[0, :, 1].max() > 0.5  # copies did mix kept tokens and fills
    # Asking for blended masks on token ids was ignored: now refused.
    for blended in (False, (False,)):
        with pytest.raises(ValueError, match=r"never blended: `binary_masks` must be None or"):
            keras_rise.RiseExplainer(model, num_masks=64, fill_value=1, binary_masks=blended
                                     ).explain(original.numpy(), targets="all")


def test_token_inputs_keep_their_integer_ids():
    model = _keyword_model(8)
    tokens = np.array([7, 1, 2, 3, 4, 5, 6, 9])
    explainer = keras_rise.RiseExplainer(model, num_masks=200, fill_value=0)
    single = explainer.explain(tokens)
    assert single.shape == (8,)
    # Whole floats are accepted as ids; fractions are not.
    np.testing.assert_allclose(explainer.explain(tokens.astype(np.float32)), single)
    with pytest.raises(TypeError, match="token ids"):
        explainer.explain(tokens + 0.5)
    # A negative id is no embedding row (the field test got a map back).
    with pytest.raises(ValueError, match="token ids >= 0.*-3"):
        explainer.explain(np.array([7, 1, -3, 3, 4, 5, 6, 9]))
    for fill in ("mean", "blur", 0.5):
        with pytest.raises(ValueError, match="fill_value.*token id"):
            keras_rise.RiseExplainer(model, num_masks=10, fill_value=fill).explain(tokens)


def test_ids_past_the_vocabulary_say_which_and_where():
    # Field test: only Keras' "Exception encountered when calling
    # Embedding.call()." came through; the line that says what was cut off.
    inputs = keras.Input((6,), dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 2)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(embedded))
    explainer = keras_rise.RiseExplainer(model, num_masks=16, fill_value=0)
    message = r"Embedding.call\(\). indices\[0,\d\] = 15 is not in \[0, 10\)"
    with pytest.raises(ValueError, match=message):
        explainer.explain(np.array([1, 2, 15, 3, 4, 5]), targets=keras_rise.scores.OutputScore())


def test_token_map_equals_the_expected_map_of_a_linear_score():
    # score = Σ_i w_i · [token i kept]: with one cell per token the
    # expected map E[score · mask_i] / p is w_i (1 - p) + p Σ_j w_j. The
    # regression fits such a score exactly (up to its small ridge); plain
    # RISE is left with its Monte Carlo noise.
    weights = np.linspace(-1, 1, 12).astype(np.float32)

    def score(tokens):
        kept = tf.cast(tokens != 0, tf.float32)
        return tf.reduce_sum(kept * weights, axis=1, keepdims=True)

    model = _model((12,), score, dtype="int32")
    tokens = np.arange(1, 13)[None]
    expected = weights * 0.5 + 0.5 * weights.sum()
    fitted = keras_rise.RiseExplainer(model, num_masks=500).explain(tokens)[0]
    plain = keras_rise.RiseExplainer(model, num_masks=500, score_regression=False)
    plain_error = np.abs(plain.explain(tokens)[0] - expected).max()
    assert np.abs(fitted - expected).max() < 0.01 < plain_error


def test_binary_masks_credit_each_feature_of_a_table_alone(tmp_path):
    # Field test: a tabular model's (features,) input is masked as a signal,
    # with the paper's blended cells, so a feature shares its neighbours'
    # credit (for y = x2 + x4 the unused x3 came first). With binary masks
    # each feature is kept or filled alone: at x = 1 and fill 0 the expected
    # map of y = Σ w_i x_i is w_i (1 - p) + p Σ_j w_j.
    from keras_rise import cli

    weights = np.zeros(10, np.float32)
    weights[[2, 4]] = 1.0
    inputs = keras.Input((10,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([weights[:, None]])
    row = np.ones(10, np.float32)
    expected = weights * 0.5 + 0.5 * weights.sum()
    explainer = keras_rise.RiseExplainer(model, num_masks=256, binary_masks=True)
    np.testing.assert_allclose(explainer.explain(row), expected, atol=1e-3)
    with pytest.raises(ValueError, match="NaN or inf values"):  # not "pixels"
        explainer.explain(np.full(10, np.nan, np.float32))
    plain = keras_rise.RiseExplainer(
        model, num_masks=2000, binary_masks=True, score_regression=False
    ).explain(row)
    assert set(np.argsort(plain)[-2:]) == {2, 4} and np.abs(plain - expected).max() < 0.08
    blended = keras_rise.RiseExplainer(model, num_masks=256, binary_masks=False).explain(row)
    assert np.abs(blended - expected).max() > 0.2  # the option's reason
    # By default a vector that Dense layers read is a table's features.
    np.testing.assert_array_equal(
        keras_rise.RiseExplainer(model, num_masks=256).explain(row), explainer.explain(row)
    )

    # The command line's --binary-masks, and the layer's config.
    model.save(tmp_path / "table.keras")
    np.save(tmp_path / "row.npy", row)
    argv = ["explain", str(tmp_path / "table.keras"), str(tmp_path / "row.npy")]
    out = tmp_path / "maps"
    assert cli.main(argv + ["--num-masks", "256", "--binary-masks", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "row.npy"), expected, atol=1e-3)
    layer = keras_rise.RiseLayer(model, num_masks=256, binary_masks=True)
    assert keras_rise.RiseLayer.from_config(layer.get_config()).config.binary_masks

    # Signals (steps, channels) get one value per step; images are refused.
    signal = _model((12, 2), lambda x: tf.reduce_sum(x[:, 3:5, 0], axis=1, keepdims=True))
    saliency = keras_rise.RiseExplainer(signal, num_masks=256, binary_masks=True).explain(
        np.ones((12, 2), np.float32)
    )
    assert saliency.shape == (12,) and set(np.argsort(saliency)[-2:]) == {3, 4}
    image_model = _model((8, 8, 3), lambda x: tf.reduce_mean(x, axis=[1, 2, 3])[:, None])
    for every_axis in (True, (True, True)):
        with pytest.raises(ValueError, match=r"on every axis masks inputs along one axis.*"
                           r"Received: binary_masks=\(?True"):
            keras_rise.RiseExplainer(image_model, num_masks=16, binary_masks=every_axis).explain(
                np.ones((8, 8, 3), np.float32)
            )
    # False on every axis is the default's blended masks.
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        keras_rise.RiseExplainer(image_model, num_masks=64, binary_masks=(False, False))
        .explain(image),
        keras_rise.RiseExplainer(image_model, num_masks=64).explain(image),
    )


def test_per_channel_maps_of_a_multivariate_series(tmp_path):
    # Field test: a forecaster of channel 2 alone, explained per step and
    # channel with grid_size=(T, C) (read as a grayscale image: cells blended
    # across channels at a random shift), credited channels 1 and 3 with
    # most of channel 2's map. binary_masks=(False, True) keeps or fills
    # each channel whole and blends only the steps: the other channels'
    # maps are flat at the mean score, exactly in expectation.
    from PIL import Image

    from keras_rise import cli

    steps, channels = 48, 4
    inputs = keras.Input((steps, channels))
    dense = keras.layers.Dense(1, activation="sigmoid")  # σ(6 · (mean - 0.5))
    model = keras.Model(
        inputs, dense(keras.layers.Flatten()(keras.layers.Cropping1D((16, 16))(inputs)))
    )
    weights = np.zeros((16, channels), np.float32)
    weights[:, 2] = 6.0 / 16
    dense.set_weights([weights.reshape(-1, 1), np.array([-3.0], np.float32)])
    series = np.ones((steps, channels), np.float32)
    explainer = keras_rise.RiseExplainer(model, num_masks=512, binary_masks=(False, True))
    saliency = explainer.explain(series, targets=keras_rise.scores.OutputScore())
    assert saliency.shape == (steps, channels)
    important = np.zeros((steps, channels), bool)
    important[16:32, 2] = True
    assert ranking_auc(saliency, important) > 0.95
    others = saliency[:, [0, 1, 3]]
    assert np.ptp(others) < 0.1 * np.ptp(saliency[:, 2])  # flat: no credit leaks
    grayscale = keras_rise.RiseExplainer(model, num_masks=512, grid_size=(7, 4)).explain(
        series, targets=keras_rise.scores.OutputScore()
    )
    leaked = grayscale[16:32, [1, 3]].mean() - grayscale[:, 0].mean()
    assert leaked > 0.3 * (grayscale[16:32, 2].mean() - grayscale[:, 0].mean())
    assert ranking_auc(grayscale, important) < ranking_auc(saliency, important)

    # One bool per masked axis: a (steps, channels) series has two.
    with pytest.raises(ValueError, match=r"one bool per masked axis .*binary_masks=\(False, "):
        keras_rise.RiseExplainer(model, num_masks=16, binary_masks=(False, True, True)).explain(
            series
        )
    layer = keras_rise.RiseLayer(model, num_masks=512, binary_masks=(False, True))
    assert keras_rise.RiseLayer.from_config(layer.get_config()).config.binary_masks == (
        False, True
    )
    np.testing.assert_allclose(layer(series[None])[0], saliency, atol=1e-5)

    # The command line: --binary-masks-per-axis no,yes, and a strip per channel.
    model.save(tmp_path / "series.keras")
    np.save(tmp_path / "series.npy", series)
    argv = ["explain", str(tmp_path / "series.keras"), str(tmp_path / "series.npy")]
    out = tmp_path / "maps"
    code = cli.main(argv + ["--num-masks", "512", "--binary-masks-per-axis", "no,yes",
                            "--out", str(out)])
    assert code == 0
    np.testing.assert_allclose(np.load(out / "series.npy"), saliency, atol=1e-5)
    picture = np.asarray(Image.open(out / "series.png"))
    height = picture.shape[0]
    # Each strip's band, a row above its (flat) line: channel 2's colours vary
    # along the steps, the others. barely (their maps are flat up to noise).
    bands = [picture[k * height // channels + 3, 40:].astype(float)  # right of its label
             for k in range(channels)]
    assert np.ptp(bands[2], axis=0).max() > 50
    assert all(np.ptp(bands[k], axis=0).max() < 40 for k in (0, 1, 3))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--binary-masks-per-axis", "no,maybe", "--out", str(out)])
    assert exit_info.value.code == 2


def _channel_model(steps=64, channels=4, channel=2, window=(20, 30)):
    """A linear model of one channel over a window of steps (20-29): 0.1 ·
    their sum."""
    inputs = keras.Input((steps, channels))
    dense = keras.layers.Dense(1)
    cropped = keras.layers.Cropping1D((window[0], steps - window[1]))(inputs)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(cropped)))
    weights = np.zeros((window[1] - window[0], channels), np.float32)
    weights[:, channel] = 0.1
    dense.set_weights([weights.reshape(-1, 1), np.zeros(1, np.float32)])
    return model


def test_per_channel_series_take_fills_grids_metrics_and_exports_as_series(tmp_path):
    # Field test of binary_masks=(False, True): the series rode on the
    # grayscale-image reading (steps, channels, 1), so "mean" averaged every
    # channel together, "blur" blurred across channels (and failed under 5
    # channels), a fill per channel was refused, values in [0, 3] were warned
    # of as 8-bit pixels, the export served "images" with a PNG endpoint,
    # explain_dataset refused series of several lengths, and a grid of fewer
    # cells than channels grouped channels at a random shift.
    from PIL import Image

    model, score = _channel_model(), keras_rise.scores.OutputScore()
    per_channel = dict(binary_masks=(False, True))
    series = np.zeros((64, 4), np.float32)
    series[:, 2] = 10.0
    for fill in ("mean", "blur"):  # each channel its own mean or blur: the data itself
        saliency = keras_rise.RiseExplainer(
            model, num_masks=128, fill_value=fill, **per_channel
        ).explain(series, targets=score)
        np.testing.assert_allclose(saliency, 10.0, rtol=1e-5)
    full = np.tile(np.arange(4.0, dtype=np.float32), (64, 1))
    expected = keras_rise.RiseExplainer(
        model, num_masks=128, fill_value=full, **per_channel).explain(series, targets=score)
    for fill in (np.arange(4.0), np.arange(4.0)[None]):  # per channel, as (C,) or (1, C)
        np.testing.assert_allclose(keras_rise.RiseExplainer(
            model, num_masks=128, fill_value=fill, **per_channel
        ).explain(series, targets=score), expected, atol=1e-5)
    # Grids: an int is the steps' cells, channels keep one each; a tuple must
    # give the channels their number.
    saliency = keras_rise.RiseExplainer(model, num_masks=256, grid_size=4, **per_channel
                                        ).explain(series, targets=score)
    assert np.ptp(saliency[:, [0, 1, 3]]) < 0.05 * np.ptp(saliency[:, 2])
    keras_rise.RiseExplainer(model, num_masks=16, grid_size=7, **per_channel).explain(
        np.zeros((64, 4), np.float32)[:, :4], targets=score)  # 7 cells > 4 channels: fine
    with pytest.raises(ValueError, match=r"one cell per position, its length: "
                                         r"grid_size=\(7, 4\)"):
        keras_rise.RiseExplainer(model, num_masks=16, grid_size=(7, 2), **per_channel
                                 ).explain(series, targets=score)
    with pytest.raises(ValueError, match="must give as many entries"):
        keras_rise.RiseExplainer(model, num_masks=16, grid_size=(16,), **per_channel)
    # Values are no pixels; curves blur along the steps alone.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a flat or falling curve: data's
        warnings.simplefilter("error", keras_rise.inputs.PixelRangeWarning)
        raw = np.random.default_rng(0).random((2, 64, 4)).astype(np.float32) * 3
        maps = keras_rise.RiseExplainer(model, num_masks=128, **per_channel).explain(
            raw, targets=score)
        curve = keras_rise.metrics.insertion(model, raw, maps, targets=score, **per_channel)
    blurred = keras_rise.metrics.gaussian_blur(raw[..., None], axes=[1]).numpy()[..., 0]
    np.testing.assert_allclose(
        curve.curves[:, 0], model.predict(blurred, verbose=0)[:, 0], rtol=1e-4)
    # Exported as a series: `inputs`, no image endpoint.
    keras_rise.export_explainer(model, tmp_path / "export", num_masks=128, **per_channel)
    loaded = tf.saved_model.load(str(tmp_path / "export" / "1"))
    serve = loaded.signatures["serving_default"]
    assert list(loaded.signatures) == ["serving_default"]
    np.testing.assert_allclose(serve(inputs=tf.constant(raw))["saliency"], maps, atol=1e-5)
    # Series of several lengths for a model of any length.
    inputs = keras.Input((None, 3))
    lstm = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    data = [np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32) for n in (9, 7)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(data), output_signature=tf.TensorSpec((None, 3), tf.float32))
    explainer = keras_rise.RiseExplainer(lstm, num_masks=64, **per_channel)
    keras_rise.explain_dataset(explainer, dataset, tmp_path / "maps", verbose=0)
    for index, one in enumerate(data):
        np.testing.assert_allclose(np.load(tmp_path / "maps" / f"{index:06d}.npy"),
                                   explainer.explain(one), atol=1e-5)
    # Token ids have one axis; the command's two spellings exclude each other.
    tokens = _model((20,), lambda x: tf.cast(x[:, :1], tf.float32), dtype="int32")
    with pytest.raises(ValueError, match=r"one bool per masked axis \(1 of them"):
        keras_rise.RiseExplainer(tokens, num_masks=16, binary_masks=(True, True)).explain(
            np.ones(20, np.int32))
    from keras_rise import cli

    model.save(tmp_path / "series.keras")
    np.save(tmp_path / "series.npy", series)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", str(tmp_path / "series.keras"), str(tmp_path / "series.npy"),
                  "--binary-masks-per-axis", "no,yes", "--binary-masks", "--out",
                  str(tmp_path / "out")])
    assert exit_info.value.code == 2
    # A short series (12 quarters of 6 variables) is drawn as a strip per
    # channel too, 50 pixels each (not as a 12 x 6 image).
    short = keras.Input((12, 6))
    keras.Model(short, keras.layers.Dense(2)(keras.layers.Flatten()(short))).save(
        tmp_path / "short.keras")
    np.save(tmp_path / "short.npy", np.ones((12, 6), np.float32))
    assert cli.main(["explain", str(tmp_path / "short.keras"), str(tmp_path / "short.npy"),
                     "--binary-masks-per-axis", "no,yes", "--num-masks", "64", "--out",
                     str(tmp_path / "short")]) == 0
    assert Image.open(tmp_path / "short" / "short.png").size == (640, 300)


def test_per_channel_changes_nothing_for_grayscale_images_and_channel_fills(tmp_path):
    # Review of the per-channel change: a fill given with its channel axis
    # got a second one when the batch matched its first axis (silently other
    # maps); a long narrow grayscale image (64 x 16, grid_size=(7, 7)) was
    # drawn as 16 strips, lost its 8-bit pixel warning and its curves' blur
    # ran along one axis. Series are known by binary_masks, not by shape.
    from PIL import Image

    from keras_rise import cli

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(0).random((8, 8, 8, 1)).astype(np.float32)
    fill = np.random.default_rng(3).random((8, 8, 1)).astype(np.float32)
    explainer = keras_rise.RiseExplainer(model, num_masks=64, fill_value=fill)
    together = explainer.explain(images, targets=0)
    np.testing.assert_allclose(together[3], explainer.explain(images[3], targets=0),
                               atol=1e-5)
    np.testing.assert_allclose(together, keras_rise.RiseExplainer(
        model, num_masks=64, fill_value=fill[..., 0]).explain(images, targets=0), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an untrained model's flat curves
        deleted = keras_rise.metrics.deletion(model, images, together, targets=0,
                                              fill_value=fill)
        one = keras_rise.metrics.deletion(model, images[3], together[3], targets=0,
                                          fill_value=fill)
    np.testing.assert_allclose(deleted.auc[3], one.auc, atol=1e-5)

    tall = keras.Input((64, 16))
    grayscale = keras.Model(tall, keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(tall)))
    grayscale.save(tmp_path / "tall.keras")
    image = np.random.default_rng(1).random((64, 16)).astype(np.float32)
    np.save(tmp_path / "tall.npy", image * 255)
    with pytest.warns(keras_rise.inputs.PixelRangeWarning):
        keras_rise.RiseExplainer(grayscale, num_masks=16, grid_size=(7, 7)).explain(image * 255)
    assert cli.main(["explain", str(tmp_path / "tall.keras"), str(tmp_path / "tall.npy"),
                     "--grid-size", "7,7", "--num-masks", "32", "--out",
                     str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "tall.png").size == (16, 64)  # an image
    saliency = keras_rise.RiseExplainer(grayscale, num_masks=32, grid_size=(7, 7)).explain(
        image, targets=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an untrained model's falling curve
        curve = keras_rise.metrics.insertion(grayscale, image, saliency, targets=0)
    blurred = keras_rise.metrics.gaussian_blur(image[None, ..., None]).numpy()[0, ..., 0]
    np.testing.assert_allclose(curve.curves[0], grayscale.predict(
        blurred[None], verbose=0)[0, 0], rtol=1e-5)

    # A short series (12 steps of 4 channels): its curves blur each
    # channel's steps when told its masks; the callback tells them.
    model, score = _channel_model(steps=12, window=(4, 8)), keras_rise.scores.OutputScore()
    series = np.random.default_rng(2).random((2, 12, 4)).astype(np.float32)
    maps = keras_rise.RiseExplainer(model, num_masks=64, binary_masks=(False, True)).explain(
        series, targets=score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a flat or falling curve
        curve = keras_rise.metrics.insertion(
            model, series, maps, targets=score, binary_masks=(False, True))
        deleted = keras_rise.metrics.deletion(model, series, maps, targets=score,
                                              fill_value="mean", binary_masks=(False, True))
    start = keras_rise.metrics.gaussian_blur(series[..., None], axes=[1]).numpy()[..., 0]
    np.testing.assert_allclose(curve.curves[:, 0], model.predict(start, verbose=0)[:, 0],
                               rtol=1e-4)
    each_mean = np.broadcast_to(series.mean(axis=1, keepdims=True), series.shape)
    np.testing.assert_allclose(deleted.curves[:, -1], model.predict(each_mean, verbose=0)[:, 0],
                               rtol=1e-4)
    callback = keras_rise.callbacks.DeletionInsertionCallback(
        series, num_masks=64, targets=score, binary_masks=(False, True))
    model.compile("adam", "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(series, np.zeros((2, 1)), epochs=1, verbose=0, callbacks=[callback])
    assert callback.insertion.curves.shape[0] == 2
    # The mask functions check grids as the explainer does.
    masks = keras_rise.generate_masks(4, (40, 4), 7, binary=(False, True))
    assert masks.shape == (4, 40, 4)
    with pytest.raises(ValueError, match=r"one cell per position, its length"):
        keras_rise.generate_masks(4, (40, 4), (7, 2), binary=(False, True))
    with pytest.raises(ValueError, match=r"must not exceed the length of a blended axis"):
        keras_rise.generate_masks(4, (8, 3), 9, binary=(False, True))


def test_per_axis_masks_in_folders_curves_and_messages(tmp_path, capsys):
    # Second field test: a folder of .npy inputs stopped at its first bad
    # file (images are passed over with a warning); the curves took any
    # binary_masks, and a video's per-frame flags changed none of its blur;
    # a series' messages spoke of heights; an export folder's version hint.
    from keras_rise import cli

    model, score = _channel_model(), keras_rise.scores.OutputScore()
    model.save(tmp_path / "series.keras")
    folder = tmp_path / "series"
    folder.mkdir()
    np.save(folder / "a_good.npy", np.ones((64, 4), np.float32))
    (folder / "b_junk.npy").write_bytes(b"not an array")
    np.save(folder / "c_short.npy", np.ones((50, 4), np.float32))
    np.save(folder / "d_good.npy", np.zeros((64, 4), np.float32))
    out = tmp_path / "maps"
    argv = ["explain", str(tmp_path / "series.keras"), str(folder), "--num-masks", "64",
            "--binary-masks-per-axis", "no,yes", "--out", str(out)]
    assert cli.main(argv) == 2
    assert sorted(path.name for path in out.glob("*.npy")) == ["a_good.npy", "d_good.npy"]
    error = capsys.readouterr().err
    assert "skipped" in error and "steps is 50" in error
    assert "2 of 4 files could not be read" in error
    assert cli.main(argv[:2] + [str(folder / "b_junk.npy")] + argv[3:]) == 2

    series = np.random.default_rng(0).random((2, 64, 4)).astype(np.float32)
    maps = keras_rise.RiseExplainer(model, num_masks=64, binary_masks=(False, True)).explain(
        series, targets=score)
    with pytest.raises(TypeError, match="`binary_masks` must be a bool"):
        keras_rise.metrics.deletion(model, series, maps, targets=score, binary_masks="yes")
    with pytest.raises(ValueError, match=r"one bool per masked axis \(2 of them\)"):
        keras_rise.metrics.deletion(model, series, maps, targets=score,
                                    binary_masks=(False, True, True))
    with pytest.raises(ValueError, match=r"`images` do not match the model input: steps is 50"):
        keras_rise.RiseExplainer(model, num_masks=16, binary_masks=(False, True)).explain(
            series[:, :50])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean = keras_rise.metrics.insertion(model, series, maps, targets=score,
                                            substrate="mean", binary_masks=(False, True))
    each_mean = np.broadcast_to(series.mean(axis=1, keepdims=True), series.shape)
    np.testing.assert_allclose(mean.curves[:, 0], model.predict(each_mean, verbose=0)[:, 0],
                               rtol=1e-4)

    # A video's frames kept whole: its fills run within each frame.
    clip = keras.Input((4, 12, 12, 1))
    video = keras.Model(clip, keras.layers.Dense(1)(keras.layers.Flatten()(clip)))
    frames = np.random.default_rng(1).random((1, 4, 12, 12, 1)).astype(np.float32)
    frame_maps = np.random.default_rng(2).random((1, 4, 12, 12)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        per_frame = keras_rise.metrics.deletion(
            video, frames, frame_maps, targets=score, fill_value="mean",
            binary_masks=(True, False, False))
    ends = video.predict(np.broadcast_to(frames.mean(axis=(2, 3), keepdims=True),
                                         frames.shape), verbose=0)
    np.testing.assert_allclose(per_frame.curves[0, -1], ends[0, 0], rtol=1e-4)
    with pytest.raises(ValueError, match=r"e.g. binary_masks=\(True, False, False\)"):
        keras_rise.RiseExplainer(video, num_masks=16, binary_masks=True).explain(frames)

    keras_rise.export_explainer(model, tmp_path / "export", num_masks=16)
    with pytest.raises(keras_rise.loading.LoadError, match=r"version folder holds one: .*1"):
        keras_rise.loading.load_model(tmp_path / "export")


def test_vectors_that_dense_layers_read_are_features_by_default(tmp_path):
    # Field test: a tabular model's maps by default blended neighbouring
    # columns (on y = 2 x3 - 3 x7 features 8 and 6 got ~80% of x3's credit).
    # `binary_masks=None` reads the model: binary masks where Dense layers
    # read the vector (past order-free layers), the paper's grid elsewhere.
    from keras_rise import cli
    from keras_rise.inputs import ModelInputs

    weights = np.zeros(12, np.float32)
    weights[3], weights[7] = 2.0, -3.0
    features = keras.Input((12,), name="features")
    normalized = keras.layers.Normalization(mean=0.0, variance=1.0)(features)
    dense = keras.layers.Dense(1, use_bias=False)
    table = keras.Model(features, dense(keras.layers.Dropout(0.1)(normalized)))
    dense.set_weights([weights[:, None]])
    row = np.ones(12, np.float32)
    expected = weights * 0.5 + 0.5 * weights.sum()  # see the test above
    default = keras_rise.RiseExplainer(table, num_masks=256)
    assert default.get_config()["binary_masks"] is None
    saliency = default.explain(row)
    np.testing.assert_allclose(saliency, expected, atol=1e-3)
    assert np.argmax(saliency) == 3 and np.argmin(saliency) == 7
    np.testing.assert_array_equal(
        saliency, keras_rise.RiseExplainer(table, num_masks=256, binary_masks=True).explain(row)
    )
    blended = keras_rise.RiseExplainer(table, num_masks=256, binary_masks=False).explain(row)
    assert np.abs(blended - expected).max() > 0.5
    # The layer, the export's engine and the command decide alike.
    layer = keras_rise.RiseLayer(table, num_masks=256)
    np.testing.assert_allclose(layer(row[None])[0], saliency, atol=1e-5)
    table.save(tmp_path / "table.keras")
    np.save(tmp_path / "row.npy", row)
    out = tmp_path / "maps"
    argv = ["explain", str(tmp_path / "table.keras"), str(tmp_path / "row.npy")]
    assert cli.main(argv + ["--num-masks", "256", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "row.npy"), saliency, atol=1e-5)
    # Its picture is a bar per feature (visualize.plot_features), as the
    # callback's is; not a signal's plot.
    from PIL import Image

    assert Image.open(out / "row.png").size == (640, 13 * 18)
    (tmp_path / "names.txt").write_text("\n".join(f"column {i}" for i in range(12)))
    named = argv + ["--num-masks", "16", "--out", str(out), "--feature-names"]
    assert cli.main(named + [str(tmp_path / "names.txt")]) == 0
    (tmp_path / "short.txt").write_text("a\nb\n")
    assert cli.main(named + [str(tmp_path / "short.txt")]) == 2
    assert cli.main(named + [str(tmp_path / "names.txt"), "--no-binary-masks"]) == 2
    watch = keras_rise.callbacks.SaliencyCallback(row[None], png_dir=tmp_path / "epochs",
                                                  num_masks=64)
    watch.set_model(table)
    watch.on_epoch_end(0)
    assert Image.open(tmp_path / "epochs" / "epoch_001_image_00.png").size == (640, 13 * 18)
    as_signal = keras_rise.callbacks.SaliencyCallback(
        row[None], png_dir=tmp_path / "signal", num_masks=64, binary_masks=False)
    as_signal.set_model(table)
    as_signal.on_epoch_end(0)
    assert Image.open(tmp_path / "signal" / "epoch_001_image_00.png").size == (640, 200)
    assert cli.main(argv + ["--num-masks", "256", "--no-binary-masks", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out / "row.npy"), blended, atol=1e-5)
    from PIL import Image

    assert Image.open(out / "row.png").size == (640, 200)  # masked as a signal: its plot

    # "mean" and "blur" fills would take a row's unrelated columns: refused
    # at every front end, unless the vector is masked as a signal.
    for fill in ("mean", "blur"):
        refused = f"fill_value='{fill}'. would fill a table's features.*baseline row"
        with pytest.raises(ValueError, match=refused):
            keras_rise.RiseExplainer(table, fill_value=fill)
        with pytest.raises(ValueError, match="baseline row"):
            keras_rise.RiseLayer(table, fill_value=fill)(row[None])
        with pytest.raises(ValueError, match="baseline row"):
            keras_rise.export_explainer(table, tmp_path / "export", fill_value=fill)
    assert cli.main(argv + ["--fill-value", "mean", "--out", str(out)]) == 2
    # The command takes a baseline row from a .npy file.
    baseline = np.linspace(-1, 1, 12).astype(np.float32)
    np.save(tmp_path / "baseline.npy", baseline)
    assert cli.main(argv + ["--num-masks", "256", "--fill-value",
                            str(tmp_path / "baseline.npy"), "--out", str(out)]) == 0
    np.testing.assert_allclose(
        np.load(out / "row.npy"),
        keras_rise.RiseExplainer(table, num_masks=256, fill_value=baseline).explain(row),
        atol=1e-5,
    )
    np.save(tmp_path / "short.npy", baseline[:5])
    assert cli.main(argv + ["--fill-value", str(tmp_path / "short.npy"), "--out", str(out)]) == 2
    keras_rise.RiseExplainer(table, num_masks=16, fill_value="blur", binary_masks=False)

    # Field test: a model that normalizes raw columns itself, filled with 0,
    # got flat maps (20 of 40 spanned under 1e-3) and no word of it.
    raw = np.random.default_rng(0).normal([50.0, 3.0, 900.0], [10.0, 1.0, 100.0], (64, 3))
    normalization = keras.layers.Normalization()
    normalization.adapt(raw.astype(np.float32))
    vector3 = keras.Input((3,))
    raw_model = keras.Model(vector3, keras.layers.Dense(1)(normalization(vector3)))
    with pytest.warns(UserWarning, match=r"fill_value=0.0 lies \d+.\d standard deviations"):
        keras_rise.RiseExplainer(raw_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_rise.RiseExplainer(raw_model, fill_value=raw.mean(axis=0))
        keras_rise.RiseExplainer(table)  # its Normalization's means are 0

    # Insertion starts from a row, not a blur across columns (field test: a
    # blurred start scored RISE below a random map, 0.19 against 0.36); the
    # callback starts from the explainer's fill.
    with pytest.raises(ValueError, match="substrate='blur'. would fill a table's features"):
        keras_rise.metrics.insertion(table, row[None], saliency[None], substrate="blur")
    # By default it starts from the training rows' mean that the model's
    # Normalization layer holds, and without one asks for a row.
    raw_row = raw[np.argmax(raw_model(raw.astype(np.float32))[:, 0])][None].astype(np.float32)
    from_mean = keras_rise.metrics.insertion(raw_model, raw_row, np.arange(3.0)[None])
    mean_row = keras.ops.convert_to_numpy(normalization.mean).reshape(1, 3)
    assert from_mean.curves[0, 0] == pytest.approx(float(raw_model(mean_row)[0, 0]), abs=1e-5)
    assert from_mean.curves[0, -1] == pytest.approx(float(raw_model(raw_row)[0, 0]), abs=1e-5)
    bare = keras.Model(vector3, keras.layers.Dense(1)(vector3))
    with pytest.raises(ValueError, match=r"`substrate` is needed for a table's features"):
        keras_rise.metrics.insertion(bare, raw_row, np.arange(3.0)[None])
    # The callback starts from the same row (review: it started from the
    # explainer's fill, another AUC than the metric's).
    watcher = keras_rise.callbacks.DeletionInsertionCallback(raw_row, num_masks=64)
    with pytest.warns(UserWarning, match=r"fill_value=0.0 lies \d+.\d standard deviations"):
        watcher.set_model(raw_model)
    watcher.on_epoch_end(0, {})
    assert watcher.insertion.curves[0, 0] == pytest.approx(from_mean.curves[0, 0], abs=1e-6)
    # A flat deletion curve of a table is told to take another row, not
    # "mean" (refused for tables).
    with pytest.warns(UserWarning, match="curve is flat .*another fill_value, a baseline row"):
        keras_rise.metrics.deletion(raw_model, mean_row, np.arange(3.0)[None],
                                    fill_value=mean_row[0])
    with pytest.raises(ValueError, match="fill_value='mean'. would fill a table's features"):
        keras_rise.metrics.deletion(table, row[None], saliency[None], fill_value="mean")
    # A table masked as a signal may take a blur, but its curves refuse one:
    # the callback says so before training, not after the first epoch.
    refused = keras_rise.callbacks.DeletionInsertionCallback(
        row[None], num_masks=16, fill_value="blur", binary_masks=False)
    with pytest.raises(ValueError, match="fill_value='blur'. would fill a table's features"):
        refused.set_model(table)
    with pytest.warns(UserWarning, match="start from another substrate, a baseline row"):
        keras_rise.metrics.insertion(table, row[None], saliency[None], substrate=0.0)
    start = np.ones(12, np.float32)
    start[7] = 2.0
    curve = keras_rise.metrics.insertion(table, row[None], saliency[None], substrate=start)
    assert curve.curves[0, 0] == pytest.approx(-4.0, abs=1e-5)  # y of the start row
    judge = keras_rise.callbacks.DeletionInsertionCallback(row[None], num_masks=64,
                                                           fill_value=start)
    judge.set_model(table)
    logs = {}
    judge.on_epoch_end(0, logs)
    assert judge.insertion.auc[0] == pytest.approx(
        keras_rise.metrics.insertion(table, row[None], judge.explainer.explain(row[None]),
                                     substrate=start).auc[0], abs=1e-6)

    # What reads a vector as features, and what as a signal.
    def reads(model, image_input=None):
        return ModelInputs(model, image_input).reads_features()

    assert reads(keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]))
    nested = keras.Sequential([keras.Input((12,)), table])
    assert reads(nested)
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    both = keras.Model([image, meta], keras.layers.Dense(2)(joined))
    assert reads(both, "meta") and not reads(both, "image")
    waveform = keras.Sequential([
        keras.Input((12,)), keras.layers.Reshape((12, 1)), keras.layers.Conv1D(2, 3),
        keras.layers.Flatten(), keras.layers.Dense(2),
    ])
    assert not reads(waveform)
    vector = keras.Input((12,))
    expanded = keras.ops.expand_dims(vector, -1)  # a Keras op, then a convolution
    assert not reads(keras.Model(vector, keras.layers.Conv1D(2, 3)(expanded)))
    partly = keras.Model(vector, [keras.layers.Dense(2)(vector), expanded])
    assert not reads(partly)  # one path is not a Dense layer's
    # Field test: a Lambda (log1p), an op (x * 2) or a Discretization before
    # the Dense layer made the vector a signal; they keep it a vector.
    scaled = keras.layers.Lambda(lambda x: keras.ops.log1p(keras.ops.abs(x)))(vector * 2.0)
    assert reads(keras.Model(vector, keras.layers.Dense(2)(scaled)))
    bins = keras.layers.Discretization(bin_boundaries=[0.0, 1.0])(vector)
    assert reads(keras.Model(vector, keras.layers.Dense(2)(keras.ops.cast(bins, "float32"))))
    assert not reads(keras.Model(vector, keras.layers.Lambda(lambda x: x[..., None])(vector)))
    # Review: a Reshape((1, n)) puts the positions on the channel axis of a
    # one-step sequence, where an LSTM reads them as unordered features.
    one_step = keras.layers.Reshape((1, 12))(vector)
    assert reads(keras.Model(vector, keras.layers.Dense(2)(keras.layers.LSTM(4)(one_step))))
    assert not reads(keras.Model(vector, keras.layers.LSTM(4)(
        keras.layers.Reshape((12, 1))(vector))))
    assert not reads(lambda x: np.sum(x, axis=1, keepdims=True))
    assert not reads(keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Dense(2)]))
    signal = keras_rise.RiseExplainer(waveform, num_masks=64)
    assert signal._engine.masks(((12,), False)).binary is False


def test_an_mlp_on_flattened_images_is_told_how_to_explain_them_as_images():
    # Review: an MNIST MLP on (784,) vectors now gets a binary cell per
    # pixel; a 784 = 28² vector is told how to explain 28x28 images instead.
    flat = keras.Input((784,))
    mlp = keras.Model(flat, keras.layers.Dense(10, activation="softmax")(flat))
    with pytest.warns(UserWarning, match=r"flattened 28x28 images.*keras.Input\(\(28, 28, 1\)\)"):
        keras_rise.RiseExplainer(mlp, num_masks=8)
    images = keras.Input((28, 28, 1))
    advised = keras.Model(images, mlp(keras.layers.Flatten()(images)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        saliency = keras_rise.RiseExplainer(advised, num_masks=8).explain(
            np.ones((28, 28, 1), np.float32))
        assert saliency.shape == (28, 28)
        keras_rise.RiseExplainer(mlp, num_masks=8, binary_masks=True)
        colour = keras.Input((3 * 16 * 16 + 1,))  # not 3k²: a table
        keras_rise.RiseExplainer(keras.Model(colour, keras.layers.Dense(2)(colour)))
    colour = keras.Input((3 * 16 * 16,))
    with pytest.warns(UserWarning, match=r"flattened 16x16 images.*\(16, 16, 3\)"):
        keras_rise.RiseExplainer(keras.Model(colour, keras.layers.Dense(2)(colour)))


def test_reading_a_table_model_looks_at_each_tensor_once(monkeypatch):
    # Review: the walk from the input to the Dense layers went down every
    # path anew, exponential in residual blocks (16 blocks took 2 s, 18 took
    # 9 s), and it ran at every explain call.
    from keras_rise import inputs as inputs_lib

    vector = keras.Input((8,))
    hidden = vector
    for _ in range(24):  # 2^24 paths
        hidden = keras.layers.Add()([hidden, keras.layers.ReLU()(hidden)])
    model = keras.Model(vector, keras.layers.Dense(2)(hidden))
    walked = []
    real = inputs_lib._dense_reads
    monkeypatch.setattr(inputs_lib, "_dense_reads",
                        lambda *args: walked.append(1) or real(*args))
    model_inputs = inputs_lib.ModelInputs(model)
    assert model_inputs.reads_features()
    assert len(walked) <= 3 * 24 + 2  # a call per tensor: 3 a block, and the ends
    calls = len(walked)
    assert model_inputs.reads_features() and len(walked) == calls  # kept


def test_vectors_of_a_model_whose_layers_cannot_be_read_are_warned_of():
    # Field test: a scikit-learn model in a tf.function got the signal grid
    # on its table silently; the default now says so, once per explainer.
    @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32)])
    def linear(x):
        return tf.reduce_sum(x * tf.constant([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), axis=1)

    rows = np.ones((2, 6), np.float32)
    explainer = keras_rise.RiseExplainer(linear, num_masks=32)
    with pytest.warns(UserWarning, match="pass binary_masks=True") as caught:
        explainer.explain(rows)
        explainer.explain(rows)
    assert sum("cannot be read" in str(w.message) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_rise.RiseExplainer(linear, num_masks=32, binary_masks=False).explain(rows)
        binary = keras_rise.RiseExplainer(linear, num_masks=256, binary_masks=True)
        assert np.argmax(binary.explain(rows)[0]) == 2
        signal = tf.function(lambda x: tf.reduce_mean(x, axis=[1, 2]),
                             input_signature=[tf.TensorSpec((None, 8, 2), tf.float32)])
        keras_rise.RiseExplainer(signal, num_masks=16).explain(np.ones((8, 2), np.float32))


def test_subclassed_models_are_read_by_the_rank_of_their_first_call():
    # Field test: a subclassed Keras MLP, trained with fit, declares no
    # input, so its (batch, features) rows were read as grayscale images and
    # refused. Its first call tells the rank (and the channels), not the sizes.
    class Linear(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1, use_bias=False)

        def call(self, rows):
            return self.dense(rows)

    model = Linear()
    model(np.ones((1, 4), np.float32))
    model.dense.set_weights([np.array([[0.0], [2.0], [0.0], [0.0]], np.float32)])
    with pytest.warns(UserWarning, match="layers cannot be read .a Linear."):
        assert keras_rise.RiseExplainer(model, num_masks=32).explain(
            np.ones((3, 4), np.float32)).shape == (3, 4)
    saliency = keras_rise.RiseExplainer(model, num_masks=256, binary_masks=True).explain(
        np.ones(4, np.float32))
    np.testing.assert_allclose(saliency, [1.0, 2.0, 1.0, 1.0], atol=1e-3)  # w(1-p) + pΣw
    with pytest.warns(UserWarning, match="layers cannot be read .a Linear."):  # the layer too
        keras_rise.RiseLayer(model, num_masks=16, seed=5)(np.ones((2, 4), np.float32))

    class Pooled(keras.Model):  # any image size, built on 16x16
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2, activation="softmax")

        def call(self, images):
            return self.dense(keras.ops.mean(images, axis=(1, 2)))

    pooled = Pooled()
    pooled(np.ones((1, 16, 16, 3), np.float32))
    assert keras_rise.RiseExplainer(pooled, num_masks=8).explain(
        np.ones((12, 20, 3), np.float32)).shape == (12, 20)

    class Tokens(keras.Model):  # integer data are token ids, as for functions
        def __init__(self):
            super().__init__()
            self.embedding = keras.layers.Embedding(10, 2)
            self.dense = keras.layers.Dense(2, activation="softmax")

        def call(self, ids):
            return self.dense(keras.ops.mean(self.embedding(ids), axis=1))

    tokens = Tokens()
    tokens(np.ones((1, 6), np.int32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not vectors: no warning of them
        assert keras_rise.RiseExplainer(tokens, num_masks=8).explain(
            np.ones((2, 6), np.int32)).shape == (2, 6)


def test_a_subclassed_model_first_called_on_square_inputs_is_warned_of():
    # Review: its first call's sizes were dropped, so the warning that a
    # functional model of (28, 28) inputs gets (series or images?) was not given.
    class Flat(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2, activation="softmax")

        def call(self, images):
            return self.dense(keras.ops.reshape(images, (-1, 28 * 28)))

    model = Flat()
    model(np.zeros((1, 28, 28), np.float32))
    with pytest.warns(UserWarning, match=r"shape \(28, 28\), which RISE reads as a series"):
        keras_rise.RiseExplainer(model, num_masks=8).explain(np.zeros((28, 28), np.float32))


def test_a_model_of_one_input_per_column_is_told_how_to_explain_its_columns():
    # Field test: Keras' structured-data models take a table's columns as
    # inputs of one value each; RISE masks one input, and the error said only
    # to name it. It now gives the wrapper that explains the columns together.
    names = ["age", "rate", "dose"]
    columns = {name: keras.Input((1,), name=name) for name in names}
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(columns, dense(keras.layers.Concatenate()(list(columns.values()))))
    dense.set_weights([np.array([[1.0], [0.0], [-2.0]], np.float32)])
    row = {name: np.ones((1, 1), np.float32) for name in names}
    with pytest.raises(ValueError, match="hold one value each, as a table's columns") as caught:
        keras_rise.RiseExplainer(model, num_masks=16).explain(row)
    advice = str(caught.value)
    assert "table = keras.Model(vector, model({name: vector[:, i:i + 1]" in advice
    vector = keras.Input((3,))
    table = keras.Model(vector, model({name: vector[:, i:i + 1] for i, name in enumerate(names)}))
    # Its slices reach the inner model's Dense layer: features, binary masks by default.
    saliency = keras_rise.RiseExplainer(table, num_masks=256).explain(np.ones(3, np.float32))
    weights = np.array([1.0, 0.0, -2.0])
    np.testing.assert_allclose(saliency, 0.5 * weights + 0.5 * weights.sum(), atol=1e-3)
    # A model of several inputs that are not all single values gets no such advice.
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((1,), name="meta")
    mixed = keras.Model([image, meta], keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(image), meta]))
    with pytest.raises(ValueError, match="image_input") as caught:
        keras_rise.RiseExplainer(mixed, num_masks=16).explain(
            {"image": np.ones((1, 8, 8, 3)), "meta": np.ones((1, 1))})
    assert "columns" not in str(caught.value)


def test_signal_api_matches_the_image_api():
    shape, region, _ = CASES["signal"]
    model = _model(shape, _region_score(region))
    inputs = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    explainer = keras_rise.RiseExplainer(model, num_masks=640, seed=3, batch_size=40)
    saliency, stderr = explainer.explain(inputs, return_stderr=True)
    assert saliency.shape == stderr.shape == (3, 64)
    assert np.all(stderr > 0)
    # Maps do not depend on the batch size; one input equals its row.
    other = keras_rise.RiseExplainer(model, num_masks=640, seed=3, batch_size=300)
    np.testing.assert_allclose(other.explain(inputs), saliency, atol=1e-5)
    np.testing.assert_allclose(explainer.explain(inputs[1]), saliency[1], atol=1e-5)
    result = explainer.explain_result(inputs, tolerance=0.9)
    assert result.saliency.shape == (3, 64) and result.num_masks[0] < 640


def test_every_target_of_a_signal_model():
    inputs = keras.Input(SIGNAL)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 5)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    x = np.random.default_rng(1).random((2, *SIGNAL)).astype(np.float32)
    explainer = keras_rise.RiseExplainer(model, num_masks=200)
    every = explainer.explain(x, targets="all")
    assert every.shape == (2, 64, 3)
    np.testing.assert_allclose(every[..., 2], explainer.explain(x, targets=2), atol=1e-5)


@pytest.mark.parametrize(
    "shape,grid_size,match",
    [
        (VOLUME, None, None),
        (VOLUME, 9, r"Pass one per axis, e.g. grid_size=\(8, 9, 9\)"),
        (VOLUME, (4, 7), "one number of cells per masked axis"),
        (SIGNAL, 65, "must not exceed the length"),
    ],
)
def test_grids_that_do_not_fit_are_refused(shape, grid_size, match):
    model = _model(shape, lambda x: tf.reduce_mean(x, axis=list(range(1, x.shape.rank)))[:, None])
    explainer = keras_rise.RiseExplainer(model, num_masks=10, grid_size=grid_size)
    if grid_size is None:
        # 7 cells fit 8 slices: the default works on this volume.
        assert explainer.explain(np.ones(shape, np.float32)).shape == shape[:-1]
        # On an axis shorter than 7 the default is one cell per position
        # (field test: a table of 4 features was refused).
        short = _model(
            (5, 16, 16, 1), lambda x: tf.reduce_mean(x[:, :2], axis=[1, 2, 3, 4])[:, None]
        )
        volume = np.random.default_rng(1).random((5, 16, 16, 1)).astype(np.float32)
        default = keras_rise.RiseExplainer(short, num_masks=64).explain(volume)
        fitted = keras_rise.RiseExplainer(short, num_masks=64, grid_size=(5, 7, 7)).explain(volume)
        np.testing.assert_array_equal(default, fitted)
        return
    with pytest.raises(ValueError, match=match):
        explainer.explain(np.ones(shape, np.float32))


def test_a_batch_of_signals_is_not_read_as_one_image(region_models):
    model = region_models["signal"]
    with pytest.raises(ValueError, match=r"one input \(length, channels\) or a batch"):
        keras_rise.RiseExplainer(model, num_masks=10).explain(np.ones((2, 3, 64, 2)))


@pytest.mark.parametrize("name", ["signal", "vector", "volume"])
def test_deletion_and_insertion_over_positions(name, region_models):
    shape, region, grid_size = CASES[name]
    model = region_models[name]
    inputs = np.ones((2, *shape), np.float32)
    spatial = shape if len(shape) == 1 else shape[:-1]
    good = np.zeros((2, *spatial), np.float32)
    good[(slice(None), *region[: len(spatial)])] = 1.0
    bad = -good  # the important region last
    deleted = keras_rise.metrics.deletion(model, inputs, good, step=4)
    assert deleted.curves.shape[0] == 2 and deleted.fractions[-1] == 1.0
    worse = keras_rise.metrics.deletion(model, inputs, bad, step=4)
    assert np.all(deleted.auc < worse.auc)
    inserted = keras_rise.metrics.insertion(model, inputs, good, step=4, substrate=0.0)
    assert np.all(inserted.auc > keras_rise.metrics.insertion(
        model, inputs, bad, step=4, substrate=0.0).auc)
    # The default substrate blurs every masked axis; a constant input stays.
    np.testing.assert_allclose(keras_rise.metrics.gaussian_blur(inputs, 3, 1.0), inputs,
                               atol=1e-6)


def test_gaussian_blur_on_any_axes_matches_the_image_blur():
    image = np.random.default_rng(2).random((1, 20, 24, 3)).astype(np.float32)
    blurred = keras_rise.metrics.gaussian_blur(image).numpy()
    # The same image as a one-slice volume: blurring along a single slice
    # (mirrored) changes nothing on that axis.
    volume = keras_rise.metrics.gaussian_blur(image[:, None].repeat(6, axis=1)).numpy()
    np.testing.assert_allclose(volume[:, 3], blurred, atol=1e-5)
    signal = keras_rise.metrics.gaussian_blur(image[:, 0]).numpy()
    # An independent 1-D reference: mirrored padding, then the kernel.
    weights = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 5.0**2))
    weights /= weights.sum()
    padded = np.pad(image[0, 0], ((5, 5), (0, 0)), mode="symmetric")
    expected = np.stack([padded[i : i + 11].T @ weights for i in range(24)])
    np.testing.assert_allclose(signal[0], expected, atol=1e-5)


def test_deletion_of_token_ids(keyword_model):
    model, tokens = keyword_model, _sentences()
    good = np.isin(tokens, KEYWORDS).astype(np.float32)
    deleted = keras_rise.metrics.deletion(model, tokens, good, fill_value=0)
    worse = keras_rise.metrics.deletion(model, tokens, -good, fill_value=0)
    assert deleted.curves.shape == (2, 31)
    assert np.all(deleted.auc < worse.auc)
    inserted = keras_rise.metrics.insertion(model, tokens, good, substrate=0)
    assert np.all(inserted.curves[:, 2] == inserted.curves[:, -1])  # both keywords back
    with pytest.raises(ValueError, match="substrate=0"):
        keras_rise.metrics.insertion(model, tokens, good)
    with pytest.raises(ValueError, match="token id"):
        keras_rise.metrics.deletion(model, tokens, good, fill_value=0.5)
    # An id past the vocabulary: one line naming the argument (field test:
    # 53 lines of a graph error from inside the curves' loop).
    ids = keras.Input((30,), dtype="int32")
    embedded = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(200, 2)(ids))
    vocabulary = keras.Model(ids, keras.layers.Dense(2, activation="softmax")(embedded))
    with pytest.raises(ValueError, match=r"^`fill_value`: the model cannot take .*ids \[1000\]"):
        keras_rise.metrics.deletion(vocabulary, tokens, good, fill_value=1000)
    with pytest.raises(ValueError, match=r"^`substrate`: the model cannot take .*ids \[1000\]"):
        keras_rise.metrics.insertion(vocabulary, tokens, good, substrate=1000)


@pytest.mark.parametrize("name", ["signal", "volume", "tokens"])
def test_layer_and_export_follow_the_input(
    name, tmp_path, region_models, region_explainers, keyword_model, keyword_explainer
):
    # The options of region_explainers and keyword_explainer (another
    # seed), whose loops their tests traced for two inputs.
    if name == "tokens":
        model, inputs, spatial = keyword_model, _sentences(), (30,)
        options = {"num_masks": keyword_explainer.num_masks}
    else:
        shape, region, grid_size = CASES[name]
        model = region_models[name]
        inputs = np.random.default_rng(3).random((2, *shape)).astype(np.float32)
        spatial = shape[:-1]
        options = {"grid_size": grid_size, "num_masks": region_explainers[name].num_masks}
    options.update(seed=2)
    expected = keras_rise.RiseExplainer(model, **options).explain(inputs)
    layer = keras_rise.RiseLayer(model, **options)
    np.testing.assert_allclose(layer(inputs), expected, atol=1e-5)
    symbolic = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    wrapped = keras.Model(symbolic, layer(symbolic))
    assert wrapped.output.shape == (None, *spatial)
    np.testing.assert_allclose(wrapped.predict(inputs, verbose=0), expected, atol=1e-5)
    path = keras_rise.export_explainer(model, tmp_path / "export", **options)
    loaded = tf.saved_model.load(str(path))
    assert "explain_image" not in loaded.signatures
    serving = loaded.signatures["serving_default"]
    spec = serving.structured_input_signature[1]["inputs"]
    assert spec.shape.as_list() == [None, *inputs.shape[1:]]
    assert spec.dtype == model.inputs[0].dtype
    saliency = serving(inputs=tf.constant(inputs, spec.dtype))["saliency"]
    np.testing.assert_allclose(saliency, expected, atol=1e-5)


def test_a_strategy_gives_the_same_maps_on_signals_and_tokens(
    region_explainers, keyword_explainer
):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    cases = [
        (region_explainers["signal"],
         np.random.default_rng(4).random((2, *SIGNAL)).astype(np.float32)),
        (keyword_explainer, _sentences()),
    ]
    for explainer, inputs in cases:
        model, num_masks = explainer.model, explainer.num_masks
        plain = keras_rise.RiseExplainer(model, num_masks=num_masks, seed=1).explain(inputs)
        shared = keras_rise.RiseExplainer(model, num_masks=num_masks, seed=1, strategy=strategy)
        np.testing.assert_allclose(shared.explain(inputs), plain, atol=1e-5)


def test_explain_dataset_of_signals_and_token_ids(region_explainers, keyword_explainer, tmp_path):
    for name, (explainer, inputs) in {
        "signals": (region_explainers["signal"],
                    np.random.default_rng(5).random((5, *SIGNAL)).astype(np.float32)),
        "tokens": (keyword_explainer, np.concatenate([_sentences()] * 2 + [_sentences()[:1]])),
    }.items():
        dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(2)
        keras_rise.explain_dataset(explainer, dataset, tmp_path / name)
        written = sorted((tmp_path / name).glob("*.npy"))
        assert len(written) == 5
        np.testing.assert_allclose(
            np.load(written[4]), explainer.explain(inputs[4], verbose=0), atol=1e-5
        )


def test_per_input_and_mean_fills_on_volumes(region_models):
    shape, region, grid_size = CASES["volume"]
    model = region_models["volume"]
    inputs = np.random.default_rng(6).random((2, *shape)).astype(np.float32)
    fills = np.stack([np.full(shape, 0.2), np.full(shape, 0.7)]).astype(np.float32)
    options = {"num_masks": 100, "grid_size": grid_size, "seed": 3}
    together = keras_rise.RiseExplainer(model, fill_value=fills, **options).explain(inputs)
    for index in range(2):
        alone = keras_rise.RiseExplainer(model, fill_value=float(fills[index, 0, 0, 0, 0]),
                                         **options).explain(inputs[index])
        np.testing.assert_allclose(together[index], alone, atol=1e-5)
    means = inputs.mean(axis=(1, 2, 3), keepdims=True)
    by_mean = keras_rise.RiseExplainer(model, fill_value="mean", **options).explain(inputs)
    explicit = keras_rise.RiseExplainer(model, fill_value=np.broadcast_to(means, inputs.shape),
                                        **options).explain(inputs)
    np.testing.assert_allclose(by_mean, explicit, atol=1e-5)


def test_integer_images_are_images_not_tokens(tmp_path):
    # A uint8 image model (rescaled inside) is explained as images, as before.
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(7).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    saliency = keras_rise.RiseExplainer(model, num_masks=50, grid_size=4).explain(images)
    assert saliency.shape == (2, 16, 16)
    path = keras_rise.export_explainer(model, tmp_path / "e", num_masks=20, grid_size=4)
    assert "explain_image" in tf.saved_model.load(str(path)).signatures


def test_token_fill_must_be_an_id_the_model_takes(tmp_path):
    inputs = keras.Input((6,), dtype="int64")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    with pytest.raises(ValueError, match=r"fill_value=99.*not a token id the model takes"):
        keras_rise.RiseExplainer(model, num_masks=20, fill_value=99).explain(ids)
    with pytest.raises(ValueError, match=r"an int >= 0.*fill_value=-1\.$"):
        keras_rise.RiseExplainer(model, num_masks=20, fill_value=-1).explain(ids)
    # Field test: an id outside the vocabulary in any but the first sequence
    # failed as a graph error inside the loop; it is named before the loop.
    out_of_vocabulary = np.array([[1, 2, 3, 4, 5, 6]] * 3)
    out_of_vocabulary[2, 4] = 20
    explainer = keras_rise.RiseExplainer(model, num_masks=20, fill_value=0, batch_size=2)
    with pytest.raises(ValueError, match=r"`images`: .* token ids at index 2; .*vocabulary"
                                         r".*indices\[0,4\] = 20 is not in \[0, 20\)"):
        explainer.explain(out_of_vocabulary)
    # Not a fill word either, and the message does not offer "mean" to token ids.
    with pytest.raises(ValueError, match=r"is a fill word.*token ids take a token id"):
        keras_rise.RiseExplainer(model, fill_value="[UNK]")
    # int64 ids: the export's signature takes the model's own dtype.
    path = keras_rise.export_explainer(model, tmp_path / "e", num_masks=20)
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert serving.structured_input_signature[1]["inputs"].dtype == tf.int64
    expected = keras_rise.RiseExplainer(model, num_masks=20).explain(ids)
    np.testing.assert_allclose(serving(inputs=tf.constant(ids))["saliency"], expected,
                               atol=1e-5)


def test_undeclared_models_and_dynamic_layers_say_what_to_do():
    # A batch of (50,) vectors: an undeclared function is taken to take images.
    function = tf.function(lambda x: tf.reduce_mean(x, axis=[1])[:, None])
    with pytest.raises(ValueError, match="keras.Input\\(shape, dtype\\)"):
        keras_rise.RiseExplainer(function, num_masks=10).explain(np.ones((4, 50)))
    dynamic = _model((None, 2), lambda x: tf.reduce_mean(x, axis=[1, 2])[:, None])
    symbolic = keras.Input((None, 2))
    with pytest.raises(ValueError, match="static sizes on the masked axes"):
        keras_rise.RiseLayer(dynamic, num_masks=10)(symbolic)
    # The explainer takes any length.
    assert keras_rise.RiseExplainer(dynamic, num_masks=10).explain(np.ones((9, 2))).shape == (9,)


def test_python_code_in_a_declared_function_explains_feature_vectors():
    # Field test: scikit-learn's predict in a tf.function with an
    # input_signature (how the hint above says to declare a vector input)
    # returned a tensor of unknown rank, and the score failed deep in
    # TensorFlow ("Cannot iterate over a shape with unknown rank").
    weights = np.arange(6, dtype=np.float32)

    def predict(rows):  # Python code, as a scikit-learn model's predict
        return (rows @ weights).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def unshaped(rows):
        return tf.numpy_function(predict, [rows], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def shaped(rows):
        return tf.ensure_shape(tf.numpy_function(predict, [rows], tf.float32), [None])

    row = np.ones(6, np.float32)
    with pytest.raises(ValueError, match=r"no known shape in a graph .*tf.ensure_shape"):
        keras_rise.RiseExplainer(unshaped, num_masks=64, binary_masks=True).explain(row)
    saliency = keras_rise.RiseExplainer(shaped, num_masks=64, binary_masks=True).explain(row)
    # A linear score, fitted exactly: w_i (1 - p) + p Σ_j w_j.
    np.testing.assert_allclose(saliency, weights * 0.5 + 0.5 * weights.sum(), atol=1e-3)


def test_callbacks_check_their_inputs_before_training():
    model = _keyword_model(12)
    model.compile("adam", "mse")
    callback = keras_rise.callbacks.DeletionInsertionCallback(np.ones((3, 5), np.int32))
    with pytest.raises(ValueError, match="tokens is 5"):
        model.fit(np.ones((4, 12), np.int32), np.ones((4, 1)), epochs=1, verbose=0,
                  callbacks=[callback])


def test_mask_families_check_their_arguments():
    with pytest.raises(ValueError, match="one number of cells per masked axis"):
        keras_rise.masks.GridMasks((10,), (3, 3), 0.5, 0)
    with pytest.raises(ValueError, match="keep_prob"):
        keras_rise.masks.GridMasks((10, 12), 3, 1.7, 0)
    with pytest.raises(ValueError, match="one number of cells per masked axis"):
        keras_rise.masks.GridMasks((10, 12), (5,), 0.5, 0)


def test_square_series_inputs_warn_that_images_need_a_two_axis_grid():
    # Field test: an MNIST-style model on keras.Input((32, 32)) was explained
    # as 32 steps of 32 features, one value per row, without a word.
    inputs = keras.Input((32, 32))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    explainer = keras_rise.RiseExplainer(model, num_masks=16)
    with pytest.warns(UserWarning, match=r"grid_size=\(7, 7\)"):
        assert explainer.explain(np.zeros((32, 32), np.float32), verbose=0).shape == (32,)
    # A series of other steps and features is what it looks like: no warning.
    inputs = keras.Input((40, 3))
    series = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_rise.RiseExplainer(series, num_masks=16).explain(
            np.zeros((40, 3), np.float32), targets=keras_rise.scores.OutputScore(0), verbose=0
        )


def _channel_pair(size=24, corner=8):
    """A model of grayscale images without a channel axis, `(size, size)`,
    whose class 0 reads the bottom-right `corner` square, and the same
    model behind a channel axis `(size, size, 1)`."""
    flat = keras.layers.Flatten()
    head = keras.layers.Dense(3, activation="softmax")
    plain = keras.Input((size, size))
    model = keras.Model(plain, head(flat(plain)))
    weights = np.zeros((size * size, 3), np.float32)
    region = np.zeros((size, size), np.float32)
    region[-corner:, -corner:] = 1.0
    weights[:, 0] = 8.0 * region.ravel() / corner**2
    head.set_weights([weights, np.zeros(3, np.float32)])
    channel = keras.Input((size, size, 1))
    with_channel = keras.Model(
        channel, head(flat(keras.layers.Reshape((size, size))(channel)))
    )
    return model, with_channel, region.astype(bool)


def test_two_axis_grid_explains_channel_less_grayscale_images(tmp_path):
    # Field test: MNIST-style models on keras.Input((H, W)) could only be
    # explained one row at a time. A two-entry grid_size masks both axes:
    # the maps equal those of the same model given a channel axis.
    model, with_channel, region = _channel_pair()
    images = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    options = {"num_masks": 256, "grid_size": (6, 6)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no square-series warning
        maps = keras_rise.RiseExplainer(model, **options).explain(images, 0, verbose=0)
    reference = keras_rise.RiseExplainer(with_channel, **options).explain(
        images[..., None], 0, verbose=0
    )
    assert maps.shape == (2, 24, 24)
    np.testing.assert_allclose(maps, reference, atol=1e-6)
    assert ranking_auc(maps[0], region) > 0.9
    explainer = keras_rise.RiseExplainer(model, **options)
    # One image, with or without its channel axis, is the same image.
    one = explainer.explain(images[0], 0, verbose=0)
    np.testing.assert_allclose(one, maps[0], atol=1e-6)
    np.testing.assert_allclose(explainer.explain(images[0, ..., None], 0, verbose=0), one,
                               atol=1e-6)
    # The layer and the SavedModel take the model's own (batch, H, W).
    layer = keras_rise.RiseLayer(model, **options)
    np.testing.assert_allclose(layer(images, tf.constant([0, 0])).numpy(), maps, atol=1e-6)
    # A fill given in the model's own shape, (H, W) or one (B, H, W) per image.
    fill = np.random.default_rng(2).random((24, 24)).astype(np.float32)
    with_fill = keras_rise.RiseExplainer(model, fill_value=fill, **options)
    np.testing.assert_allclose(
        with_fill.explain(images, 0, verbose=0),
        keras_rise.RiseExplainer(with_channel, fill_value=fill[..., None], **options).explain(
            images[..., None], 0, verbose=0
        ),
        atol=1e-6,
    )
    each = np.stack([fill, 1.0 - fill])
    np.testing.assert_allclose(
        keras_rise.RiseExplainer(model, fill_value=each, **options).explain(images, 0, verbose=0),
        keras_rise.RiseExplainer(model, fill_value=each[..., None], **options).explain(
            images, 0, verbose=0
        ),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        keras_rise.RiseLayer(model, fill_value=fill, **options)(images, tf.constant([0, 0])),
        with_fill.explain(images, 0, verbose=0),
        atol=1e-6,
    )
    path = keras_rise.export_explainer(model, tmp_path / "rise", **options)
    signature = tf.saved_model.load(str(path)).signatures["explain_class"]
    assert signature.structured_input_signature[1]["images"].shape.as_list() == [None, 24, 24]
    exported = signature(images=tf.constant(images), class_ids=tf.constant([0, 0]))
    np.testing.assert_allclose(exported["saliency"].numpy(), maps, atol=1e-5)


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
def test_deletion_reads_two_axis_maps_of_channel_less_images():
    model, with_channel, region = _channel_pair()
    images = np.random.default_rng(1).random((2, 24, 24)).astype(np.float32)
    good = np.where(region, 1.0, 0.0)[None].repeat(2, axis=0) + 0.01 * images
    for metric in (keras_rise.metrics.deletion, keras_rise.metrics.insertion):
        plain = metric(model, images, good, targets=0)
        reference = metric(with_channel, images[..., None], good, targets=0)
        np.testing.assert_allclose(plain.auc, reference.auc, atol=1e-6)
    # Deleting the region first beats deleting it last.
    first = keras_rise.metrics.deletion(model, images, good, targets=0).auc
    last = keras_rise.metrics.deletion(model, images, -good, targets=0).auc
    assert np.all(first < last - 0.2)
    # One value per row is still a series' map, read as before.
    with pytest.warns(UserWarning, match="grid_size"):
        rows = keras_rise.metrics.deletion(model, images, good[:, :, 0], targets=0)
    assert rows.curves.shape[1] == 24 + 1


def test_grid_and_shape_errors_speak_of_the_models_own_input():
    model, _, _ = _channel_pair()
    images = np.zeros((2, 24, 24), np.float32)
    with pytest.raises(ValueError, match=r"grayscale images without a channel axis, a grid "
                       r"of two axes such as grid_size=\(7, 7\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the square-series warning
            keras_rise.RiseExplainer(model, grid_size=(6, 6, 6)).explain(images)
    with pytest.raises(ValueError, match=r"height is 20 but the model expects \(height, "
                       r"width\) = \(24, 24\)\. Received shape \(2, 20, 20\)"):
        keras_rise.RiseExplainer(model, grid_size=(6, 6)).explain(images[:, :20, :20])
    inputs = keras.Input((50, 3))
    series = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match=r"reads the model's \(50, 3\) inputs as grayscale "
                       r"images .* a signal takes one entry, e.g. grid_size=7"):
        keras_rise.RiseExplainer(series, grid_size=(7, 7)).explain(np.zeros((2, 50, 3)))
    # A grid given as a NumPy array is a tuple.
    maps = keras_rise.RiseExplainer(model, num_masks=64, grid_size=np.array([6, 6])).explain(
        images, 0, verbose=0
    )
    assert maps.shape == (2, 24, 24)


def test_a_forecasters_values_are_not_read_as_classes(tmp_path, capsys):
    # Field test: a 12-step forecaster (Dense(12), trained with "mse") was
    # explained as a 12-class classifier: each window's map followed its
    # largest forecast, and explain_dataset's (window, future) pairs the
    # argmax of the true future, all silently.
    from keras_rise import cli

    rng = np.random.default_rng(0)
    windows = rng.normal(size=(6, 24, 1)).astype(np.float32)
    future = rng.normal(size=(6, 12)).astype(np.float32)
    series = keras.Input((24, 1))
    forecaster = keras.Model(series, keras.layers.Dense(12)(keras.layers.Flatten()(series)))
    explainer = keras_rise.RiseExplainer(forecaster, num_masks=128)
    explainer.explain(windows[:2])  # not compiled: its outputs may be logits
    forecaster.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"regression loss 'mse'.*OutputScore\(index=k\)"):
        explainer.explain(windows[:2])
    with pytest.raises(ValueError, match="regression loss 'mse'"):
        keras_rise.RiseLayer(forecaster, num_masks=128)(windows[:2])
    every = explainer.explain(windows[:2], targets="all")
    third = explainer.explain(windows[:2], targets=keras_rise.scores.OutputScore(index=3))
    np.testing.assert_allclose(third, every[..., 3], atol=1e-6)
    # Values are not class vectors, as labels or as targets; one-hot and
    # smoothed labels are.
    pairs = tf.data.Dataset.from_tensor_slices((windows, future)).batch(3)
    with pytest.raises(ValueError, match="`labels` are not one-hot or probability vectors"):
        keras_rise.explain_dataset(explainer, pairs, tmp_path / "maps", verbose=0)
    with pytest.raises(ValueError, match="`targets` are not one-hot or probability vectors"):
        explainer.explain(windows[:2], targets=future[:2])
    smoothed = np.full((2, 12), 0.1 / 11, np.float32)
    smoothed[[0, 1], [3, 5]] = 0.9
    np.testing.assert_array_equal(
        explainer.explain(windows[:2], targets=smoothed),
        np.stack([every[0, :, 3], every[1, :, 5]]),
    )
    # A softmax head trained with "mse" still gives probabilities (a Dense
    # layer's activation, or a layer of its own: review), and so does a
    # multi-label sigmoid head.
    flat = keras.layers.Flatten()(series)
    heads = {
        "dense": keras.layers.Dense(12, activation="softmax")(flat),
        "layer": keras.layers.Softmax()(keras.layers.Dense(12)(flat)),
        "labels": keras.layers.Dense(12, activation="sigmoid")(flat),
    }
    for name, head in heads.items():
        classifier = keras.Model(series, head)
        classifier.compile("adam", "mse")
        keras_rise.RiseExplainer(classifier, num_masks=128).explain(windows[:2])
    classifier.save(tmp_path / "labels.keras")
    # One linear unit is a regressor's value, not "class 0" (field test:
    # explain_result named class 0, index.csv class_id 0, and export served
    # it as a classifier of one class), as a (batch,) output is.
    regressor = keras.Model(series, keras.layers.Dense(1)(flat))
    result = keras_rise.RiseExplainer(regressor, num_masks=64).explain_result(windows[:2])
    assert result.targets == ()
    np.testing.assert_allclose(result.scores, regressor(windows[:2])[:, 0], atol=1e-6)
    # A callback refuses the default target before training, not after an
    # epoch (review).
    with pytest.raises(ValueError, match="regression loss 'mse'"):
        keras_rise.callbacks.SaliencyCallback(
            windows[:1], png_dir=tmp_path / "pngs", num_masks=64).set_model(forecaster)
    # A loss given as a function, or by the output's name, is read too
    # (review: a .keras file stores a function as {"class_name": "function"}).
    by_function = keras.Model(series, keras.layers.Dense(12)(flat))
    by_function.compile("adam", keras.losses.mean_squared_error)
    by_function.save(tmp_path / "by_function.keras")
    loaded, _ = keras_rise.loading.load_model(tmp_path / "by_function.keras", images_only=False)
    assert keras_rise.scores.regression_loss(loaded) == "mean_squared_error"
    by_name = keras.Model(series, keras.layers.Dense(12, name="future")(flat))
    by_name.compile("adam", {"future": "huber"})
    assert keras_rise.scores.regression_loss(by_name) == "huber"

    # The command reads the loss from the file (it loads without compiling).
    forecaster.fit(windows, future, epochs=1, verbose=0)
    for name in ("forecaster.keras", "forecaster.h5"):
        forecaster.save(tmp_path / name)
        loaded, _ = keras_rise.loading.load_model(tmp_path / name, images_only=False)
        assert keras_rise.scores.regression_loss(loaded) in ("mse", "MeanSquaredError")
    np.save(tmp_path / "windows.npy", windows[:2])
    argv = ["explain", str(tmp_path / "forecaster.keras"), str(tmp_path / "windows.npy"),
            "--num-masks", "128", "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "regression loss 'mse'" in error and "--class-id K" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()  # the folder it made, not left empty
    assert cli.main(argv + ["--class-id", "3"]) == 0
    labels_argv = ["explain", str(tmp_path / "labels.keras"), str(tmp_path / "windows.npy"),
                   "--num-masks", "16", "--out", str(tmp_path / "labels")]
    assert cli.main(labels_argv) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out" / "windows_000.npy"),
                               explainer.explain(windows[0], targets=keras_rise.scores.OutputScore(
                                   index=3)), atol=1e-5)
