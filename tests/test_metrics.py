import gc
import re
import warnings
import weakref

import keras
import numpy as np
import pytest
from conftest import region_model

import keras_rise
from keras_rise import metrics

BOX = (8, 16, 20, 28)  # top, bottom, left, right of the region model


def _region_maps(batch):
    """The true map of the region model, its reverse and a random map."""
    true = np.zeros((batch, 32, 32), np.float32)
    true[:, BOX[0] : BOX[1], BOX[2] : BOX[3]] = 1.0
    noise = np.random.default_rng(3).random((batch, 32, 32)).astype(np.float32)
    # Ties inside the region are broken by a little noise, never across it.
    true += 0.01 * noise
    return true, -true, noise


def _bright_region_images(batch):
    """Dark noise with a bright region: blurring dims the region's mean."""
    images = 0.2 * np.random.default_rng(0).random((batch, 32, 32, 3), np.float32)
    images[:, BOX[0] : BOX[1], BOX[2] : BOX[3], :] = 1.0
    return images


def _reference_curve(model, image, saliency, class_id, step, start, end):
    """Deletion/insertion written out: one predict per step, NumPy ordering."""
    order = np.argsort(-saliency.ravel(), kind="stable")
    pixels = saliency.size
    scores = []
    for count in list(range(0, pixels, step)) + [pixels]:
        changed = np.zeros(pixels, bool)
        changed[order[:count]] = True
        changed = changed.reshape(saliency.shape)[..., None]
        altered = np.where(changed, end, start)
        scores.append(model.predict(altered[None], verbose=0)[0, class_id])
    return np.array(scores)


def test_true_map_beats_reversed_and_random():
    model = region_model(box=BOX)
    images = _bright_region_images(3)
    true, reverse, noise = _region_maps(3)
    deleted = [
        metrics.deletion(model, images, m, targets=0).auc
        for m in (true, reverse, noise)
    ]
    inserted = [
        metrics.insertion(model, images, m, targets=0).auc
        for m in (true, reverse, noise)
    ]
    assert np.all(deleted[0] < deleted[1]) and np.all(deleted[0] < deleted[2])
    assert np.all(inserted[0] > inserted[1]) and np.all(inserted[0] > inserted[2])
    # RISE's own map of the region model scores close to the true map.
    rise = keras_rise.RiseExplainer(model, num_masks=300).explain(images, targets=0)
    assert np.all(metrics.deletion(model, images, rise, targets=0).auc < deleted[2])
    assert np.all(metrics.insertion(model, images, rise, targets=0).auc > inserted[2])


@pytest.mark.parametrize("constant", [0.25, 0.9])
def test_constant_model_auc_is_the_constant(constant):
    inputs = keras.Input((32, 32, 3))
    zero = keras.layers.Lambda(lambda x: 0.0 * keras.ops.mean(x, axis=(1, 2)))(inputs)
    scores = keras.layers.Lambda(
        lambda z: z[:, :2] + keras.ops.convert_to_tensor([constant, 1 - constant])
    )(zero)
    model = keras.Model(inputs, scores)
    images = np.random.default_rng(1).random((2, 32, 32, 3), np.float32)
    maps = np.random.default_rng(2).random((2, 32, 32))
    for result in (
        metrics.deletion(model, images, maps, targets=0),
        metrics.insertion(model, images, maps, targets=0),
    ):
        np.testing.assert_allclose(result.auc, constant, rtol=1e-6)
        np.testing.assert_allclose(result.curves, constant, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
@pytest.mark.parametrize("which", ["deletion", "insertion"])
def test_curves_match_one_predict_per_step(cnn, images, which):
    saliency = np.random.default_rng(4).random((2, 32, 32)).astype(np.float32)
    saliency[:, :4, :4] = 0.5  # ties resolve in raster order in both
    subset = images[:2]
    step = 37  # 1024 pixels: 28 steps of 37, the last one shorter
    if which == "deletion":
        fill = np.float32(0.3)
        result = metrics.deletion(
            cnn,
            subset,
            saliency,
            targets=[1, 2],
            step=step,
            fill_value=fill,
            batch_size=7,
        )
        starts, ends = subset, np.full_like(subset, fill)
    else:
        result = metrics.insertion(
            cnn, subset, saliency, targets=[1, 2], step=step, batch_size=7
        )
        starts, ends = metrics.gaussian_blur(subset).numpy(), subset
    assert result.curves.shape == (2, 29)
    assert result.fractions[0] == 0 and result.fractions[-1] == 1
    np.testing.assert_allclose(result.fractions[1], 37 / 1024, rtol=1e-6)
    for index, class_id in enumerate([1, 2]):
        expected = _reference_curve(
            cnn,
            subset[index],
            saliency[index],
            class_id,
            step,
            starts[index],
            ends[index],
        )
        np.testing.assert_allclose(result.curves[index], expected, rtol=1e-4, atol=1e-6)
        auc = np.trapezoid(expected, result.fractions)
        np.testing.assert_allclose(result.auc[index], auc, rtol=1e-4)


def test_default_step_and_single_image(cnn, images):
    result = metrics.deletion(cnn, images[0], np.eye(32))
    # ceil(1024 / 224) = 5 pixels a step, ceil(1024 / 5) = 205 steps.
    assert result.curves.shape == (206,) and np.ndim(result.auc) == 0
    # Field test: printing the result dumped every curve.
    text = repr(result)
    assert text.startswith("CausalCurves(curves of shape (206,), auc ")
    assert text.endswith(", fractions of shape (206,))")
    shown = float(text.split("auc ")[1].split(",")[0])
    assert shown == pytest.approx(float(result.auc), abs=1e-4)
    many = metrics.CausalCurves(np.zeros((20, 5)), np.full(20, 0.25), np.linspace(0, 1, 5))
    assert "auc mean 0.2500 over 20" in repr(many) and "\n" not in repr(many)
    top_class = int(np.argmax(cnn.predict(images[:1], verbose=0)))
    expected = cnn.predict(images[:1], verbose=0)[0, top_class]
    np.testing.assert_allclose(result.curves[0], expected, rtol=1e-5)


def test_a_sigmoid_unit_is_scored_by_its_two_classes(images):
    # The curves read a Dense(1, "sigmoid") classifier as the explainer does:
    # its predicted class by default, ids 0 (1 - p) and 1 (p); they were p
    # for every image, and class 1 was "outside the model's 1 classes".
    inputs = keras.Input(images.shape[1:])
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    model.layers[-1].set_weights([np.array([[40.0], [-30.0], [0.0]], "float32"), np.zeros(1)])
    images = images.copy()
    images[: len(images) // 2, ..., 0] *= 0.2  # less red: class 0
    predicted = (keras.ops.convert_to_numpy(model(images))[:, 0] >= 0.5).astype(int)
    assert set(predicted) == {0, 1}
    maps = np.random.default_rng(0).random(images.shape[:3]).astype(np.float32)
    for curve in (metrics.deletion, metrics.insertion):
        by_default = curve(model, images, maps).auc
        np.testing.assert_allclose(curve(model, images, maps, predicted).auc, by_default)
        binary = keras_rise.scores.BinaryScore()
        np.testing.assert_allclose(curve(model, images, maps, binary).auc, by_default)
        zeros = curve(model, images, maps, keras_rise.scores.BinaryScore(0)).auc
        np.testing.assert_allclose(curve(model, images, maps, 0).auc, zeros)


def test_deletion_fills_with_each_images_mean_or_blur_as_the_explainer_does(cnn, images):
    # "mean" and "blur" are the explainer's fills; the curves must be those of
    # the arrays they stand for, per image.
    batch = images[:2]
    maps = np.random.default_rng(3).random(batch.shape[:3]).astype(np.float32)
    means = batch.mean(axis=(1, 2), keepdims=True)
    blurred = metrics.gaussian_blur(batch).numpy()
    for name, fill in (("mean", means), ("blur", blurred)):
        named = metrics.deletion(cnn, batch, maps, targets=1, fill_value=name)
        given = metrics.deletion(cnn, batch, maps, targets=1, fill_value=fill)
        np.testing.assert_allclose(named.curves, given.curves, atol=1e-6)
    black = metrics.deletion(cnn, batch, maps, targets=1).curves
    assert not np.allclose(black[:, -1], named.curves[:, -1], atol=1e-3)


def test_224_pixels_get_224_steps():
    inputs = keras.Input((224, 224, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    result = metrics.deletion(
        model, np.ones((224, 224, 1)), np.eye(224), batch_size=225
    )
    assert result.curves.shape == (225,)


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
def test_repeated_calls_do_not_retrace(cnn, images):
    saliency = np.random.default_rng(5).random((3, 32, 32))
    for _ in range(3):
        metrics.deletion(cnn, images, saliency, batch_size=64)
        metrics.insertion(cnn, images, saliency, batch_size=64)
    assert metrics._runner(cnn, 64).scores.experimental_get_tracing_count() == 1


def test_models_measured_long_ago_are_let_go():
    # Review: the compiled curves, cached per model, held their models: no
    # model measured was ever freed.
    gc.collect()
    alive = []
    for _ in range(metrics.RECENT_MODELS + 2):
        model = keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2),
        ])
        metrics.deletion(model, np.ones((8, 8, 3), np.float32), np.eye(8), targets=0)
        alive.append(weakref.ref(model))
        del model
    gc.collect()
    assert [ref() is not None for ref in alive] == [False] * 2 + [True] * metrics.RECENT_MODELS


def test_gaussian_blur_matches_numpy():
    images = np.random.default_rng(6).random((2, 20, 24, 3)).astype(np.float32)
    offsets = np.arange(11) - 5
    weights = np.exp(-(offsets**2) / 50.0)
    weights /= weights.sum()
    padded = np.pad(images, [(0, 0), (5, 5), (5, 5), (0, 0)], mode="symmetric")
    expected = np.zeros_like(images)
    for dy in range(11):
        for dx in range(11):
            expected += (
                weights[dy] * weights[dx] * padded[:, dy : dy + 20, dx : dx + 24]
            )
    np.testing.assert_allclose(metrics.gaussian_blur(images), expected, atol=1e-5)
    constant = np.full((1, 16, 16, 3), 0.7, np.float32)
    np.testing.assert_allclose(metrics.gaussian_blur(constant), constant, atol=1e-6)


def test_pointing_game_boxes_masks_and_tolerance():
    maps = np.zeros((3, 40, 40), np.float32)
    maps[0, 10, 10] = 1.0  # inside the box
    maps[1, 10, 35] = 1.0  # 15 px right of the box's last column: a hit at 15
    maps[2, 10, 36] = 1.0  # 16 px away: a miss
    boxes = [[5, 5, 15, 21]] * 3  # rows 5..14, columns 5..20
    hits, rate = metrics.pointing_game(maps, boxes)
    np.testing.assert_array_equal(hits, [True, True, False])
    assert rate == pytest.approx(2 / 3)
    assert metrics.pointing_game(maps, boxes, tolerance=0).rate == pytest.approx(1 / 3)
    masks = np.zeros((3, 40, 40), bool)
    masks[:, 5:15, 5:21] = True
    np.testing.assert_array_equal(metrics.pointing_game(maps, masks).hits, hits)
    # A diagonal distance: (20 - 14, 31 - 20) = (6, 11) is 12.5 px away.
    single = np.zeros((40, 40))
    single[20, 31] = 1
    assert metrics.pointing_game(single, [5, 5, 15, 21], tolerance=12.6).hits
    assert not metrics.pointing_game(single, [5, 5, 15, 21], tolerance=12.4).hits


def test_a_constant_map_is_warned_of_by_every_metric(cnn, images):
    # A flat map ranks nothing: deletion would take pixels in raster order and
    # the pointing game's peak would be the first pixel, whatever the image.
    maps = np.random.default_rng(3).random((3, 32, 32)).astype(np.float32)
    maps[1] = 0.25
    calls = (
        (lambda: metrics.deletion(cnn, images, maps), "at index 1 (of 3) is constant"),
        (lambda: metrics.deletion(cnn, images[2], maps[1]), "the map is constant"),
        (lambda: metrics.pointing_game(maps, [[0, 0, 4, 4]] * 3), "its peak is its first"),
    )
    for call, message in calls:
        with pytest.warns(UserWarning, match=re.escape(message)) as caught:
            call()
        flat = [w.filename for w in caught if "constant" in str(w.message)]
        assert flat == [__file__]  # once, pointed at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # maps that rank pixels: no warning
        metrics.deletion(cnn, images, maps[[0, 2, 2]])
        metrics.pointing_game(maps[0], [0, 0, 4, 4])


def test_pointing_game_on_sequences_and_volumes():
    # Four signals' maps, the object at steps 40..55: read as one 4x80 image
    # they would all be hits (row 0's peak lies in the mask's band).
    maps = np.zeros((4, 80), np.float32)
    maps[:3, 48] = 1.0
    maps[3, 5] = 1.0  # far from the object
    maps[2, 48], maps[2, 60] = 0.0, 1.0  # 5 steps after the object's last step
    masks = np.zeros((4, 80), bool)
    masks[:, 40:56] = True
    hits, rate = metrics.pointing_game(maps, masks, tolerance=0, spatial_rank=1)
    np.testing.assert_array_equal(hits, [True, True, False, False])
    assert rate == pytest.approx(0.5)
    boxes = [[40, 56]] * 4
    np.testing.assert_array_equal(
        metrics.pointing_game(maps, boxes, tolerance=5, spatial_rank=1).hits,
        [True, True, True, False],
    )
    assert metrics.pointing_game(maps[3], [0, 6], spatial_rank=1).hits
    # A volume: the peak 3 voxels behind and 4 right of the box is 5 away.
    volume = np.zeros((10, 12, 12), np.float32)
    volume[8, 3, 9] = 1.0
    box = [2, 2, 2, 6, 5, 6]  # front, top, left, back, bottom, right
    assert metrics.pointing_game(volume, box, tolerance=5, spatial_rank=3).hits
    assert not metrics.pointing_game(volume, box, tolerance=4.9, spatial_rank=3).hits
    with pytest.raises(ValueError, match="spatial_rank"):
        metrics.pointing_game(maps, masks, spatial_rank=4)
    with pytest.raises(ValueError, match=r"\[start, stop\]"):
        metrics.pointing_game(maps, [[40, 56, 1]] * 4, spatial_rank=1)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda m, x: metrics.deletion(m, x, np.zeros((2, 32, 32))),
            ValueError,
            "saliency",
        ),
        (
            lambda m, x: metrics.deletion(m, x[:, :16], np.zeros((3, 16, 32))),
            ValueError,
            "height",
        ),
        (
            lambda m, x: metrics.deletion(m, x, np.full((3, 32, 32), np.nan)),
            ValueError,
            "finite",
        ),
        (
            lambda m, x: metrics.deletion(m, x, np.zeros((3, 32, 32)), targets="all"),
            ValueError,
            "one class",
        ),
        (
            lambda m, x: metrics.insertion(m, x, np.zeros((3, 32, 32)), targets=9),
            ValueError,
            "class index 9",
        ),
        (
            lambda m, x: metrics.deletion(m, x, np.zeros((3, 32, 32)), step=0),
            ValueError,
            "step",
        ),
        (
            lambda m, x: metrics.insertion(
                m, x, np.zeros((3, 32, 32)), substrate="gray"
            ),
            ValueError,
            "substrate",
        ),
        (
            lambda m, x: metrics.deletion(
                m, x, np.zeros((3, 32, 32)), fill_value=np.zeros(5)
            ),
            ValueError,
            "fill_value",
        ),
        (
            lambda m, x: metrics.pointing_game(
                np.zeros((3, 32, 32)), [[0, 0, 40, 4]] * 3
            ),
            ValueError,
            "outside",
        ),
        (
            lambda m, x: metrics.pointing_game(np.zeros((3, 32, 32)), [[0, 0, 4]] * 3),
            ValueError,
            "boxes",
        ),
        (
            lambda m, x: metrics.pointing_game(np.zeros((8, 8)), list("abcd")),
            TypeError,
            "`ground_truth` must be boxes .* of numbers",
        ),
        (
            lambda m, x: metrics.pointing_game(
                np.zeros((2, 8, 8)), np.zeros((2, 8, 8))
            ),
            ValueError,
            "empty",
        ),
        (  # field test: signal maps read as one image, and no hint
            lambda m, x: metrics.pointing_game(np.ones((2, 64)), [[3, 9], [10, 20]]),
            ValueError,
            r"received \(2, 2\)\. If the maps are 2 maps of 64 steps .* spatial_rank=1",
        ),
        (
            lambda m, x: metrics.pointing_game(
                np.zeros((2, 8, 8)), [[0, 0, 4, 4]] * 2, tolerance=-1
            ),
            ValueError,
            "tolerance",
        ),
    ],
)
def test_errors(cnn, images, call, error, match):
    with pytest.raises(error, match=match):
        call(cnn, images)


def test_an_explainer_for_a_model_says_to_pass_its_model(cnn, images):
    # Field test: it said "The model could not be called ...: 'RiseExplainer'
    # object is not callable".
    explainer = keras_rise.RiseExplainer(cnn, num_masks=8)
    with pytest.raises(TypeError, match=r"RiseExplainer holds a model: pass its `.model`"):
        metrics.deletion(explainer, images[0], np.zeros((32, 32), np.float32))


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
def test_a_model_of_several_inputs_holds_the_others_fixed():
    # Each image's curve equals the curve of a model with that image's own
    # vector built in: the vector is held fixed beside it, row by row.
    import tensorflow as tf

    image = keras.Input((8, 8, 1), name="image")
    vector = keras.Input((2,), name="vector")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), vector])
    outputs = keras.layers.Dense(3, activation="softmax")(joined)
    model = keras.Model({"image": image, "vector": vector}, outputs)
    listed = keras.Model([image, vector], outputs)
    rng = np.random.default_rng(5)
    images = rng.random((3, 8, 8, 1), np.float32)
    vectors = 3.0 * rng.standard_normal((3, 2)).astype(np.float32)
    maps = rng.random((3, 8, 8))
    for metric in (metrics.deletion, metrics.insertion):
        together = metric(model, {"image": images, "vector": vectors}, maps, targets=1,
                          image_input="image")
        by_index = metric(listed, [images, vectors], maps, targets=1, image_input=0)
        np.testing.assert_allclose(by_index.curves, together.curves, atol=1e-6)
        for row in range(3):
            def fixed(x, row=row):
                held = tf.tile(vectors[row][None], [tf.shape(x)[0], 1])
                return model({"image": x, "vector": held})

            alone = metric(fixed, images[row], maps[row], targets=1)
            np.testing.assert_allclose(together.curves[row], alone.curves, atol=1e-6)


def test_insertion_warns_when_its_start_scores_above_the_input():
    # Field test: on a segmenter the blurred start scored above the image
    # itself, so every curve fell and a reversed map won insertion. The
    # endpoints do not depend on the map; such a start is said once.
    inputs = keras.Input((16, 16, 3))
    calm = 1.0 - keras.ops.mean(keras.ops.abs(inputs - 0.5), axis=(1, 2, 3))[:, None]
    model = keras.Model(inputs, keras.layers.Concatenate()([1.0 - calm, calm]))
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    saliency = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    message = r"start \(the blurred copy\) scores higher than the input.*substrate=0\.0\.$"
    with pytest.warns(UserWarning, match=message):
        curve = metrics.insertion(model, image, saliency, targets=1)
    assert curve.curves[0] > curve.curves[-1]  # blur makes it calmer: the curve falls
    # Field test: from black, it advised substrate=0.0, the substrate given.
    with pytest.warns(UserWarning, match=r"\(the substrate\) .* substrate='blur'\.$"):
        metrics.insertion(model, image, saliency, targets=0, substrate=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = metrics.insertion(model, image, saliency, targets=1, substrate=0.0)
    assert curve.curves[0] < curve.curves[-1]
    # In a batch the warning names the inputs whose curves fall (a flat
    # grey image blurs to itself: its curve does not fall).
    images = np.stack([np.full_like(image, 0.5), image, image])
    falls = r"insertion: on the inputs at index 1, 2 \(of 3\) the curve"
    with pytest.warns(UserWarning, match=falls):
        curves = metrics.insertion(model, images, np.stack([saliency] * 3), targets=1)
    assert curves.curves[0, 0] == pytest.approx(curves.curves[0, -1], abs=1e-6)


def test_a_curve_whose_altered_input_scores_as_the_input_is_warned_of():
    # Field test: on 43 844 samples of audio the default blur (sigma 5
    # samples) kept the score within 3%, and insertion's AUC ranked a
    # random map with the right one (0.532 against 0.547), silently.
    series = keras.Input((200, 1))
    mean_model = keras.Model(series, keras.layers.GlobalAveragePooling1D()(series))
    rng = np.random.default_rng(0)
    signals = (1.0 + 0.1 * rng.normal(size=(2, 200, 1))).astype(np.float32)
    maps = rng.random((2, 200)).astype(np.float32)
    score = keras_rise.scores.OutputScore(index=0)
    with pytest.warns(UserWarning, match=r"insertion: on the inputs at index 0, 1 \(of 2\) "
                      r"the curve's start \(the blurred copy\) scores within 5% .*"
                      r"substrate=0.0\.$"):
        keras_rise.metrics.insertion(mean_model, signals, maps, targets=score)
    with pytest.warns(UserWarning, match=r"deletion: removing every position \(filled with "
                      r"each image's mean\) leaves the score within 5%"):
        keras_rise.metrics.deletion(mean_model, signals[0], maps[0], targets=score,
                                    fill_value="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_rise.metrics.insertion(mean_model, signals, maps, targets=score, substrate=0.0)
        keras_rise.metrics.deletion(mean_model, signals, maps, targets=score)
