import gc
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import region_model, retracing_warnings, small_cnn

import keras_rise


def _reference_saliency(model, images, class_ids, num_masks, keep_prob, seed, fill):
    """RISE written out in NumPy: all masks at once, one predict per mask."""
    height, width = images.shape[1:3]
    masks = keras_rise.generate_masks(
        num_masks, (height, width), keep_prob=keep_prob, seed=seed
    ).numpy()
    maps = []
    for image, class_id in zip(images, class_ids):
        masked = image * masks[..., None] + fill * (1 - masks[..., None])
        scores = model.predict(masked, verbose=0, batch_size=256)[:, class_id]
        maps.append(np.tensordot(scores, masks, axes=1) / (num_masks * keep_prob))
    return np.stack(maps)


def _ranking_auc(saliency, inside):
    """P(saliency of a pixel inside the region > one outside)."""
    pos, neg = saliency[inside], saliency[~inside]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return greater + 0.5 * ties


@pytest.fixture(scope="module")
def cnn_explainer(cnn):
    """One explainer of the CNN for the checks whose mask count and batch size
    do not matter: it holds its compiled loop, so that their calls of equal
    shapes and targets share its traces."""
    return keras_rise.RiseExplainer(cnn, num_masks=100, batch_size=50)


def test_known_region_ranks_first():
    model = region_model(box=(8, 16, 20, 28))
    explainer = keras_rise.RiseExplainer(model, num_masks=500, batch_size=50)
    saliency = explainer.explain(np.ones((32, 32, 3), np.float32), targets=0)
    inside = np.zeros((32, 32), bool)
    inside[8:16, 20:28] = True
    assert _ranking_auc(saliency, inside) >= 0.95
    # The opposite class is explained by the complement of the region.
    opposite = explainer.explain(np.ones((32, 32, 3), np.float32), targets=1)
    assert _ranking_auc(opposite, inside) <= 0.05


@pytest.mark.parametrize("batch_size,num_images", [(50, 1), (64, 3), (7, 3)])
def test_matches_numpy_reference(cnn, images, batch_size, num_images):
    # 130 masks is not a multiple of any of the batch sizes: the tail counts.
    fill = np.linspace(0, 1, 3, dtype=np.float32)
    explainer = keras_rise.RiseExplainer(
        cnn,
        num_masks=130,
        keep_prob=0.4,
        batch_size=batch_size,
        seed=5,
        fill_value=fill,
        score_regression=False,  # the paper's estimator, as the reference
    )
    subset = images[:num_images]
    class_ids = [3, 1, 0][:num_images]
    saliency = explainer.explain(subset, targets=class_ids)
    expected = _reference_saliency(cnn, subset, class_ids, 130, 0.4, 5, fill)
    np.testing.assert_allclose(saliency, expected, rtol=1e-4, atol=1e-5)


def test_default_targets_are_the_top_class(cnn, cnn_explainer, images):
    explainer = cnn_explainer
    top = cnn.predict(images, verbose=0).argmax(-1)
    np.testing.assert_allclose(
        explainer.explain(images), explainer.explain(images, targets=top), atol=1e-6
    )


def test_one_hot_targets_name_their_classes(cnn, cnn_explainer, images):
    # Field test (a user of xplique, whose targets are one-hot): refused.
    explainer = cnn_explainer
    class_ids = np.array([2, 0, 3])
    expected = explainer.explain(images, targets=class_ids)
    one_hot = keras.ops.one_hot(class_ids, 4)
    np.testing.assert_array_equal(explainer.explain(images, targets=one_hot), expected)
    probabilities = np.full((3, 4), 0.1, np.float32)
    probabilities[np.arange(3), class_ids] = 0.7
    np.testing.assert_array_equal(explainer.explain(images, targets=probabilities), expected)
    np.testing.assert_allclose(  # one image, one vector
        explainer.explain(images[0], targets=np.eye(4)[class_ids[0]]), expected[0], atol=1e-6
    )
    curves = keras_rise.metrics.deletion(cnn, images, expected, targets=one_hot)
    np.testing.assert_array_equal(
        curves.auc, keras_rise.metrics.deletion(cnn, images, expected, class_ids).auc
    )


def test_seed_and_batch_size_invariance(cnn, cnn_explainer, images):
    def explain(**kwargs):
        return keras_rise.RiseExplainer(cnn, num_masks=100, **kwargs).explain(images)

    first = explain(seed=3, batch_size=50)  # cnn_explainer's loop, another seed
    np.testing.assert_array_equal(first, explain(seed=3, batch_size=50))
    np.testing.assert_allclose(first, explain(seed=3, batch_size=7), atol=1e-5)
    # On this untrained CNN the default map is nearly exact: seeds differ
    # by about 1e-4, not more.
    assert np.abs(first - explain(seed=4, batch_size=50)).max() > 1e-5


def test_all_classes_equals_per_class_calls(cnn_explainer, images):
    explainer = cnn_explainer
    every = explainer.explain(images, targets="all")
    assert every.shape == (3, 32, 32, 4)
    for class_id in range(4):
        np.testing.assert_allclose(
            every[..., class_id],
            explainer.explain(images, targets=class_id),
            atol=1e-5,
        )
    assert explainer.explain(images[0], targets="all").shape == (32, 32, 4)


def test_output_shapes_and_dtype(cnn_explainer, images):
    explainer = cnn_explainer
    batch = explainer.explain(images)
    assert batch.shape == (3, 32, 32) and batch.dtype == np.float32
    single = explainer.explain(images[1])
    assert single.shape == (32, 32)
    # The model's scores round differently in a batch of 50 masked images
    # than in one of 48 (16 masks for each of 3), and the score regression's
    # fit magnifies that on a map whose pixels span ~1e-3; the other
    # images' maps differ from this one by ~1e-3.
    np.testing.assert_allclose(single, batch[1], atol=1e-5)
    assert np.abs(single - batch[0]).max() > 1e-4
    assert explainer.explain(tf.constant(images)).shape == (3, 32, 32)


def test_many_images_are_chunked_by_batch_size(cnn):
    many = np.random.default_rng(1).random((7, 32, 32, 3), dtype=np.float32)
    chunked = keras_rise.RiseExplainer(cnn, num_masks=30, batch_size=3).explain(many)
    whole = keras_rise.RiseExplainer(cnn, num_masks=30, batch_size=64).explain(many)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_non_square_images_and_dtypes():
    model = small_cnn(image_shape=(24, 40, 3), num_classes=3)
    explainer = keras_rise.RiseExplainer(
        model, num_masks=40, grid_size=5, batch_size=20
    )
    image = np.random.default_rng(2).random((24, 40, 3))
    maps = [
        explainer.explain(image.astype(dtype), targets=1)
        for dtype in (np.float64, np.float32, np.float16)
    ]
    assert all(m.shape == (24, 40) and m.dtype == np.float32 for m in maps)
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    np.testing.assert_allclose(maps[1], maps[2], atol=2e-2)
    with pytest.warns(keras_rise.inputs.PixelRangeWarning, match=r"\(uint8, from 0 to beyond 1\)"):
        uint8 = explainer.explain((image * 255).astype(np.uint8), targets=1)
    assert uint8.shape == (24, 40)


def test_repeated_calls_do_not_retrace(cnn_explainer, images):
    explainer = cnn_explainer
    explainer.explain(images)
    explainer.explain(images, targets=[0, 1, 2])
    traces = explainer._explain_fn.experimental_get_tracing_count()
    for _ in range(3):
        explainer.explain(images * 0.5)
        explainer.explain(images, targets=[2, 2, 1])
    assert explainer._explain_fn.experimental_get_tracing_count() == traces


def test_loop_stays_in_the_graph(cnn, images):
    # The whole mask loop is one graph: the model is called inside a
    # while loop, not once per batch from Python.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=1000, batch_size=10)
    concrete = explainer._explain_fn.get_concrete_function(
        tf.constant(images[:1]),
        keras_rise.scores.ClassScore(),
        None,
        None,
        None,
        tf.constant(0, tf.int64),
    )
    op_types = {op.type for op in concrete.graph.get_operations()}
    assert "While" in op_types or "StatelessWhile" in op_types
    convolutions = [op for op in concrete.graph.get_operations() if op.type == "Conv2D"]
    assert len(convolutions) <= 2  # the unmasked pass; the loop body is a function


def test_the_eager_probe_of_a_model_logs_no_retracing_warning():
    # Field test: Keras' TensorFlow backend makes a new XLA function at each
    # eager call of ConvNeXt's depthwise convolutions, so the explainer's
    # one eager call of such a model logged TensorFlow's "retracing" warning
    # twice, where model.predict logs nothing. Here six layers do the same;
    # TensorFlow counts the traces by the code traced, so the user's own
    # eager call (which does log it) is of another class.
    import logging

    class NewFunctionPerCall(keras.layers.Layer):
        def call(self, x):
            return tf.function(lambda t: t * 0.9)(x)

    class UsersNewFunctionPerCall(keras.layers.Layer):
        def call(self, x):
            return tf.function(lambda t: t * 0.9)(x)

    def model_of(layer):
        inputs = keras.Input((16, 16, 3))
        x = inputs
        for _ in range(6):
            x = layer()(x)
        pooled = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))

    image = np.ones((16, 16, 3), "float32")
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        model_of(UsersNewFunctionPerCall)(image[None])
        users = list(records)
        keras_rise.RiseExplainer(model_of(NewFunctionPerCall), num_masks=16).explain(image)
    finally:
        logger.removeHandler(handler)
    assert any("triggered tf.function retracing" in message for message in users)
    assert records == users, records[len(users):]


def test_inside_a_tf_function_it_says_to_use_the_layer(cnn_explainer, images):
    # Field test: explain in a tf.function ended in a 43-line trace, at
    # "'SymbolicTensor' object has no attribute 'numpy'".
    @tf.function
    def explain(batch):
        return cnn_explainer.explain(batch)

    with pytest.raises(RuntimeError, match=r"runs eagerly .* keras_rise.RiseLayer\(model"):
        explain(tf.constant(images[:1]))


def test_config_round_trip(cnn, images):
    explainer = keras_rise.RiseExplainer(
        cnn,
        num_masks=40,
        grid_size=5,
        keep_prob=0.3,
        batch_size=16,
        seed=9,
        fill_value=0.25,
        mask_sampling="stratified",
        centered_scores=True,
        score_regression=True,
    )
    config = explainer.get_config()
    assert {k: v for k, v in config.items() if k != "model"} == {
        "num_masks": 40,
        "grid_size": 5,
        "keep_prob": 0.3,
        "batch_size": 16,
        "seed": 9,
        "fill_value": 0.25,
        "mask_sampling": "stratified",
        "complementary_masks": False,
        "centered_scores": True,
        "score_regression": True,
        "jit_compile": False,
        "dtype_policy": None,
        "binary_masks": None,
        "image_input": None,
    }
    # Its repr names the model and the options given other than their defaults.
    assert repr(explainer) == (
        f"<RiseExplainer model={cnn.name!r} num_masks=40 grid_size=5 keep_prob=0.3 "
        "batch_size=16 seed=9 fill_value=0.25 mask_sampling='stratified' "
        "centered_scores=True>"
    )
    assert repr(keras_rise.RiseExplainer(cnn, fill_value=np.zeros(3, "float32"))) == (
        f"<RiseExplainer model={cnn.name!r} fill_value=[0., 0., 0.]>"
    )
    rebuilt = keras_rise.RiseExplainer.from_config(config)
    # The caller's config is left as it was: it rebuilds a second time.
    assert config == explainer.get_config()
    keras_rise.RiseExplainer.from_config(config)
    # Like any Keras config, the model's comes without its weights.
    rebuilt.model.set_weights(cnn.get_weights())
    np.testing.assert_allclose(
        rebuilt.explain(images), explainer.explain(images), atol=1e-6
    )


class _Rank3Output(keras.layers.Layer):
    def call(self, images):
        return images[:, :, :, 0]


def test_colour_images_for_a_grayscale_model_say_so(tmp_path):
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    explainer = keras_rise.RiseExplainer(model, num_masks=8)
    for shape in ((16, 16, 3), (2, 16, 16, 4)):
        with pytest.raises(ValueError, match="colour images .* convert them to grayscale"):
            explainer.explain(np.zeros(shape, np.float32))
    # Grayscale images without their channel axis are still read as such.
    assert explainer.explain(np.zeros((2, 16, 16), np.float32), verbose=0).shape == (2, 16, 16)
    # One input of other channels is refused for its channels, not read as a
    # batch of inputs without a channel axis (field test: a (100, 2) signal
    # for a (100, 1) model was said to have length 2).
    with pytest.raises(ValueError, match=r"channels is 2 .* \(16, 16, 1\)"):
        explainer.explain(np.zeros((16, 16, 2), np.float32))
    signals = keras.Input((100, 1))
    model = keras.Model(signals, keras.layers.Dense(3)(keras.layers.Flatten()(signals)))
    explainer = keras_rise.RiseExplainer(model, num_masks=8)
    for shape in ((100, 2), (1, 100, 2)):
        with pytest.raises(ValueError, match=r"channels is 2 but .* \(length, channels\) = "):
            explainer.explain(np.zeros(shape, np.float32))
    assert explainer.explain(np.zeros((3, 100), np.float32), verbose=0).shape == (3, 100)


@pytest.mark.parametrize(
    "images_value,targets,error,match",
    [
        (np.zeros((32, 32)), None, ValueError, "height, width, channels"),
        (np.zeros((1, 2, 32, 32, 3)), None, ValueError, "Received shape"),
        (np.zeros((1, 32, 32, 1)), None, ValueError, "channels is 1"),
        (np.zeros((1, 28, 32, 3)), None, ValueError, "height is 28"),
        (np.full((1, 32, 32, 3), np.nan), None, ValueError, "NaN or inf"),
        (np.array([["a"]]), None, TypeError, "real numbers"),
        (np.zeros((32, 32, 3), bool), None, TypeError, "real numbers"),
        (None, None, TypeError, "array of real numbers. Received None"),
        (np.zeros((2, 32, 32, 3)), 4, ValueError, "class index 4"),
        (np.zeros((2, 32, 32, 3)), -1, ValueError, "class index -1"),
        (np.zeros((2, 32, 32, 3)), [0, 1, 2], ValueError, "expected 2"),
        (np.zeros((2, 32, 32, 3)), [0.0, 1.0], TypeError, "targets"),
        (np.zeros((2, 32, 32, 3)), "top", ValueError, '"all"'),
        (np.zeros((2, 32, 32, 3)), np.eye(5)[:2], ValueError, r"model's 4: .*\(2, 5\)"),
        (np.zeros((2, 32, 32, 3)), np.eye(4), ValueError, r"one per image: expected 2"),
        (np.zeros((2, 32, 32, 3)), np.zeros((2, 32, 32)), TypeError,
         r"targets=an array of shape \(2, 32, 32\)"),
        # Field test: photos of two sizes in one list got NumPy's
        # "inhomogeneous shape" text.
        ([np.zeros((32, 32, 3)), np.zeros((48, 40, 3))], None, ValueError,
         r"`images` holds items of different shapes \(\(32, 32, 3\), \(48, 40, 3\)\); "
         "one call takes a batch of one shape"),
    ],
)
def test_explain_rejects_bad_input(cnn, images_value, targets, error, match):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=8, batch_size=8)
    with pytest.raises(error, match=match):
        explainer.explain(images_value, targets=targets)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"model": "resnet"}, TypeError, "model"),
        ({"num_masks": 0}, ValueError, "num_masks"),
        ({"keep_prob": 1.5}, ValueError, "keep_prob"),
        ({"keep_prob": 0}, ValueError, "keep_prob"),
        ({"grid_size": 0}, ValueError, "grid_size"),
        # Field test: the tuple was shown as its bad entry, grid_size=0.
        ({"grid_size": (0, 6, 6)}, ValueError, r"ints >= 1.*grid_size=\(0, 6, 6\)\.$"),
        ({"grid_size": (4, 2.5)}, TypeError, r"grid_size=\(4, 2\.5\)\.$"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 4.0}, TypeError, "batch_size"),
        ({"fill_value": float("nan")}, ValueError, "fill_value"),
        ({"fill_value": np.zeros((1, 1, 1, 2, 3, 4))}, ValueError, "fill_value"),
    ],
)
def test_constructor_rejects_bad_arguments(cnn, kwargs, error, match):
    arguments = {"model": cnn, **kwargs}
    with pytest.raises(error, match=match):
        keras_rise.RiseExplainer(**arguments)


def test_image_input_on_a_model_of_one_input_says_so(cnn, images):
    # Field test: told to pass "the structure the model takes (a dict or
    # list)", which a model of one input does not take.
    # Said when the explainer is made (field test: a text model's strings
    # were first refused as not numbers).
    name = cnn.inputs[0].name
    with pytest.raises(ValueError, match=f"the model has one input \\('{name}'\\)"):
        keras_rise.RiseExplainer(cnn, num_masks=8, image_input=name + "_other")
    keras_rise.RiseExplainer(cnn, num_masks=8, image_input=name).explain(images[:1])
    # A model of a dict of one input takes its key (the input's name may differ).
    pixels = keras.Input((32, 32, 3), name="pixels")
    by_key = keras.Model({"photo": pixels}, cnn(pixels))
    keyed = keras_rise.RiseExplainer(by_key, num_masks=8, image_input="photo")
    assert keyed.explain({"photo": images[:1]}).shape == (1, 32, 32)


def test_grid_larger_than_image_is_rejected_at_explain(cnn):
    explainer = keras_rise.RiseExplainer(cnn, grid_size=40, num_masks=8)
    with pytest.raises(ValueError, match="grid_size"):
        explainer.explain(np.zeros((32, 32, 3)))


def test_fill_value_must_broadcast_to_the_image(cnn):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=8, fill_value=np.zeros(4))
    with pytest.raises(ValueError, match="fill_value"):
        explainer.explain(np.zeros((32, 32, 3)))


def test_model_output_must_be_batch_by_classes():
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, _Rank3Output()(inputs))
    explainer = keras_rise.RiseExplainer(model, num_masks=8)
    with pytest.raises(ValueError, match=r"\(batch, num_classes\)"):
        explainer.explain(np.zeros((32, 32, 3)))


def test_grayscale_images_without_a_channel_axis():
    model = small_cnn(image_shape=(32, 32, 1))
    explainer = keras_rise.RiseExplainer(model, num_masks=40, batch_size=20)
    batch = np.random.default_rng(3).random((2, 32, 32), dtype=np.float32)
    expected = explainer.explain(batch[..., None])
    assert expected.shape == (2, 32, 32)
    np.testing.assert_allclose(explainer.explain(batch), expected, atol=1e-6)
    np.testing.assert_allclose(explainer.explain(batch[1]), expected[1], atol=1e-6)
    with pytest.raises(ValueError, match="height is 30"):
        explainer.explain(np.zeros((2, 30, 32)))


def test_blur_fill_is_each_images_own_blur(cnn, images):
    # The next test's options: its explainers of one image and a fill of
    # one image's shape reuse this test's compiled loop.
    options = dict(num_masks=60, batch_size=40, score_regression=False)
    blurred = keras_rise.metrics.gaussian_blur(images).numpy()
    both = keras_rise.RiseExplainer(cnn, fill_value="blur", **options).explain(
        images[:2], targets=1
    )
    for index in range(2):
        alone = keras_rise.RiseExplainer(cnn, fill_value=blurred[index], **options)
        np.testing.assert_allclose(
            both[index], alone.explain(images[index], targets=1), atol=1e-5
        )
    # Not the black fill's map.
    black = keras_rise.RiseExplainer(cnn, **options).explain(images[:2], targets=1)
    assert np.abs(both - black).max() > 1e-3
    with pytest.raises(ValueError, match='"blur"'):
        keras_rise.RiseExplainer(cnn, fill_value="gray")
    deleted = keras_rise.metrics.deletion(cnn, images[0], both[0], 1, fill_value="blur")
    assert deleted.curves[-1] == pytest.approx(
        float(cnn(blurred[:1])[0, 1]), rel=1e-4
    )


def test_per_image_and_mean_fills_equal_one_explainer_per_image(cnn, images):
    options = dict(num_masks=60, batch_size=40, score_regression=False)
    rng = np.random.default_rng(5)
    fills = rng.random(images[:3].shape, dtype=np.float32)
    # batch_size 40 // 60 masks: the three images run in two chunks, and
    # each chunk takes its own rows of the fill.
    together = keras_rise.RiseExplainer(cnn, fill_value=fills, **options)
    maps = together.explain(images[:3], targets=2)
    means = images[:3].mean(axis=(1, 2))
    by_mean = keras_rise.RiseExplainer(cnn, fill_value="mean", **options).explain(
        images[:3], targets=2
    )
    for index in range(3):
        alone = keras_rise.RiseExplainer(cnn, fill_value=fills[index], **options)
        np.testing.assert_allclose(
            maps[index], alone.explain(images[index], targets=2), atol=1e-5
        )
        colour = keras_rise.RiseExplainer(cnn, fill_value=means[index], **options)
        np.testing.assert_allclose(
            by_mean[index], colour.explain(images[index], targets=2), atol=1e-5
        )
    with pytest.raises(ValueError, match=r"\(3, 32, 32, 3\).*\(2, 32, 32, 3\)"):
        together.explain(images[:2])
    with pytest.raises(ValueError, match="fill_value"):
        keras_rise.RiseExplainer(cnn, fill_value="median")


def test_explainers_of_one_model_share_a_compiled_loop(cnn, images):
    first = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=1)
    expected = first.explain(images[:2])
    traces = first._explain_fn.experimental_get_tracing_count()
    # A new explainer with another seed reuses the loop: the seed is a tensor.
    second = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=2)
    other = second.explain(images[:2])
    third = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=1)
    np.testing.assert_array_equal(third.explain(images[:2]), expected)
    assert second._explain_fn is first._explain_fn
    assert first._explain_fn.experimental_get_tracing_count() == traces
    assert np.abs(other - expected).max() > 1e-5  # far beyond float rounding
    # So does another fill value; other options make another loop.
    grey = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, fill_value=0.5)
    assert grey._explain_fn is first._explain_fn
    assert np.abs(grey.explain(images[:2]) - expected).max() > 1e-5
    assert keras_rise.RiseExplainer(cnn, num_masks=60)._explain_fn is not first._explain_fn
    # Explainers made and dropped one per image, as in a loop, share it too.
    function = first._explain_fn
    del first, second, third, grey
    for seed in range(3):
        keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=seed).explain(
            images[:2]
        )
    assert function.experimental_get_tracing_count() == traces


def test_seed_none_draws_a_seed_that_the_config_keeps(cnn, images):
    # Field test: seed=None, Keras' way to ask for random numbers (Dropout,
    # initializers), was refused ("`seed` must be an int").
    drawn = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=None)
    other = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=None)
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < 2**63
    assert drawn.seed != other.seed
    assert drawn.get_config()["seed"] == drawn.seed
    expected = drawn.explain(images[:2])
    np.testing.assert_array_equal(drawn.explain(images[:2]), expected)  # one stream
    again = keras_rise.RiseExplainer(cnn, num_masks=50, batch_size=25, seed=drawn.seed)
    np.testing.assert_array_equal(again.explain(images[:2]), expected)
    assert np.abs(other.explain(images[:2]) - expected).max() > 1e-5
    layer = keras_rise.RiseLayer(cnn, num_masks=50, seed=None)
    assert isinstance(layer.get_config()["seed"], int)
    # As Keras' own seed=None, it follows keras.utils.set_random_seed.
    seeds = []
    for _ in range(2):
        keras.utils.set_random_seed(11)
        seeds.append(keras_rise.RiseExplainer(cnn, num_masks=50, seed=None).seed)
    assert seeds[0] == seeds[1]


def test_verbose_1_moves_a_progress_bar_from_inside_the_loop(cnn_explainer, images, capsys):
    cnn_explainer.explain(images, verbose=1)  # 100 masks in batches of 50
    out = capsys.readouterr().out
    # 3 images share batches of 50 // 3 = 16 masks: the loop's first step
    # reports 16 masks, and the bar ends at all of them.
    assert " 16/100" in out and "100/100" in out and "/mask" in out
    assert out.endswith("\n")


def test_progress_counts_the_masks_of_every_chunk(cnn, images, capsys):
    # Chunks of 2 images and 1 image: 40 masks each.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40, batch_size=2)
    explainer.explain(images, verbose=1)
    out = capsys.readouterr().out
    assert "80/80" in out and "81/80" not in out


def test_verbose_0_and_short_auto_calls_print_nothing(cnn_explainer, images, capsys,
                                                      monkeypatch):
    # "auto" shows no bar on a call shorter than AUTO_DELAY; a delay no call
    # reaches keeps this independent of the machine's load (a loaded machine
    # took over 2 s for the first call).
    monkeypatch.setattr(keras_rise._progress, "AUTO_DELAY", 600.0)
    explainer = cnn_explainer
    explainer.explain(images, verbose=0)
    explainer.explain_result(images)  # "auto": shorter than the delay
    assert capsys.readouterr().out == ""


def test_verbose_2_prints_one_line(cnn_explainer, images, capsys):
    cnn_explainer.explain(images, verbose=2)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("100/100 - ") and "/mask" in out


def test_auto_shows_the_bar_once_a_call_is_long(cnn_explainer, images, capsys, monkeypatch):
    # Every call is "long" without the delay.
    monkeypatch.setattr(keras_rise._progress, "AUTO_DELAY", 0.0)
    explainer = cnn_explainer
    # Into a file or a pipe (pytest's captured stdout is neither a terminal
    # nor a notebook): verbose=2's one clean line, not a bar redrawn with
    # carriage returns and colour codes.
    explainer.explain(images)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("100/100 - ") and "/mask" in out
    assert "\r" not in out and "\x1b" not in out
    # In a terminal or a notebook: the bar.
    monkeypatch.setattr(keras_rise._progress, "interactive", lambda: True)
    explainer.explain(images)
    out = capsys.readouterr().out
    assert "100/100" in out and "\r" in out


def test_a_tolerance_ends_the_bar_at_the_masks_used(cnn, images, capsys):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=2000, batch_size=25)
    result = explainer.explain_result(images[0], tolerance=0.5, verbose=1)
    used = int(result.num_masks)
    assert used < 2000
    last_line = re.sub("\x1b\\[[0-9;]*m", "", capsys.readouterr().out).split("\r")[-1]
    assert last_line.lstrip().startswith(f"{used}/2000 ")


@pytest.mark.filterwarnings("ignore:.tolerance=0.5. was not reached")  # 150 masks: by design
def test_maps_are_identical_whatever_the_verbosity(cnn, images, capsys):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=150, batch_size=40)
    expected = explainer.explain_result(images[:2], tolerance=0.5, verbose=0)
    traces = explainer._explain_fn.experimental_get_tracing_count()
    for verbose in (1, 2, "auto", 0, 1):
        result = explainer.explain_result(images[:2], tolerance=0.5, verbose=verbose)
        for field, value in zip(result, expected):
            np.testing.assert_array_equal(field, value)
    # 0 and 2 share the plain loop, 1 and "auto" the one with a callback;
    # neither traces again.
    assert explainer._explain_fn.experimental_get_tracing_count() == traces + 1
    # Without a tolerance the loop has no check in it: one more trace, once.
    explainer.explain(images[:2], verbose=1)
    explainer.explain(images[:2], verbose=1)
    assert explainer._explain_fn.experimental_get_tracing_count() == traces + 2


def _function_op_types(concrete):
    graph = concrete.graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types.update(node.op for node in function.node_def)
    return types


def test_only_a_loop_with_progress_calls_python(cnn_explainer, images):
    explainer = cnn_explainer
    arguments = (
        tf.constant(images[:1]),
        keras_rise.scores.ClassScore(),
        None,
        None,
        None,
        tf.constant(0, tf.int64),
    )
    plain = explainer._explain_fn.get_concrete_function(*arguments)
    assert not _function_op_types(plain) & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    reporting = explainer._explain_fn.get_concrete_function(
        *arguments, tf.constant(0, tf.int64)
    )
    assert "PyFunc" in _function_op_types(reporting)


@pytest.mark.parametrize(
    "verbose,error",
    [
        (3, ValueError),
        (-1, ValueError),
        ("loud", ValueError),
        (True, TypeError),
        (1.0, TypeError),
        (None, TypeError),
    ],
)
def test_bad_verbose_is_refused(cnn, images, verbose, error):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=10)
    with pytest.raises(error, match=f"verbose={verbose!r}"):
        explainer.explain(images, verbose=verbose)
    with pytest.raises(error, match='0, 1, 2 or "auto"'):
        explainer.explain_result(images, verbose=verbose)


def _relative_errors(saliency, stderr):
    """Per map, RMS standard error over the map's spread: the loop's rule."""
    pixels = saliency.shape[0] * saliency.shape[1]
    maps = saliency.reshape(pixels, -1)
    errors = stderr.reshape(pixels, -1)
    return np.sqrt((errors**2).mean(axis=0)) / maps.std(axis=0)


def test_a_tolerance_not_reached_warns(cnn, images):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=450, batch_size=50)
    with pytest.warns(UserWarning, match=r"`tolerance=1e-06` was not reached") as record:
        saliency, stderr = explainer.explain(images[:2], tolerance=1e-6, return_stderr=True)
    assert explainer.last_num_masks.tolist() == [450, 450]
    worst = max(_relative_errors(s, e).max() for s, e in zip(saliency, stderr))
    message = str(record[0].message)
    assert "after all 450 masks all 2 maps" in message
    assert f"(the worst: {worst:.3g})" in message
    assert "Raise `num_masks`" in message and "or the tolerance" in message
    assert record[0].filename == __file__  # the warning points at the call
    # Every class at once: a map per (image, class).
    with pytest.warns(UserWarning, match="all 8 maps") as record:
        result = explainer.explain_result(images[:2], targets="all", tolerance=1e-6)
    worst = max(_relative_errors(s, e).max() for s, e in zip(result.saliency, result.stderr))
    assert f"(the worst: {worst:.3g})" in str(record[0].message)
    assert record[0].filename == __file__


def test_standard_errors_too_few_masks_for_are_warned_of(cnn, images):
    # Field test: return_stderr with 100 masks gave all-NaN errors in
    # silence. The default's units are whole runs of 128 masks, and the
    # regression needs three: 256 masks are not enough, 384 are.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=256)
    with pytest.warns(UserWarning, match="the standard errors are all NaN") as record:
        _, stderr = explainer.explain(images[0], return_stderr=True, verbose=0)
    assert np.isnan(stderr).all()
    message = str(record[0].message)
    assert "after 256 masks" in message and "two whole runs of 128 masks" in message
    assert record[0].filename == __file__
    explainer = keras_rise.RiseExplainer(cnn, num_masks=384)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, stderr = explainer.explain(images[0], return_stderr=True, verbose=0)
        explainer.explain(images[0], verbose=0)  # no errors asked for: no word
    assert np.isfinite(stderr).all()


def test_a_tolerance_on_a_flat_map_says_so(images):
    # Field test: a model that ignores its input was told to use "about
    # 137,272,344,733 masks". Its map is noise around a constant.
    constant = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Flatten(),
        keras.layers.Dense(3, kernel_initializer="zeros", activation="softmax"),
    ])
    explainer = keras_rise.RiseExplainer(constant, num_masks=1024)
    with pytest.warns(UserWarning, match="the map is nearly flat") as record:
        explainer.explain(images[0], tolerance=np.float32(0.1), verbose=0)
    message = str(record[0].message)
    assert message.startswith("`tolerance=0.1` was not reached: after all 1024 masks")
    assert "hardly changes whatever is masked" in message and "masks for" not in message


def test_a_reached_tolerance_does_not_warn(cnn, images):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=2000, batch_size=25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = explainer.explain_result(images[:2], tolerance=0.5)
        explainer.explain(images[0], tolerance=0.5)
    assert np.all(result.num_masks < 2000)
    assert np.all(_relative_errors(result.saliency[0], result.stderr[0]) < 0.5)


def test_a_tolerance_stops_on_whole_runs_and_its_maps_meet_it():
    # Field test: on the bundled model and photos, tolerance=0.2 stopped in the
    # middle of a run of 128 masks (1088, 576) — the error read lower there,
    # the closed runs being divided by all masks so far — and then warned that
    # the answer, its part run closed, had missed the tolerance "after all
    # 4000 masks".
    import pathlib

    from PIL import Image

    folder = pathlib.Path(__file__).resolve().parent.parent / "examples" / "images"
    explainer = keras_rise.RiseExplainer(keras_rise.load_demo_model(), num_masks=4000)
    for name in ("digit_00.png", "digit_06.png"):
        image = np.asarray(Image.open(folder / name).convert("RGB"), np.float32) / 255
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = explainer.explain_result(image, tolerance=0.2, verbose=0)
        used = int(result.num_masks)
        assert used < 4000 and used % 128 == 0, used
        assert _relative_errors(result.saliency, result.stderr).max() < 0.2


def test_explainers_of_other_options_do_not_add_up_to_a_retracing_warning(cnn, images):
    # Each explainer's loop is traced once per input shape; TensorFlow counted
    # the traces of every explainer's loop together (one function code) and
    # warned of "retracing" after five explainers in a process. (The paper's
    # estimator: its loop traces in half the time, and the count is the same.)
    with retracing_warnings() as warned:
        for num_masks in range(20, 34, 2):
            keras_rise.RiseExplainer(cnn, num_masks=num_masks, score_regression=False).explain(
                images[0], verbose=0
            )
    assert not warned


def test_no_retracing_advice_for_each_number_of_images(cnn, images):
    # Field test: a sixth number of images per call printed TensorFlow's
    # advice about retracing, which does not apply (the loop is compiled per
    # batch size by design). The paper's estimator: its loop traces faster.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=8, batch_size=8, score_regression=False)
    batch = np.concatenate([images, images, images])[:7]
    with retracing_warnings() as warned:
        for count in range(1, 8):
            explainer.explain(batch[:count], verbose=0)
    assert explainer._explain_fn.experimental_get_tracing_count() == 7
    assert not warned


def _numpy_twin(seed=0):
    """A softmax regression as a Keras model and as NumPy code that takes
    NumPy arrays only (as ONNX Runtime or a scikit-learn pipeline would)."""
    keras.utils.set_random_seed(seed)
    twin = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    weights, bias = (w.astype(np.float64) for w in twin.layers[-1].get_weights())
    twin = keras.Sequential([twin, keras.layers.Softmax()])

    def numpy_model(images):
        if type(images) is not np.ndarray:
            raise TypeError(f"takes NumPy arrays, not {type(images).__name__}")
        logits = images.reshape(len(images), -1) @ weights + bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)  # float64

    return twin, numpy_model


def test_a_model_of_numpy_code_explains_as_its_keras_twin(images):
    # A black box need not be TensorFlow: Python code returning NumPy arrays
    # runs inside the compiled loop through tf.numpy_function.
    twin, numpy_model = _numpy_twin()
    options = dict(num_masks=256, seed=4, batch_size=64)
    expected = keras_rise.RiseExplainer(twin, **options).explain_result(images, "all")
    got = keras_rise.RiseExplainer(numpy_model, **options).explain_result(images, "all")
    np.testing.assert_allclose(got.saliency, expected.saliency, atol=1e-5)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-6)
    # Several outputs in a dict, a score picking one, and the metrics.
    heads = keras_rise.RiseExplainer(
        lambda x: {"probs": numpy_model(x), "count": np.ones((len(x), 1), np.int64)}, **options
    )
    np.testing.assert_allclose(
        heads.explain(images, keras_rise.scores.ClassScore(1, output="probs")),
        expected.saliency[..., 1],
        atol=1e-5,
    )
    curves = keras_rise.metrics.deletion(numpy_model, images, expected.saliency[..., 0], 0)
    twin_curves = keras_rise.metrics.deletion(twin, images, expected.saliency[..., 0], 0)
    np.testing.assert_allclose(curves.auc, twin_curves.auc, atol=1e-5)


def test_a_model_of_numpy_code_gets_plain_refusals(images):
    _, numpy_model = _numpy_twin()
    with pytest.raises(ValueError, match=r"jit_compile=True.*NumPy.*jit_compile=False"):
        keras_rise.RiseExplainer(numpy_model, num_masks=64, jit_compile=True).explain(images)
    calls = []

    def growing(x):  # outputs of a length that changes, as unpadded detections would
        calls.append(len(x))
        return np.zeros((len(x), 2 + len(calls)), np.float32)

    with pytest.raises(ValueError, match=r"same structure and shape.*float32\(2, 3\).*Pad"):
        keras_rise.RiseExplainer(growing, num_masks=64).explain(
            images[0], keras_rise.scores.OutputScore(0)
        )

    def unreachable(x):
        raise ConnectionError("the server did not answer")

    with pytest.raises(ValueError, match="could not be called.*ConnectionError: the server"):
        keras_rise.RiseExplainer(unreachable, num_masks=64).explain(images)

    def buggy(x):  # fails on tensors, and differently on the NumPy retry
        if isinstance(x, np.ndarray):
            raise TypeError("takes tensors only")
        raise ArithmeticError("the model's own bug")

    with pytest.raises(ValueError, match="ArithmeticError: the model's own bug"):
        keras_rise.RiseExplainer(buggy, num_masks=64).explain(images)
    with pytest.raises(ValueError, match="NumPy values RISE cannot use"):
        keras_rise.RiseExplainer(lambda x: 0.5, num_masks=64).explain(images)


def test_a_model_of_numpy_code_failing_in_the_loop_is_one_quiet_line(images, capfd):
    # Field test: a failure inside the compiled loop (a served model going
    # away mid-explanation) also made TensorFlow log the Python traceback
    # twice on stderr before the error.
    _, numpy_model = _numpy_twin()
    calls, down = [], [True]

    def flaky(x):
        calls.append(len(x))
        if down[0] and len(calls) > 3:  # after the probes and a first batch
            raise ConnectionResetError("the server went away")
        return numpy_model(x)

    capfd.readouterr()
    with pytest.raises(ValueError, match=r"Python code.*ConnectionResetError: the server"):
        keras_rise.RiseExplainer(flaky, num_masks=256, batch_size=64).explain(images)
    calls.clear()
    saliency = np.random.default_rng(0).random(images.shape[:3]).astype(np.float32)
    with pytest.raises(ValueError, match=r"Python code.*ConnectionResetError: the server"):
        keras_rise.metrics.deletion(flaky, images, saliency, 0)
    assert "Traceback" not in capfd.readouterr().err
    # Once it answers again it explains as before: no failure is left over.
    down[0] = False
    options = dict(num_masks=128, batch_size=64)
    np.testing.assert_allclose(
        keras_rise.RiseExplainer(flaky, **options).explain(images),
        keras_rise.RiseExplainer(numpy_model, **options).explain(images),
        atol=1e-6,
    )


def test_d_rise_on_a_detector_of_numpy_code():
    # A Python detection pipeline (MTCNN's, say) padded to a fixed number of
    # detections: here one box whose confidence is how bright its pixels are.
    image = np.full((32, 32, 3), 0.2, np.float32)
    image[8:16, 18:28] = 1.0  # rows 8-15, columns 18-27
    box = np.array([18.0, 8.0, 28.0, 16.0], np.float32)  # x1, y1, x2, y2

    def detector(images):
        brightness = images[:, 8:16, 18:28].mean(axis=(1, 2, 3))
        boxes = np.zeros((len(images), 3, 4), np.float32)
        probs = np.zeros((len(images), 3, 1), np.float32)
        boxes[:, 0], probs[:, 0, 0] = box, brightness
        return {"boxes": boxes, "class_probs": probs}

    saliency = keras_rise.RiseExplainer(detector, num_masks=256, seed=1).explain(
        image, keras_rise.scores.DetectionScore(box, 0)
    )
    inside = np.zeros((32, 32), bool)
    inside[8:16, 18:28] = True
    row, column = np.unravel_index(saliency.argmax(), saliency.shape)
    assert inside[row, column]
    assert saliency[inside].mean() > saliency[~inside].mean() + 5 * saliency[~inside].std()


def test_a_function_of_token_ids_explains_its_tokens():
    # A model that declares no input, given integer sequences, is explained
    # over their tokens (it was taken to take images and refused them).
    weights = np.zeros(20)
    weights[7], weights[11] = 3.0, -2.0

    def bag_of_words(ids):  # NumPy code; id 0 (the fill) counts for nothing
        counts = np.stack([np.bincount(row, minlength=20) for row in np.asarray(ids)])
        positive = 1.0 / (1.0 + np.exp(-(counts[:, 1:] @ weights[1:])))
        return np.stack([1.0 - positive, positive], axis=-1)

    ids = np.array([[3, 7, 5, 11, 9, 7, 2, 4], [7, 1, 1, 1, 11, 11, 2, 2]], np.int32)
    explainer = keras_rise.RiseExplainer(bag_of_words, num_masks=400, seed=2, fill_value=0)
    saliency = explainer.explain(ids, targets=1)
    assert saliency.shape == (2, 8)
    for row, values in zip(ids, saliency):
        sevens, elevens = values[row == 7], values[row == 11]
        others = values[(row != 7) & (row != 11)]
        assert sevens.min() > others.max() and elevens.max() < others.min()
    np.testing.assert_allclose(explainer.explain(ids[0], targets=1), saliency[0], atol=1e-6)
    with pytest.raises(ValueError, match=r"one image .*token ids if given integer sequences"):
        explainer.explain(ids[0].astype(np.float32))  # floats: not token ids


def test_a_sequential_model_without_an_input_is_told_how_its_inputs_were_read():
    # Field test: signals (batch, 80, 3) given to a Sequential model of
    # Conv1D without a keras.Input were read as one image, and Keras' kernel
    # error came through with nothing to say why.
    model = keras.Sequential([
        keras.layers.Conv1D(4, 3), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2),
    ])
    signals = np.random.default_rng(0).random((4, 80, 3)).astype(np.float32)
    with pytest.raises(ValueError) as error:
        keras_rise.RiseExplainer(model, num_masks=20).explain(signals, verbose=0)
    message = str(error.value)
    assert message.startswith("The model could not be called on inputs of shape (4, 80, 3)")
    assert "a Sequential model without a keras.Input) is taken to take images" in message
    assert "\n" not in message
    # Declared, the same layers explain the signals.
    declared = keras.Sequential([keras.Input((80, 3)), *model.layers])
    assert keras_rise.RiseExplainer(declared, num_masks=20).explain(
        signals, verbose=0
    ).shape == (4, 80)


def test_the_functions_of_a_loaded_savedmodel_explain_as_the_model(
    cnn, cnn_explainer, images, tmp_path
):
    # Field test: `loaded.serve` (whose Python function takes *args,
    # **kwargs) was given training=False, and a signature (called with
    # keywords; its `inputs` are graph placeholders, weights included) gave a
    # TypeError from deep inside.
    cnn.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    expected = cnn_explainer.explain(images, verbose=0)
    for function in (loaded.serve, loaded.signatures["serving_default"]):
        saliency = keras_rise.RiseExplainer(function, num_masks=100, batch_size=50).explain(
            images, verbose=0
        )
        np.testing.assert_allclose(saliency, expected, atol=1e-6)
    # Field test: a signature of a loaded object that is gone failed inside
    # the compiled loop with TensorFlow's AssertionError (deleted variables).
    orphan = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    gc.collect()
    with pytest.raises(ValueError, match="loaded object has been garbage-collected"):
        keras_rise.RiseExplainer(orphan, num_masks=100)
    # The loaded object declares no input; its signature does (field test:
    # an audio model's (43844, 1) signal was refused as an image, with advice
    # for plain functions).

    class Mean(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3))])
        def __call__(self, x):
            return tf.reduce_mean(x, axis=[1, 2])

    tf.saved_model.save(Mean(), str(tmp_path / "mean"))
    restored = tf.saved_model.load(str(tmp_path / "mean"))
    assert "serving_default" in restored.signatures
    with pytest.raises(ValueError, match=r"pass loaded.signatures\['serving_default'\]"):
        keras_rise.RiseExplainer(restored, num_masks=100).explain(np.zeros((40, 1), np.float32))


def test_pixels_in_0_255_for_a_model_that_does_not_scale_them_are_warned_of():
    # Field test: uint8 images, or image_dataset_from_directory's [0, 255]
    # floats, given to a model trained on [0, 1]: maps of a saturated
    # image's prediction (pointing game 1.00 -> 0.33), without a word.
    from keras_rise.inputs import PixelRangeWarning

    layers = [keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)]
    plain = keras.Sequential([keras.Input((16, 16, 3)), *layers])
    scaling = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), *layers]
    )
    pixels = (np.random.default_rng(0).random((2, 16, 16, 3)) * 255).astype(np.uint8)
    for images in (pixels, pixels.astype(np.float32)):
        with pytest.warns(PixelRangeWarning, match=r"pixels in \[0, 255\].*images / 255") as caught:
            keras_rise.RiseExplainer(plain, num_masks=8).explain(images)
        assert caught[0].filename == __file__  # the user's line, not ours
    # Field test: image_dataset_from_directory's photos resized to the model
    # are not whole numbers; they went unwarned. Batches of other maxima
    # give one message, which Python then shows once.
    resized = [0.83 * pixels[:1].astype(np.float32) + 0.25, 0.5 * pixels[1:].astype(np.float32)]
    with pytest.warns(PixelRangeWarning) as caught:
        for batch in resized:
            keras_rise.RiseExplainer(plain, num_masks=8).explain(batch)
    assert len({str(warning.message) for warning in caught}) == 1
    # Field test: the mirror, pixels scaled twice: [0, 1] to a model that
    # divides by 255 itself sees an almost black image.
    with pytest.warns(PixelRangeWarning, match=r"values in \[0, 1\].*almost black") as caught:
        keras_rise.RiseExplainer(scaling, num_masks=8).explain(pixels / 255.0)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        keras_rise.RiseExplainer(scaling, num_masks=8).explain(pixels)
        keras_rise.RiseExplainer(scaling, num_masks=8).explain(pixels.astype(np.float32))
        keras_rise.RiseExplainer(plain, num_masks=8).explain(pixels / 255.0)
        keras_rise.RiseExplainer(plain, num_masks=8).explain(pixels.astype(np.float32) - 128)
        # Field test: input refused anyway was warned of first.
        with pytest.raises(ValueError, match="height is 8"):
            keras_rise.RiseExplainer(plain, num_masks=8).explain(pixels[:, :8])


def test_one_input_given_by_name_is_explained_without_keras_warnings(images):
    # Field test: {"pic": x} for a model of one input named "pic" (with
    # image_input="pic") made Keras warn on every forward pass that "the
    # structure of `inputs` doesn't match the expected structure".
    inputs = keras.Input((32, 32, 3), name="pic")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = keras_rise.RiseExplainer(model, num_masks=64, image_input="pic").explain(
            {"pic": images[:2]}, verbose=0
        )
    plain = keras_rise.RiseExplainer(model, num_masks=64).explain(images[:2], verbose=0)
    np.testing.assert_allclose(named, plain, atol=1e-6)
    # And the mirror: a model that declares its one input in a dict, given
    # the bare array (or a dataset of dicts), was refused after Keras'
    # "structure of `inputs` doesn't match".
    declared = keras.Model({"pic": inputs}, model(inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bare = keras_rise.RiseExplainer(declared, num_masks=64).explain(images[:2], verbose=0)
    np.testing.assert_allclose(bare, plain, atol=1e-6)


def test_a_model_of_a_fixed_batch_is_refused_by_name(tmp_path):
    # Field test: a SavedModel exported for batches of 1 failed inside the loop
    # with "InvalidArgumentError: <stack traces unavailable>".
    dense = keras.layers.Dense(2)
    model = tf.function(
        lambda pixels: dense(keras.ops.reshape(pixels, (-1, 192))),
        input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32, name="pixels")],
    )
    with pytest.raises(ValueError, match=r"fixed batch of 1 \(its input 'pixels' has shape "
                       r"\(1, 8, 8, 3\)\).*tf.TensorSpec\(\[None, 8, 8, 3\]\)"):
        keras_rise.RiseExplainer(model, num_masks=8)
    # A Keras model built by a call on a batch records its size, but takes any.
    built = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2)])
    built(np.zeros((2, 8, 8, 3), np.float32))
    assert keras_rise.RiseExplainer(built, num_masks=8).explain(
        np.zeros((8, 8, 3), np.float32), verbose=0).shape == (8, 8)
    built.save(tmp_path / "built.keras")
    assert keras_rise.loading.load_model(tmp_path / "built.keras")[1] == (None, 8, 8, 3)


def _convolutional(data_format, inputs_shape, layer=keras.layers.Conv2D):
    """A small classifier whose convolution reads `data_format`."""
    inputs = keras.Input(inputs_shape)
    pooling = (
        keras.layers.GlobalAveragePooling2D if layer is keras.layers.Conv2D
        else keras.layers.GlobalAveragePooling1D
    )
    hidden = keras.layers.Rescaling(2.0)(inputs)
    hidden = layer(4, 3, activation="relu", data_format=data_format, name="conv")(hidden)
    hidden = pooling(data_format=data_format)(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


def test_a_channels_first_model_is_refused_with_a_view_that_explains_it():
    # Field test: a model of (channels, height, width) inputs (Keras'
    # data_format="channels_first", or a model converted from PyTorch) was
    # masked as an image of 3 rows and 32 columns: a (3, 32) map, no word.
    first = _convolutional("channels_first", (3, 16, 16))
    with pytest.raises(ValueError, match=(
        r"channels first \(\(channels, height, width\) = \(3, 16, 16\): its layer 'conv' "
        r"has data_format='channels_first'\).*keras.Sequential\(\[keras.Input\(\(16, 16, 3\)"
        r"\), keras.layers.Permute\(\(3, 1, 2\)\), model\]\)"
    )):
        keras_rise.RiseExplainer(first, num_masks=8)
    # Inside another model, and for the metrics and the callbacks alike.
    outer = keras.Sequential([keras.Input((3, 16, 16)), first])
    image = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    for call in (
        lambda: keras_rise.RiseExplainer(outer, num_masks=8),
        lambda: keras_rise.metrics.deletion(first, image, np.zeros((16, 16)), targets=0),
    ):
        with pytest.raises(ValueError, match="channels first"):
            call()

    # The view it suggests gives the map of the same model built channels last
    # (a linear one: TensorFlow runs channels-first convolutions on a CPU only
    # with oneDNN or XLA).
    def padded_linear(data_format, shape):
        inputs = keras.Input(shape)
        padded = keras.layers.ZeroPadding2D(1, data_format=data_format)(inputs)
        return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(padded)))

    linear = padded_linear("channels_first", (3, 16, 16))
    kernel, bias = linear.get_weights()  # rows in (channels, height, width) order
    last = padded_linear("channels_last", (16, 16, 3))
    last.set_weights([kernel.reshape(3, 18, 18, 3).transpose(1, 2, 0, 3).reshape(-1, 3), bias])
    view = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Permute((3, 1, 2)), linear])
    with pytest.raises(ValueError, match="its layer 'zero_padding2d.*' has data_format"):
        keras_rise.RiseExplainer(linear, num_masks=8)
    pixels = np.moveaxis(image, 0, -1)
    np.testing.assert_allclose(view(pixels[None]), last(pixels[None]), atol=1e-5)
    maps = [
        keras_rise.RiseExplainer(model, num_masks=64, seed=3).explain(
            pixels, targets=keras_rise.scores.OutputScore(1)
        )
        for model in (view, last)
    ]
    assert maps[0].shape == (16, 16)
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-5)
    # Field test (models converted from PyTorch): a model that moves its
    # (3, 16, 16) input's channels last itself, a traced function and NumPy
    # code given (3, 16, 16) images gave (3, 16) maps without a word: the
    # shape alone tells.
    source = keras.Input((3, 16, 16))
    moved = keras.Model(source, last(keras.layers.Permute((2, 3, 1))(source)))
    traced = tf.function(moved, input_signature=[tf.TensorSpec([None, 3, 16, 16])])
    for model, advice in (
        (moved, r"Permute\(\(3, 1, 2\)\), model\]\)"),
        (traced, r"lambda x: model\(tf.transpose\(x, \(0, 3, 1, 2\)\)\)"),
    ):
        with pytest.raises(ValueError, match=r"channels first \(\(channels, height, width\) = "
                           r"\(3, 16, 16\): a first axis of 3 before axes of \(16, 16\)\).*"
                           + advice):
            keras_rise.RiseExplainer(model, num_masks=8)
    numpy_code = keras_rise.RiseExplainer(
        lambda x: moved(np.asarray(x)).numpy(), num_masks=8
    )
    with pytest.raises(ValueError, match=r"`images` of shape \(3, 16, 16\) look channels "
                       r"first .*np.moveaxis\(x, 1, -1\) for a batch.*x\[..., None\]"):
        numpy_code.explain(image)
    channels_last = keras_rise.RiseExplainer(
        lambda x: moved(np.moveaxis(np.asarray(x), -1, 1)).numpy(), num_masks=8
    )
    assert channels_last.explain(pixels, targets=1).shape == (16, 16)
    # Review: inputs of such shapes that a channels-last layer reads, and
    # others (a volume of 4 slices and 16 channels, a pair of sequences) are
    # explained as they are.
    spectrogram = keras.Input((1, 128, 40))
    convolved = keras.layers.Conv2D(2, (1, 3))(spectrogram)
    for model, given in (
        (keras.Model(spectrogram, keras.layers.Dense(2)(keras.layers.Flatten()(convolved))),
         np.zeros((1, 128, 40), np.float32)),
        (keras.Sequential([keras.Input((4, 32, 32, 16)), keras.layers.Conv3D(2, 3),
                           keras.layers.Flatten(), keras.layers.Dense(2)]),
         np.zeros((4, 32, 32, 16), np.float32)),
        (keras.Sequential([keras.Input((2, 50, 64)), keras.layers.Flatten(),
                           keras.layers.Dense(2)]), np.zeros((2, 50, 64), np.float32)),
    ):
        explained = keras_rise.RiseExplainer(model, num_masks=8).explain(
            given, targets=keras_rise.scores.OutputScore(0))
        assert explained.shape == given.shape[:-1]
    # A Reshape that keeps the shape keeps the axes: the layer after it tells.
    kept = keras.Input((3, 16, 16))
    reshaped = keras.layers.Reshape((3, 16, 16))(kept)
    padded = keras.layers.ZeroPadding2D(1, data_format="channels_first", name="after")(reshaped)
    with pytest.raises(ValueError, match="its layer 'after' has data_format='channels_first'"):
        keras_rise.RiseExplainer(keras.Model(kept, keras.layers.Flatten()(padded)))
    # Channels last with free sizes, and a video of 4 frames, are no such inputs.
    free = keras.Input((None, None, 3))
    pooled = keras.Model(free, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(free)))
    assert keras_rise.RiseExplainer(pooled, num_masks=8).explain(
        pixels, targets=keras_rise.scores.OutputScore(0)).shape == (16, 16)
    frames = keras.Input((4, 16, 16, 3))
    video = keras.Model(frames, keras.layers.Dense(2)(keras.layers.Flatten()(frames)))
    clip = np.zeros((4, 16, 16, 3), np.float32)
    assert keras_rise.RiseExplainer(video, num_masks=8).explain(
        clip, targets=keras_rise.scores.OutputScore(0)).shape == (4, 16, 16)
    # A series of (channels, steps) and a subclassed model are told too.
    with pytest.raises(ValueError, match=r"\(channels, steps\) = \(6, 40\).*Permute\(\(2, 1\)\)"):
        keras_rise.RiseExplainer(_convolutional("channels_first", (6, 40), keras.layers.Conv1D))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.pad = keras.layers.ZeroPadding2D(1, data_format="channels_first", name="pad")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(keras.ops.mean(self.pad(x), axis=(2, 3)))

    subclassed = Subclassed()
    subclassed(image[None])
    with pytest.raises(ValueError, match=r"input channels first \(\(channels, height, "
                       r"width\) = \(3, 16, 16\): its layer 'pad'"):
        keras_rise.RiseExplainer(subclassed, num_masks=8)

    class Transposing(Subclassed):  # takes channels last, and moves them itself
        def call(self, x):
            return super().call(keras.ops.transpose(x, (0, 3, 1, 2)))

    transposing = Transposing()
    transposing(pixels[None])
    score = keras_rise.scores.OutputScore(0)
    assert keras_rise.RiseExplainer(transposing, num_masks=8).explain(
        pixels, targets=score).shape == (16, 16)


class _EagerlyOff(keras.layers.Layer):
    """Stands for TensorFlow's channels-first convolutions on a CPU, which
    eagerly (and with XLA) add a bias on the wrong axis when the filters
    number the width, and are right in a graph: scores that differ eagerly."""

    data_format = "channels_first"

    def call(self, x):
        flipped = tf.constant([0.0, 0.0, 3.0])
        return x + flipped if tf.executing_eagerly() else x


def test_a_channels_first_view_is_probed_as_predict_calls_it(tmp_path):
    # Field test: behind the suggested Permute view, the command line and the
    # metrics picked each image's class from an eager call (class 4 at 0.94)
    # and explained it, where predict and explain's own loop said class 0.
    inputs = keras.Input((8, 8, 3))
    logits = _EagerlyOff()(keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model = keras.Model(inputs, keras.layers.Softmax()(logits))
    images = np.random.default_rng(1).random((4, 8, 8, 3), dtype=np.float32)
    graph = model.predict(images, verbose=0)
    assert not np.allclose(model(images), graph)  # the stand-in differs eagerly
    explainer = keras_rise.RiseExplainer(model, num_masks=32)
    result = explainer.explain_result(images)
    np.testing.assert_array_equal(result.class_ids, graph.argmax(axis=1))
    maps = explainer.explain(images)
    curve = keras_rise.metrics.deletion(model, images, maps)
    np.testing.assert_allclose(curve.curves[:, 0], graph.max(axis=1), atol=1e-5)
    # XLA on a CPU computes such layers as eagerly: told, where it is asked for.
    if not tf.config.list_physical_devices("GPU"):
        with pytest.warns(UserWarning, match="channels-first layers.*jit_compile=True its "
                          "maps may not be the model's"):
            keras_rise.RiseExplainer(model, num_masks=32, jit_compile=True)


def test_what_is_not_a_model_is_told_what_to_pass(cnn, tmp_path):
    # Field test (a PyTorch user): load_model's (model, input_shape) pair, an
    # ONNX Runtime session and a torch module were refused or failed with no
    # word of what to pass.
    cnn.save(tmp_path / "m.keras")
    pair = keras_rise.loading.load_model(tmp_path / "m.keras")
    with pytest.raises(TypeError, match=r"load_model returns \(model, input_shape\): "
                       r"pass its \[0\]"):
        keras_rise.RiseExplainer(pair)

    class InferenceSession:  # as onnxruntime names it
        pass

    with pytest.raises(TypeError, match=r"An ONNX Runtime session is explained through a "
                       r"function of its inputs: lambda x: session.run"):
        keras_rise.RiseExplainer(InferenceSession())

    class Module:  # as torch.nn.Module is
        __module__ = "torch.nn.modules.module"

    class Net(Module):  # a user's network, of the user's module
        def __call__(self, x):
            raise TypeError("conv2d() received an invalid combination of arguments")

    with pytest.raises(ValueError, match=r"The model is a PyTorch module, which keras_rise "
                       r"calls with TensorFlow tensors .*\.detach\(\)\.numpy\(\)"):
        keras_rise.RiseExplainer(Net(), num_masks=8).explain(np.zeros((8, 8, 3), np.float32))


def test_a_grayscale_batch_given_to_a_function_is_warned_of():
    # Review: (8, 28, 28), a batch of grayscale images given to a function
    # that declares nothing, is read as one image of 28 channels: a (8, 28)
    # map. Said; a channel axis gives each image its map.
    def first_pixels(x):
        return np.asarray(x).reshape(len(x), -1)[:, :2]

    explainer = keras_rise.RiseExplainer(first_pixels, num_masks=8)
    batch = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    score = keras_rise.scores.OutputScore(0)
    with pytest.warns(UserWarning, match=r"of shape \(8, 28, 28\) are read as one image of "
                      r"28 channels .*give them a channel axis, x\[..., None\]") as caught:
        assert explainer.explain(batch, targets=score).shape == (8, 28)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert explainer.explain(batch[..., None], targets=score).shape == (8, 28, 28)
