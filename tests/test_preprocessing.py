import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import dark_region_model
from keras.applications import imagenet_utils
from PIL import Image

import keras_rise

PIXELS = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3)).astype(np.float32)


@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_modes_equal_keras_applications(mode):
    expected = imagenet_utils.preprocess_input(PIXELS.copy(), mode=mode)
    preprocessing = keras_rise.Preprocessing(mode=mode)
    np.testing.assert_allclose(preprocessing(PIXELS), expected, atol=1e-5)
    np.testing.assert_allclose(
        preprocessing(tf.constant(PIXELS)).numpy(), expected, atol=1e-5
    )


def test_input_range_is_linear_and_round_trips_its_config():
    preprocessing = keras_rise.Preprocessing(input_range=(-1, 1))
    np.testing.assert_allclose(preprocessing(PIXELS), PIXELS / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(keras_rise.Preprocessing()(PIXELS), PIXELS / 255, atol=1e-7)
    for original in (preprocessing, keras_rise.Preprocessing(mode="caffe")):
        rebuilt = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(original)
        )
        np.testing.assert_array_equal(rebuilt(PIXELS), original(PIXELS))


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"mode": "inception"}, ValueError, "`mode` must be None or one of"),
        ({"input_range": (1, 1)}, ValueError, r"two finite numbers \(low, high\), low below"),
        # Field test: a reversed range was taken, and gave negative images.
        ({"input_range": (1, 0)}, ValueError, "low below high"),
        ({"input_range": "high"}, TypeError, "two numbers"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        keras_rise.Preprocessing(**kwargs)


def test_mean_modes_need_rgb():
    with pytest.raises(ValueError, match="needs RGB images"):
        keras_rise.Preprocessing(mode="caffe")(np.zeros((4, 4, 1)))


def test_exported_explain_image_preprocesses_and_draws_on_the_photo(tmp_path):
    # A 48x48-input model of darkness in [-1, 1], served a 96x72 photo.
    model = dark_region_model()
    pixels = np.full((72, 96, 3), 255, np.uint8)
    pixels[16:40, 56:80] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    options = dict(num_masks=200, batch_size=100, seed=1)
    path = keras_rise.export_explainer(
        model,
        tmp_path,
        preprocessing=keras_rise.Preprocessing(input_range=(-1, 1)),
        score=keras_rise.scores.ClassScore(0),
        **options,
    )
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["explain_image"](image_bytes=tf.constant([buffer.getvalue()]))
    heatmap = np.asarray(Image.open(io.BytesIO(out["heatmap_png"][0].numpy())))
    assert heatmap.shape == (72, 96, 3)  # the photo's size
    # The explainer on the same model input draws the same overlay.
    image = keras_rise.Preprocessing(input_range=(-1, 1))(
        np.asarray(Image.fromarray(pixels).resize((48, 48), Image.BILINEAR), np.float32)
    )
    saliency = keras_rise.RiseExplainer(model, **options).explain(image, targets=0)
    expected = np.asarray(
        keras_rise.visualize.overlay(pixels, keras_rise.visualize.resize_map(saliency, (72, 96)))
    )
    assert np.abs(heatmap.astype(int) - expected.astype(int)).mean() < 3
    # The hottest part of the heatmap is the square: red there.
    red = heatmap[..., 0].astype(int) - heatmap[..., 2].astype(int)
    assert red[16:40, 56:80].mean() > red.mean() + 20


def test_a_mode_and_a_range_are_not_both_taken():
    with pytest.raises(ValueError, match="not both"):
        keras_rise.Preprocessing(mode="caffe", input_range=(-1, 1))
