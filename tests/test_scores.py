"""Scores: any task's output explained, each checked on a model whose answer is known."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_cnn

import keras_rise
from keras_rise import scores

SIZE = 32
BOX = (8, 16, 20, 28)  # top, bottom, left, right: the region each model reads
OPTIONS = dict(num_masks=400, grid_size=4, batch_size=50, seed=2)


def _image(seed=0):
    return np.random.default_rng(seed).uniform(0.2, 1.0, (SIZE, SIZE, 3)).astype("float32")


def _region():
    top, bottom, left, right = BOX
    region = np.zeros((SIZE, SIZE), bool)
    region[top:bottom, left:right] = True
    return region


def ranking_auc(saliency, region):
    """Probability that a pixel of `region` outranks a pixel outside it."""
    inside, outside = saliency[region], saliency[~region]
    ranks = np.argsort(np.argsort(np.concatenate([inside, outside]))) + 1
    return (ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2) / (
        len(inside) * len(outside)
    )


def _region_mean(images):
    top, bottom, left, right = BOX
    return tf.reduce_mean(images[:, top:bottom, left:right, :], axis=(1, 2, 3))


class _Regressor(keras.layers.Layer):
    def call(self, images):
        return 3.0 * _region_mean(images) - 1.0


def _regressor(keepdims=False):
    inputs = keras.Input((SIZE, SIZE, 3))
    value = _Regressor()(inputs)
    if keepdims:
        value = keras.layers.Reshape((1,))(value)
    return keras.Model(inputs, value)


# Module-scoped models and explainers: an explainer holds its compiled loop,
# and the tests that call it on inputs of equal shapes and scores share its
# traces (a new model, or new options, would trace the loop anew).
@pytest.fixture(scope="module")
def regressor():
    return _regressor()


@pytest.fixture(scope="module")
def regressor_explainer(regressor):
    return keras_rise.RiseExplainer(regressor, **OPTIONS)


@pytest.mark.parametrize("keepdims", [False, True])
def test_regression_output_explains_its_region(keepdims, regressor_explainer):
    if keepdims:
        explainer = keras_rise.RiseExplainer(_regressor(keepdims), **OPTIONS)
    else:
        explainer = regressor_explainer
    score = None if not keepdims else scores.OutputScore()
    result = explainer.explain_result(_image(), targets=score)
    assert result.saliency.shape == (SIZE, SIZE)
    assert ranking_auc(result.saliency, _region()) >= 0.9
    np.testing.assert_allclose(result.scores, 3.0 * _image()[8:16, 20:28].mean() - 1.0, rtol=1e-5)


class _Segmenter(keras.layers.Layer):
    """Class 1 at a pixel is the 5x5 mean of channel 0 around it; class 0 its complement."""

    def call(self, images):
        local = tf.nn.avg_pool2d(images[..., :1], 5, 1, "SAME")
        return tf.concat([1.0 - local, local], axis=-1)


@pytest.fixture(scope="module")
def segmenter_explainer():
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras_rise.RiseExplainer(keras.Model(inputs, _Segmenter()(inputs)), **OPTIONS)


def test_segmentation_region_score_explains_the_region_and_its_neighbourhood(
    segmenter_explainer
):
    model = segmenter_explainer.model
    top, bottom, left, right = BOX
    score = scores.RegionScore(1, region=(top, left, bottom, right))
    saliency = segmenter_explainer.explain(_image(), targets=score)
    assert ranking_auc(saliency, _region()) >= 0.9
    # A boolean mask of the same region is the same score.
    by_mask = scores.RegionScore(1, region=_region())
    np.testing.assert_allclose(
        keras_rise.RiseExplainer(model, **OPTIONS).explain(_image(), targets=by_mask),
        saliency,
        atol=1e-5,
    )


class _FrameTagger(keras.layers.Layer):
    """Class 1 at a step is the 3-step mean of channel 0 around it; class 0 its complement."""

    def call(self, signals):
        local = tf.nn.avg_pool1d(signals[..., :1], 3, 1, "SAME")
        return tf.concat([1.0 - local, local], axis=-1)


def test_region_score_of_a_span_of_steps_explains_that_span():
    # Sequence taggers and frame classifiers, (batch, steps, classes): a
    # region is a span (start, stop) or a boolean mask of steps (field test:
    # an audio model's notes over time had no score but a function).
    inputs = keras.Input((40, 2))
    model = keras.Model(inputs, _FrameTagger()(inputs))
    signal = np.random.default_rng(4).uniform(0.5, 1.0, (40, 2)).astype(np.float32)
    span = np.zeros(40, bool)
    span[12:24] = True
    explainer = keras_rise.RiseExplainer(model, **OPTIONS)
    saliency = explainer.explain(signal, targets=scores.RegionScore(1, region=(12, 24)))
    assert saliency.shape == (40,)
    assert ranking_auc(saliency, span) >= 0.9
    by_mask = explainer.explain(signal, targets=scores.RegionScore(1, region=span))
    np.testing.assert_allclose(by_mask, saliency, atol=1e-5)
    for region, match in (
        ((0, 0, 2, 2), r"region of 2 axes needs an output of shape \(batch, height, width, "),
        ((30, 50), "reaches outside the model's 40-step output"),
        (span[:20], r"mask of shape \(20,\) does not match the model's output size \(40,\)"),
    ):
        with pytest.raises(ValueError, match=match):
            explainer.explain(signal, targets=scores.RegionScore(1, region=region))
    with pytest.raises(ValueError, match="0 <= start < stop"):
        scores.RegionScore(1, region=(5, 5))
    # A volume's box: (front, top, left, back, bottom, right).
    volumes = tf.random.uniform([2, 4, 5, 6, 3])
    np.testing.assert_allclose(
        scores.RegionScore(2, region=(1, 0, 2, 3, 4, 5))(volumes),
        tf.reduce_mean(volumes[:, 1:3, 0:4, 2:5, 2], axis=(1, 2, 3)),
        rtol=1e-6,
    )


# Four quadrant proposals and one off-centre; a proposal's objectness and
# class-0 probability are its box's mean intensity.
PROPOSALS = np.array(
    [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32], [8, 8, 24, 24]],
    np.float32,
)


def _box_means(images):
    means = []
    for x1, y1, x2, y2 in PROPOSALS.astype(int):
        means.append(tf.reduce_mean(images[:, y1:y2, x1:x2, 0], axis=(1, 2)))
    return tf.stack(means, axis=1)  # (B, P)


@tf.function
def detector(images):
    """A plain tf.function (no `training` argument) returning a dict."""
    means = _box_means(images)
    boxes = tf.tile(PROPOSALS[None], [tf.shape(images)[0], 1, 1])
    return {
        "boxes": boxes,
        "class_probs": tf.stack([means, 1.0 - means], axis=-1),
        "objectness": means,
    }


@pytest.fixture(scope="module")
def detector_explainer():
    return keras_rise.RiseExplainer(detector, **OPTIONS)


def test_detection_score_explains_the_target_box(detector_explainer):
    score = scores.DetectionScore(PROPOSALS[1], class_ids=0)
    result = detector_explainer.explain_result(_image(), targets=score)
    # Proposal 1 is x in [16, 32), y in [0, 16).
    region = np.zeros((SIZE, SIZE), bool)
    region[0:16, 16:32] = True
    assert ranking_auc(result.saliency, region) >= 0.9
    means = _box_means(_image()[None]).numpy()[0]
    expected = means[1] * means[1] / np.hypot(means[1], 1 - means[1])
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)


def test_detection_score_reads_the_kerashub_convention_and_several_targets():
    @tf.function
    def padded_detector(images):
        means = _box_means(images)
        batch = tf.shape(images)[0]
        boxes = tf.tile(PROPOSALS[None, :, [1, 0, 3, 2]], [batch, 1, 1])  # yxyx
        classes = tf.tile(tf.constant([[0, 1, 0, 1, -1]]), [batch, 1])
        return {"boxes": boxes, "classes": classes, "confidence": means}

    targets = PROPOSALS[[0, 3]][:, [1, 0, 3, 2]]
    score = scores.DetectionScore(targets, class_ids=[0, 1], box_format="yxyx")
    saliency = keras_rise.RiseExplainer(padded_detector, **OPTIONS).explain(
        _image(), targets=score
    )
    assert saliency.shape == (SIZE, SIZE, 2)
    first = np.zeros((SIZE, SIZE), bool)
    first[0:16, 0:16] = True
    last = np.zeros((SIZE, SIZE), bool)
    last[16:32, 16:32] = True
    assert ranking_auc(saliency[..., 0], first) >= 0.9
    assert ranking_auc(saliency[..., 1], last) >= 0.9
    # A target of a class no proposal has scores zero everywhere.
    wrong = scores.DetectionScore(targets[0], class_ids=1, box_format="yxyx")
    assert float(tf.reduce_max(wrong(padded_detector(_image()[None])))) == 0.0


def test_detection_adapter_maps_any_output():
    def adapter(output):
        boxes, probs = output
        return boxes, probs, tf.ones(tf.shape(probs)[:2])

    @tf.function
    def tuple_detector(images):
        out = detector(images)
        return [out["boxes"], out["class_probs"]]

    score = scores.DetectionScore(PROPOSALS[0], 0, adapter=adapter)
    outputs = tuple_detector(_image()[None])
    means = _box_means(_image()[None]).numpy()[0]
    expected = means[0] / np.hypot(means[0], 1 - means[0])
    np.testing.assert_allclose(score(outputs).numpy(), [expected], rtol=1e-5)


class _RegionEmbedding(keras.layers.Layer):
    """The region's 4x4 block means of channel 0, and a constant."""

    def call(self, images):
        top, bottom, left, right = BOX
        blocks = tf.nn.avg_pool2d(images[:, top:bottom, left:right, :1], 2, 2, "VALID")
        flat = tf.reshape(blocks, [tf.shape(images)[0], -1])
        return tf.concat([flat, tf.ones_like(flat[:, :1])], axis=1)


def test_similarity_score_explains_the_embedded_region():
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, _RegionEmbedding()(inputs))
    explainer = keras_rise.RiseExplainer(model, **OPTIONS)
    own = explainer.explain(_image(), targets=scores.SimilarityScore())
    assert ranking_auc(own, _region()) >= 0.9
    # A reference equal to the image's own embedding is the same score.
    reference = model(_image()[None]).numpy()[0]
    given = explainer.explain(_image(), targets=scores.SimilarityScore(reference * 3.0))
    np.testing.assert_allclose(given, own, atol=1e-5)
    several = explainer.explain(
        _image(), targets=scores.SimilarityScore(np.stack([reference, -reference]))
    )
    np.testing.assert_allclose(several[..., 0], own, atol=1e-5)
    np.testing.assert_allclose(several[..., 1], -own, atol=1e-5)


def _two_input_model():
    image = keras.Input((SIZE, SIZE, 3), name="image")
    gain = keras.Input((1,), name="gain")
    value = _Regressor()(image)
    out = keras.layers.Multiply()([keras.layers.Reshape((1,))(value), gain])
    return keras.Model({"image": image, "gain": gain}, out)


@pytest.fixture(scope="module")
def two_input_model():
    return _two_input_model()


@pytest.fixture(scope="module")
def two_input_explainer(two_input_model):
    """The paper's estimator on the image input of `two_input_model`."""
    return keras_rise.RiseExplainer(
        two_input_model, image_input="image", score_regression=False, **OPTIONS
    )


def test_two_input_model_masks_the_image_and_holds_the_other_input(
    two_input_model, two_input_explainer
):
    model, explainer = two_input_model, two_input_explainer
    images = np.stack([_image(0), _image(1)])
    one = explainer.explain({"image": images, "gain": np.array([[1.0], [1.0]])})
    two = explainer.explain({"image": images, "gain": np.array([[2.0], [-1.0]])})
    assert one.shape == (2, SIZE, SIZE)
    assert ranking_auc(one[0], _region()) >= 0.9
    # The paper's estimator is linear in the score: a fixed gain scales the map.
    np.testing.assert_allclose(two[0], 2.0 * one[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two[1], -one[1], rtol=1e-4, atol=1e-6)
    # The same model given a list, the image picked by its input name.
    image, gain = keras.Input((SIZE, SIZE, 3), name="image"), keras.Input((1,), name="gain")
    listed = keras_rise.RiseExplainer(
        keras.Model([image, gain], model({"image": image, "gain": gain})),
        image_input="image",
        score_regression=False,
        **OPTIONS,
    ).explain([images, np.array([[1.0], [1.0]])])
    np.testing.assert_allclose(listed, one, atol=1e-6)
    # The dict model given a list, in the order Keras flattens its dict (keys
    # sorted): the same maps, without Keras' structure warning on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_list = keras_rise.RiseExplainer(
            model, image_input=1, score_regression=False, **OPTIONS
        ).explain([np.array([[1.0], [1.0]]), images])
    np.testing.assert_allclose(as_list, one, atol=1e-6)


def test_multi_input_errors_name_the_problem(two_input_model):
    model = two_input_model
    explainer = keras_rise.RiseExplainer(model, **OPTIONS)
    inputs = {"image": _image()[None], "gain": np.ones((1, 1))}
    with pytest.raises(ValueError, match="image_input"):
        explainer.explain(inputs)
    with pytest.raises(ValueError, match="batch size"):
        keras_rise.RiseExplainer(model, image_input="image", **OPTIONS).explain(
            {"image": _image()[None], "gain": np.ones((3, 1))}
        )
    with pytest.raises(TypeError, match="image_input"):
        keras_rise.RiseExplainer(model, image_input=1.5)
    # Field test: a name or index of no input passed construction.
    for wrong in ("img", 2):
        with pytest.raises(ValueError, match=rf"one of \['gain', 'image'\].*={wrong!r}"):
            keras_rise.RiseExplainer(model, image_input=wrong)
    with pytest.raises(TypeError, match="fill_value` must be a float or an array.*None"):
        keras_rise.RiseExplainer(model, image_input="image", fill_value=None)
    # Field test: an index, valid for the model, was refused for dict inputs
    # as if it named no input at all.
    with pytest.raises(ValueError, match="=1, an index, which picks from a list of inputs"):
        keras_rise.RiseExplainer(model, image_input=1, **OPTIONS).explain(inputs)
    # Field test: a misspelt key blamed `image_input` and listed the user's
    # keys as the model's; an extra key passed with a Keras warning per trace.
    named = keras_rise.RiseExplainer(model, image_input="image", **OPTIONS)
    gain = np.ones((1, 1))
    for given, message in (
        ({"img": _image()[None], "gain": gain},
         "The inputs are a dict with keys ['img', 'gain'], but the model's inputs are "
         "['gain', 'image']: no 'image'; 'img' is not among them."),
        ({"image": _image()[None], "gain": gain, "zz": gain},
         "keys ['image', 'gain', 'zz'], but the model's inputs are ['gain', 'image']: "
         "'zz' is not among them."),
    ):
        with pytest.raises(ValueError) as error:
            named.explain(given)
        assert message in str(error.value)
    # Field test: an index with one array crashed comparing None to an int; one
    # input without its batch axis beside one with it, or a list short of an
    # input, got Keras' error with shapes the user never gave.
    for image_input in ("image", 0):
        with pytest.raises(ValueError, match=rf"`image_input={image_input!r}` was given, but "
                           "the inputs are a single array"):
            keras_rise.RiseExplainer(model, image_input=image_input, **OPTIONS).explain(
                _image()[None]
            )
    for given, message in (
        ({"image": _image(), "gain": np.ones((2, 1))},
         "`inputs['image']` has no batch axis (shape (32, 32, 3)) but inputs['gain'] has "
         "one (shape (2, 1)): give every input with its batch axis, or none."),
        ({"image": _image()[None], "gain": np.ones((1, 3))},
         "inputs['gain'] must be a batch (batch, 1) of the model's input 'gain'. Received "
         "shape (1, 3)."),
        ([_image()[None]], "The model takes 2 inputs ['gain', 'image']; received a list of 1."),
    ):
        with pytest.raises(ValueError) as error:
            named.explain(given)
        assert message in str(error.value)
    # One example of each, or a (batch, 1) input given as (batch,): Keras takes them.
    one = named.explain({"image": _image(), "gain": np.ones(1)})
    np.testing.assert_allclose(
        named.explain({"image": _image()[None], "gain": np.ones(1)})[0], one, atol=1e-6
    )


def _dict_output_model():
    inputs = keras.Input((SIZE, SIZE, 3))
    value = _Regressor()(inputs)
    logits = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, {"value": value, "logits": logits})


def test_dict_output_model_picks_its_output():
    model = _dict_output_model()
    explainer = keras_rise.RiseExplainer(model, **OPTIONS)
    saliency = explainer.explain(_image(), targets=scores.OutputScore(output="value"))
    assert ranking_auc(saliency, _region()) >= 0.9
    assert explainer.explain(
        _image(), targets=scores.ClassScore(output="logits")
    ).shape == (SIZE, SIZE)
    with pytest.raises(ValueError, match=r"\['logits', 'value'\]"):
        explainer.explain(_image())
    with pytest.raises(ValueError, match="not an output"):
        explainer.explain(_image(), targets=scores.OutputScore(output="missing"))
    # Field test: a list of outputs, asked for by its layer's name, was
    # refused (the command took the name): a Keras model's output names
    # (`model.output_names`) choose them, as indices do.
    list_model = keras.Model(model.inputs, [model.output["logits"], model.output["value"]])
    names = list_model.output_names  # its output layers' names
    listed = keras_rise.RiseExplainer(list_model, **OPTIONS)
    for output in (names[1], 1):
        np.testing.assert_allclose(
            listed.explain(_image(), targets=scores.OutputScore(output=output)), saliency,
            atol=1e-6,
        )
    with pytest.raises(ValueError, match=rf"its outputs are \['{names[0]}', '{names[1]}'\] \(or"):
        listed.explain(_image(), targets=scores.OutputScore(output="values"))
    with pytest.raises(ValueError, match="returns a list of 2 outputs, chosen: output=0"):
        listed.explain(_image(), targets=scores.OutputScore(output=2))
    # A plain function's list has no names.
    with pytest.raises(ValueError, match="chosen by index, not by name"):
        keras_rise.RiseExplainer(lambda x: list_model(x), **OPTIONS).explain(
            _image(), targets=scores.OutputScore(output=names[1]))
    # The layer and the metrics read the names alike.
    layer = keras_rise.RiseLayer(list_model, score=scores.OutputScore(output=names[1]), **OPTIONS)
    np.testing.assert_allclose(layer(_image()[None])[0], saliency, atol=1e-5)
    by_name = keras_rise.metrics.deletion(
        list_model, _image(), saliency, targets=scores.OutputScore(output=names[1]))
    by_index = keras_rise.metrics.deletion(
        list_model, _image(), saliency, targets=scores.OutputScore(output=1))
    assert by_name.auc == pytest.approx(by_index.auc)


def test_plain_callables_as_model_and_score(regressor, regressor_explainer, tmp_path):
    keras_model = regressor

    @tf.function
    def plain(images):  # no `training` argument
        return keras_model(images)

    expected = regressor_explainer.explain(_image())
    np.testing.assert_allclose(
        keras_rise.RiseExplainer(plain, **OPTIONS).explain(_image()), expected, atol=1e-6
    )
    # Field test: a tf.Module restored by tf.saved_model.load was called with
    # `training=False` (its __call__ takes **kwargs) and failed.
    module = tf.Module()
    module.model = keras_model
    module.__call__ = tf.function(
        lambda images: module.model(images),
        input_signature=[tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32)],
    )
    tf.saved_model.save(module, str(tmp_path / "module"))
    restored = tf.saved_model.load(str(tmp_path / "module"))
    np.testing.assert_allclose(
        keras_rise.RiseExplainer(restored, **OPTIONS).explain(_image()), expected, atol=1e-6
    )
    # One without __call__ (serving functions only) is told how to pass it.
    served = tf.Module()
    served.serve = module.__call__
    tf.saved_model.save(served, str(tmp_path / "served"))
    with pytest.raises(TypeError, match=r"tf.saved_model.load: pass its "
                       r"\.signatures\['serving_default'\]"):
        keras_rise.RiseExplainer(tf.saved_model.load(str(tmp_path / "served")))
    doubled = keras_rise.RiseExplainer(keras_model, score_regression=False, **OPTIONS)
    by_callable = doubled.explain(_image(), targets=lambda outputs: 2.0 * outputs)
    by_score = doubled.explain(_image())
    np.testing.assert_allclose(by_callable, 2.0 * by_score, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "score,error,match",
    [
        (lambda outputs: outputs.numpy(), TypeError, "TensorFlow tensor"),
        (lambda outputs: tf.concat([outputs, outputs], 0), ValueError,
         r"\(batch,\).*batch of 2 inputs it returned shape \(4,\)"),
        (lambda outputs: tf.reduce_mean(outputs, keepdims=True), ValueError, r"\(1,\)"),
        (lambda outputs: outputs["value"], ValueError, "score <lambda> failed"),
        (scores.OutputScore, TypeError, "the class itself"),
        (lambda outputs: outputs[:, None, None], ValueError, "returned shape"),
        (scores.ClassScore(), ValueError, r"\(batch, num_classes\)"),
        (scores.RegionScore(0, (0, 0, 2, 2)), ValueError, "height, width, classes"),
        ("top", ValueError, '"all"'),
        (3, ValueError, "class scores"),
    ],
)
def test_wrong_scores_fail_with_one_line(score, error, match, regressor_explainer):
    explainer = regressor_explainer
    with pytest.raises(error, match=match) as info:
        explainer.explain(_image(), targets=score)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def cnn_explainer(cnn):
    return keras_rise.RiseExplainer(cnn, num_masks=64, seed=1)


def test_a_score_function_of_data_per_input_is_told_what_it_receives(cnn_explainer, images):
    # Field test: a function closing over one row of data per input fits
    # the explainer's check (two rows, for two inputs) but not the loop's
    # batches of masked copies; TensorFlow's error named a graph node.
    images = images[:2]
    weights = np.eye(4, dtype=np.float32)[[2, 1]]  # class 2, then class 1

    def per_input(outputs):
        return tf.reduce_sum(outputs * weights, axis=-1)

    explainer = cnn_explainer  # 64 masks, the default batch size
    with pytest.raises(ValueError, match=r"per_input failed on the model's outputs of shape "
                       r"\(64, 4\).*one input per call") as info:
        explainer.explain(images, targets=per_input, verbose=0)
    assert "\n" not in str(info.value)
    # With the data as a tensor, TensorFlow's shape error, without the graph
    # op it names.
    with pytest.raises(ValueError, match="but are 64 and 2 with input shapes") as info:
        explainer.explain(images, targets=lambda outputs: tf.reduce_sum(
            outputs * tf.constant(weights), axis=-1), verbose=0)
    assert "{{node" not in str(info.value)
    # With four inputs it fails already on the explainer's check, whose two
    # rows are copies of one input (found on the bundled photos, batched by
    # image_dataset_from_directory): the same words.
    four_rows = np.concatenate([weights, weights])

    def per_input_of_four(outputs):
        return tf.reduce_sum(outputs * four_rows, axis=-1)

    with pytest.raises(ValueError, match=r"per_input_of_four failed on the model's outputs of "
                       r"shape \(2, 4\).*one input per call"):
        explainer.explain(np.concatenate([images, images]), targets=per_input_of_four,
                          verbose=0)
    # A function wrong on any outputs: its own cause, named.
    with pytest.raises(ValueError, match=r"shape \(2, 4\).*out of bounds"):
        explainer.explain(images, targets=lambda outputs: outputs[:, 9], verbose=0)
    # What it says to do: one input per call, each with its own function.
    one_by_one = [
        explainer.explain(image, targets=lambda outputs, row=row: tf.reduce_sum(
            outputs * row, axis=-1), verbose=0)
        for image, row in zip(images, weights)
    ]
    np.testing.assert_allclose(
        np.stack(one_by_one), explainer.explain(images, targets=[2, 1], verbose=0), atol=1e-6
    )


def test_several_classes_at_once_equal_one_class_at_a_time(cnn, images):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=60, batch_size=20)
    both = explainer.explain(images, targets=scores.ClassScore([2, 0]))
    assert both.shape == (3, 32, 32, 2)
    np.testing.assert_allclose(both[..., 0], explainer.explain(images, targets=2), atol=1e-5)
    np.testing.assert_allclose(both[..., 1], explainer.explain(images, targets=0), atol=1e-5)


@pytest.mark.parametrize(
    "score",
    [
        scores.ClassScore([1, 0], output=0),
        scores.OutputScore(index=1),
        scores.RegionScore(1, (1, 2, 5, 6)),
        scores.RegionScore(0, np.eye(8, dtype=bool)),
        scores.DetectionScore([[0, 0, 4, 4]], [1], box_format="xywh"),
        scores.SimilarityScore([1.0, 2.0, 0.5]),
    ],
)
def test_config_round_trip_gives_the_same_scores(score):
    outputs = {
        scores.ClassScore: [tf.random.uniform([2, 3])],
        scores.OutputScore: tf.random.uniform([2, 3]),
        scores.RegionScore: tf.random.uniform([2, 8, 8, 2]),
        scores.DetectionScore: {
            "boxes": tf.constant([[[0, 0, 4, 4], [1, 1, 3, 3]]] * 2, tf.float32),
            "class_probs": tf.random.uniform([2, 2, 2]),
        },
        scores.SimilarityScore: tf.random.uniform([2, 3]),
    }[type(score)]
    rebuilt = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(score)
    )
    assert type(rebuilt) is type(score)
    np.testing.assert_allclose(rebuilt(outputs), score(outputs), rtol=1e-6)


def test_box_iou_matches_hand_computed_values():
    targets = tf.constant([[[0, 0, 2, 2]]], tf.float32)
    proposals = tf.constant([[[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 0, 0]]], tf.float32)
    np.testing.assert_allclose(
        scores.box_iou(targets, proposals).numpy(), [[[1 / 7, 1.0, 0.0, 0.0]]], rtol=1e-6
    )


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: scores.ClassScore("top"), ValueError, '"all"'),
        (lambda: scores.ClassScore(1.5), TypeError, "class_ids"),
        (lambda: scores.ClassScore([]), ValueError, "at least one class"),
        (lambda: scores.RegionScore(-1, (0, 0, 2, 2)), ValueError, "class_id` must be >= 0"),
        (lambda: scores.OutputScore(index="a"), TypeError, "index"),
        (lambda: scores.RegionScore(0, (4, 4, 2, 2)), ValueError, "top < bottom"),
        (lambda: scores.RegionScore(0, np.zeros((4, 4), bool)), ValueError, "True"),
        (lambda: scores.DetectionScore([1, 2, 3], 0), ValueError, "boxes"),
        (lambda: scores.DetectionScore(list("abcd"), 0), TypeError, "`boxes` must be numbers"),
        (lambda: scores.DetectionScore([[0, 0, 1, 1]], [0, 1]), ValueError, "one class per box"),
        (lambda: scores.DetectionScore([0, 0, 1, 1], 0, box_format="xy"), ValueError, "box_format"),
        # Field test: these gave all-zero maps without a word.
        (lambda: scores.DetectionScore([16, 16, 4, 4], 0), ValueError, "positive width"),
        (lambda: scores.DetectionScore([[0, 0, 4, 4], [8, 8, 8, 8]], [0, 1]), ValueError,
         r"box 1, \[8.0, 8.0, 8.0, 8.0\]"),
        (lambda: scores.DetectionScore([2, 2, 0, 5], 0, box_format="xywh"), ValueError,
         "positive width"),
        (lambda: scores.DetectionScore([4, 4, 2, 2], 0, box_format="yxyx"), ValueError,
         "as \\(x1, y1, x2, y2\\)"),
        (lambda: scores.SimilarityScore(np.zeros(3)), ValueError, "non-zero"),
        # Field test: "could not convert string to float: 'abc'", no argument named.
        (lambda: scores.SimilarityScore("abc"), TypeError, "`reference` must be.*'abc'"),
        (lambda: scores.Score(output=[1]), TypeError, "output"),
    ],
)
def test_score_constructors_reject_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_deletion_and_insertion_follow_the_score_they_are_given(detector_explainer):
    score = scores.DetectionScore(PROPOSALS[1], class_ids=0)
    result = detector_explainer.explain_result(_image(), score)
    deletion = keras_rise.metrics.deletion(detector, _image(), result.saliency, score)
    assert deletion.curves[0] == pytest.approx(float(result.scores), rel=1e-5)
    assert deletion.curves[-1] == pytest.approx(0.0, abs=1e-6)  # all pixels gone
    backwards = keras_rise.metrics.deletion(detector, _image(), -result.saliency, score)
    assert deletion.auc < backwards.auc
    insertion = keras_rise.metrics.insertion(detector, _image(), result.saliency, score)
    backwards = keras_rise.metrics.insertion(detector, _image(), -result.saliency, score)
    assert insertion.auc > backwards.auc
    two = scores.DetectionScore(PROPOSALS[:2], class_ids=0)
    with pytest.raises(ValueError, match="one score per image"):
        keras_rise.metrics.deletion(detector, _image(), result.saliency, two)
    with pytest.raises(ValueError, match="reach past the detector's 2 classes"):
        detector_explainer.explain(_image(), scores.DetectionScore(PROPOSALS[0], class_ids=2))


def test_scores_that_differ_in_data_share_one_compiled_loop(
    detector_explainer, segmenter_explainer
):
    explainer = detector_explainer
    image = _image()
    first = explainer.explain(image, targets=scores.DetectionScore(PROPOSALS[0], 0))
    traces = explainer._explain_fn.experimental_get_tracing_count()
    maps = [
        explainer.explain(image, targets=scores.DetectionScore(box, index % 2))
        for index, box in enumerate(PROPOSALS[1:], 1)
    ]
    assert explainer._explain_fn.experimental_get_tracing_count() == traces
    # Each map is still its own box's and class's: equal to a fresh explainer's.
    fresh = keras_rise.RiseExplainer(detector, **OPTIONS)
    np.testing.assert_allclose(
        maps[2], fresh.explain(image, targets=scores.DetectionScore(PROPOSALS[3], 1)),
        atol=1e-6,
    )
    assert np.abs(maps[2] - first).max() > 1e-3
    # Likewise for regions and references.
    explainer = segmenter_explainer
    explainer.explain(image, targets=scores.RegionScore(1, (0, 0, 8, 8)))
    traces = explainer._explain_fn.experimental_get_tracing_count()
    explainer.explain(image, targets=scores.RegionScore(1, (8, 8, 16, 16)))
    assert explainer._explain_fn.experimental_get_tracing_count() == traces


def test_layer_masks_the_image_input_of_a_two_input_model(
    two_input_model, two_input_explainer, tmp_path
):
    model = two_input_model
    options = dict(image_input="image", score_regression=False, **OPTIONS)
    inputs = {"image": np.stack([_image(0), _image(1)]), "gain": np.array([[1.0], [2.0]])}
    expected = two_input_explainer.explain(inputs)
    layer = keras_rise.RiseLayer(model, score=scores.OutputScore(), **options)
    maps = layer({key: tf.constant(value, tf.float32) for key, value in inputs.items()})
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)
    assert layer.get_config()["image_input"] == "image"
    with pytest.raises(ValueError, match="one image input") as info:
        keras_rise.export_explainer(model, tmp_path / "unused")
    # Field test: the advice's wrapper, given to export_explainer, met the
    # same error. Keras' own export of the wrapper serves the maps.
    assert "wrapper.export(EXPORT_DIR)" in str(info.value)
    wrapper_inputs = {
        name: keras.Input(value.shape[1:], name=name) for name, value in inputs.items()
    }
    wrapper = keras.Model(wrapper_inputs, layer(wrapper_inputs))
    wrapper.export(str(tmp_path / "wrapper"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "wrapper")).serve(
        {key: tf.constant(value, tf.float32) for key, value in inputs.items()}
    )
    np.testing.assert_allclose(served.numpy(), expected, atol=1e-5)


def test_what_users_get_wrong_is_named(regressor_explainer, detector_explainer):
    explainer = regressor_explainer
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        explainer.explain(tf.data.Dataset.from_tensor_slices(_image()[None]))
    with pytest.raises(ValueError, match="NaN or inf"):
        # Finite on the image, NaN once masking darkens the region enough.
        explainer.explain(_image(), targets=lambda out: tf.math.log(out - 0.5))
    with pytest.raises(ValueError, match="DetectionScore"):
        detector_explainer.explain(_image())
    # A 0/1 integer mask is a region, like a boolean one.
    as_int = scores.RegionScore(1, _region().astype("uint8"))
    outputs = tf.random.uniform([2, SIZE, SIZE, 2])
    np.testing.assert_allclose(as_int(outputs), scores.RegionScore(1, _region())(outputs))
    with pytest.raises(ValueError, match="only 0 and 1") as info:
        scores.RegionScore(1, np.full((SIZE, SIZE), 3))
    assert "\n" not in str(info.value)


def test_explain_dataset_takes_a_score(regressor_explainer, tmp_path):
    images = np.stack([_image(seed) for seed in range(3)])
    explainer = regressor_explainer
    dataset = tf.data.Dataset.from_tensor_slices(images)
    summary = keras_rise.explain_dataset(
        explainer, dataset, tmp_path, targets=scores.OutputScore(), images_per_call=2
    )
    assert summary.written == 3
    rows = (tmp_path / "index.csv").read_text().splitlines()[1:]
    expected = explainer.explain_result(images, scores.OutputScore())
    for row, score in zip(rows, expected.scores):
        index, class_id, value = row.split(",")
        assert class_id == "-1" and float(value) == pytest.approx(float(score), rel=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "000002.npy"), expected.saliency[2], atol=1e-5)


def test_class_ids_outside_the_model_are_refused_on_every_path(cnn, cnn_explainer, images):
    # Field test: ClassScore(9) gave a GatherV2 error, a layer's class_ids a
    # bare InvalidArgumentError (and on a GPU tf.gather reads 0 instead).
    model, explainer, images = cnn, cnn_explainer, images[:2]
    for score in (scores.ClassScore(9), scores.ClassScore([0, 9])):
        with pytest.raises(ValueError, match="class index 9, outside the model's 4 classes"):
            explainer.explain(images, targets=score, verbose=0)
    inputs, ids = keras.Input((32, 32, 3)), keras.Input((), dtype="int32")
    layer_model = keras.Model([inputs, ids], keras_rise.RiseLayer(model, num_masks=32)(inputs, ids))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class ids must be in \[0, 4\)"):
        layer_model.predict([images, np.array([1, 9])], verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class ids must be in \[0, 4\)"):
        layer_model.predict([images, np.array([-1, 0])], verbose=0)
    assert layer_model.predict([images, np.array([1, 3])], verbose=0).shape == (2, 32, 32)
    # A scalar tensor is one class for every image, as an int is.
    np.testing.assert_array_equal(
        explainer.explain(images, targets=tf.constant(2), verbose=0),
        explainer.explain(images, targets=2, verbose=0),
    )


def test_equal_scores_made_anew_share_one_compiled_loop(recwarn):
    # Field test: a fresh ClassScore()/OutputScore() per call traced the loop
    # again each time, and TensorFlow warned about retracing after five.
    model = small_cnn()
    explainer = keras_rise.RiseExplainer(model, num_masks=32)
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    for _ in range(6):
        for score in (scores.ClassScore(), scores.ClassScore([0, 2]), scores.OutputScore(index=1)):
            explainer.explain(images, targets=score, verbose=0)
    assert explainer._loop.function.experimental_get_tracing_count() == 3
    # Different configs are different graphs.
    explainer.explain(images, targets=scores.ClassScore([1, 2]), verbose=0)
    assert explainer._loop.function.experimental_get_tracing_count() == 4


def test_shape_messages_name_the_batch_axis_not_the_probe_batch():
    # Field test: one image explained, the message read "the model's is
    # (2, 16, 16, 2)": the explainer's probe batch, not the user's.
    inputs = keras.Input((16, 16, 3))
    segmenter = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    explainer = keras_rise.RiseExplainer(segmenter, num_masks=16)
    image = np.zeros((16, 16, 3), np.float32)
    for score, text in ((scores.ClassScore(1), "(batch, 16, 16, 2)"),
                        (scores.OutputScore(), "(batch, 16, 16, 2)"),
                        (scores.RegionScore(5, (0, 0, 4, 4)), "(batch, 16, 16, 2)")):
        with pytest.raises(ValueError, match=re.escape(f"the model's is {text}")):
            explainer.explain(image, targets=score, verbose=0)


def test_binary_score_explains_both_classes_of_one_sigmoid_unit():
    # Field test: a Dense(1, "sigmoid") classifier's unit was one "class 0"
    # scored p (class 1's probability); its class 0 could not be asked for.
    weights = np.linspace(-2.0, 2.0, 10).astype(np.float32)[:, None]
    inputs = keras.Input((10,))
    logit = keras.layers.Dense(
        1, use_bias=False, kernel_initializer=keras.initializers.Constant(weights)
    )
    logits = keras.Model(inputs, logit(inputs))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logits.output))
    rows = np.stack([np.linspace(1, 0, 10), np.linspace(0, 1, 10)]).astype(np.float32)
    p = model.predict(rows, verbose=0)[:, 0]
    assert p[0] < 0.5 < p[1]

    explainer = keras_rise.RiseExplainer(model, num_masks=256, binary_masks=True)
    result = explainer.explain_result(rows, targets=scores.BinaryScore())
    np.testing.assert_array_equal(result.class_ids, [0, 1])
    np.testing.assert_allclose(result.scores, [1 - p[0], p[1]], rtol=1e-5)
    one = explainer.explain(rows, targets=scores.BinaryScore(1))
    zero = explainer.explain(rows, targets=scores.BinaryScore(0))
    # E[(1 - p) · m] / keep_prob = 1 - E[p · m] / keep_prob, on the same masks.
    np.testing.assert_allclose(one + zero, 1.0, atol=1e-5)
    assert np.argmax(one[1]) == 9 and np.argmax(zero[0]) == 0  # the strongest evidence
    both = explainer.explain(rows, targets=scores.BinaryScore("all"))
    np.testing.assert_allclose(both, np.stack([zero, one], axis=-1), atol=1e-6)
    from_logits = keras_rise.RiseExplainer(logits, num_masks=256, binary_masks=True)
    np.testing.assert_allclose(
        from_logits.explain(rows, targets=scores.BinaryScore(1, from_logits=True)), one, atol=1e-5
    )
    config = scores.BinaryScore(0, from_logits=True).get_config()
    assert scores.BinaryScore.from_config(config).get_config() == config

    # A unit made by a sigmoid layer is read this way by default (field test:
    # targets=None explained p, "class 0", on every input, where the command
    # line said class 1), and class ids are its two classes.
    default = explainer.explain_result(rows)
    np.testing.assert_array_equal(default.class_ids, [0, 1])
    np.testing.assert_allclose(default.saliency, result.saliency, atol=1e-6)
    np.testing.assert_allclose(explainer.explain(rows, targets=1), one, atol=1e-6)
    np.testing.assert_allclose(explainer.explain(rows, targets=[1, 0])[1], zero[1], atol=1e-6)
    np.testing.assert_allclose(explainer.explain(rows, targets="all"), both, atol=1e-6)
    layer = keras_rise.RiseLayer(model, num_masks=256, binary_masks=True)
    np.testing.assert_allclose(np.asarray(layer(rows)), result.saliency, atol=1e-5)
    # The unit of the logits is one score, as before.
    with pytest.raises(ValueError, match=r"outside the model's 1 classes.*BinaryScore\(\)"):
        from_logits.explain(rows, targets=1)
    with pytest.raises(ValueError, match=r"BinaryScore needs .* \(batch, 3\)"):
        scores.BinaryScore()(tf.zeros([2, 3]))


def test_region_score_without_a_region_explains_each_inputs_own_segment():
    # Field test: one RegionScore region served every image of a batch, and
    # a function closing over per-image masks failed deep in TensorFlow. With
    # no region, each input's segment of the class — where the model's top
    # class on the unmasked input is that class — is its region.
    inputs = keras.Input((16, 16, 3))
    red = keras.layers.AveragePooling2D(3, strides=1, padding="same")(inputs[..., :1])
    segmenter = keras.Model(inputs, keras.layers.Concatenate()([1.0 - red, red]))
    images = np.zeros((3, 16, 16, 3), np.float32)
    images[0, 2:6, 3:8, 0] = 1.0
    images[1, 9:14, 8:15, 0] = 1.0  # the third has no red: no segment of class 1
    explainer = keras_rise.RiseExplainer(segmenter, num_masks=128, grid_size=8)
    result = explainer.explain_result(images, targets=scores.RegionScore(1))
    segments = segmenter.predict(images, verbose=0).argmax(-1) == 1
    assert segments[0].any() and segments[1].any() and not segments[2].any()
    for index in range(2):
        own = scores.RegionScore(1, region=segments[index])
        np.testing.assert_allclose(
            result.saliency[index], explainer.explain(images[index], targets=own), atol=1e-5
        )
        # The map's peak is on the input's own square, not the other's.
        peak = np.unravel_index(np.argmax(result.saliency[index]), (16, 16))
        assert segments[index][peak]
    whole = scores.RegionScore(1, region=(0, 0, 16, 16))
    np.testing.assert_allclose(
        result.saliency[2], explainer.explain(images[2], targets=whole), atol=1e-5
    )
    np.testing.assert_allclose(result.targets.sum(axis=(1, 2)), 1.0, atol=1e-6)
    config = scores.RegionScore(1).get_config()
    assert config["region"] is None and scores.RegionScore.from_config(config).region is None

    # A mask with a channel axis names the output's positions.
    message = r"mask of shape \(16, 16, 1\) does not match .*\(16, 16\)"
    with pytest.raises(ValueError, match=message):
        scores.RegionScore(1, region=np.ones((16, 16, 1), bool))(tf.zeros([2, 16, 16, 2]))
    # Field test: a binary segmenter's one sigmoid channel had every pixel as
    # its "top class", so its segment was the whole output.
    probabilities = tf.constant([[[0.9, 0.2], [0.7, 0.1]]])[..., None]  # (1, 2, 2, 1)
    segment = scores.RegionScore(0).targets_of(probabilities).numpy()
    np.testing.assert_allclose(segment, [[[0.5, 0.0], [0.5, 0.0]]])
    assert float(scores.RegionScore(0)(probabilities)[0]) == pytest.approx(0.8)
    # Field test: a classifier's (batch, 4) was said to need "more than 1
    # classes"; the rank is what is wrong.
    with pytest.raises(ValueError) as info:
        scores.RegionScore(1)(tf.zeros([2, 4]))
    assert "needs an output of shape (batch, height, width, classes); the model's is " \
        "(batch, 4): class scores, whose class 1 targets=1 explains" in str(info.value)
    with pytest.raises(ValueError, match=r"does not have: the model's is \(batch, 8, 8, 1\), "
                       r"1 class \(0 to 0\)\. A binary segmenter's .* RegionScore\(0\)"):
        scores.RegionScore(1)(tf.zeros([2, 8, 8, 1]))
    steps = np.zeros(20, np.int64)
    steps[[3, 4]] = 1
    with pytest.raises(ValueError, match=r"must be boolean: region=mask.astype\(bool\)"):
        scores.RegionScore(1, region=steps)
    # Several scores are not one: the message says what one is.
    with pytest.raises(TypeError, match=r"or one score \(a keras_rise.scores.Score"):
        explainer.explain(images, targets=[scores.RegionScore(1), scores.RegionScore(0)])
