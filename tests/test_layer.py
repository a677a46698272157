import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import GRAPH_OPTIONS

import keras_rise

ARGUMENTS = dict(num_masks=90, grid_size=5, keep_prob=0.4, batch_size=40, seed=2)


def _explainer_model(cnn):
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, keras_rise.RiseLayer(cnn, **ARGUMENTS)(inputs))


def test_layer_equals_the_explainer(cnn, images):
    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images)
    layer = keras_rise.RiseLayer(cnn, **ARGUMENTS)
    np.testing.assert_allclose(layer(images).numpy(), expected, atol=1e-5)
    by_class = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images, [3, 0, 2])
    np.testing.assert_allclose(
        layer(images, class_ids=tf.constant([3, 0, 2])).numpy(), by_class, atol=1e-5
    )


def test_class_ids_of_the_wrong_shape_or_dtype_are_refused_by_name(cnn, images):
    # Field test: two ids for one image failed in TensorFlow's GatherV2,
    # "params.shape[0]: 1 should be equal to indices.shape[0]: 2".
    layer = keras_rise.RiseLayer(cnn, **ARGUMENTS)
    for class_ids, error, message in (
        (np.array([1, 2]), ValueError, r"shape \(3,\) for these 3 images. Received shape \(2,\)"),
        (np.array([[1], [2], [0]]), ValueError, r"Received shape \(3, 1\)"),
        (np.array([1.0, 2.0, 0.0]), TypeError, "`class_ids` must be ints.*float"),
    ):
        with pytest.raises(error, match=message):
            layer(images, class_ids=class_ids)
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):  # a dynamic batch
        tf.function(
            lambda batch: layer(batch, class_ids=tf.constant([[1]])),
            input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)],
        ).get_concrete_function()
    np.testing.assert_allclose(  # ids as NumPy int64 still work
        layer(images, class_ids=np.array([3, 0, 2])).numpy(),
        layer(images, class_ids=tf.constant([3, 0, 2])).numpy(), atol=1e-6,
    )


def test_inputs_that_are_not_a_batch_of_the_models_are_refused_by_shape(cnn, images):
    # Field test: one image without its batch axis was told "The model could
    # not be called on inputs of shape (32, 3)", Keras' message about a batch
    # of 32 rows; a wrong size got Keras' message about the model's layer.
    for shape in ((32, 32, 3), (2, 16, 16, 3), (2, 32, 32, 1)):
        with pytest.raises(ValueError, match=r"RiseLayer takes a batch of the model's inputs, "
                                             r"\(batch, 32, 32, 3\); received inputs of "
                                             rf"shape \({', '.join(map(str, shape))}\)\."):
            keras_rise.RiseLayer(cnn, **ARGUMENTS)(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"received inputs of shape \(None, 16, 16, 3\)"):
        keras_rise.RiseLayer(cnn, **ARGUMENTS)(keras.Input((16, 16, 3)))


def test_dynamic_batch_gives_the_same_maps(cnn, images, monkeypatch):
    # A dynamic batch is explained image by image in a `tf.map_fn`, which
    # AutoGraph converted under a caller that uses it (a `tf.function` as
    # here, Keras' `predict`, `model.export`): the engine's whole code was
    # rewritten for nothing, seconds per trace. It is left as it is.
    from tensorflow.python.autograph.impl import api as autograph_api

    converted = []
    convert = autograph_api._convert_actual

    def spy(entity, program_ctx):
        converted.append(getattr(entity, "__module__", None) or "")
        return convert(entity, program_ctx)

    monkeypatch.setattr(autograph_api, "_convert_actual", spy)
    layer = keras_rise.RiseLayer(cnn, **ARGUMENTS)

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    def explain(batch):
        return layer(batch)

    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images)
    np.testing.assert_allclose(explain(images).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(
        _explainer_model(cnn).predict(images, verbose=0), expected, atol=1e-5
    )
    assert not [module for module in converted if module.startswith("keras_rise")], converted


def test_keras_files_round_trip_in_a_fresh_process(cnn, images, tmp_path):
    # Two saved explainers, loaded in one new process (importing keras_rise
    # registers RiseLayer and the scores): the classifier's default, and a
    # segmenter's region score.
    segmenter = _segmenter()
    score = keras_rise.scores.RegionScore(1, (4, 8, 12, 20))
    layer = keras_rise.RiseLayer(segmenter, score=score, **ARGUMENTS)
    expected = keras_rise.RiseExplainer(segmenter, **ARGUMENTS).explain(images, score)
    np.testing.assert_allclose(layer(images).numpy(), expected, atol=1e-5)
    inputs = keras.Input((32, 32, 3))
    models = {"explainer": _explainer_model(cnn), "segment": keras.Model(inputs, layer(inputs))}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import keras_rise
        images = np.load({str(tmp_path / "images.npy")!r})
        for name in {list(models)!r}:
            model = keras.saving.load_model({str(tmp_path)!r} + f"/{{name}}.keras")
            np.save({str(tmp_path)!r} + f"/{{name}}_loaded.npy", model.predict(images, verbose=0))
        assert type(model.layers[-1].score).__name__ == "RegionScore"
    """)
    subprocess.run([sys.executable, "-c", GRAPH_OPTIONS + script], check=True, timeout=300)
    for name, model in models.items():
        np.testing.assert_array_equal(
            np.load(tmp_path / f"{name}_loaded.npy"), model.predict(images, verbose=0)
        )


def test_config_holds_the_constructor_arguments(cnn):
    layer = keras_rise.RiseLayer(cnn, fill_value=np.zeros(3), name="rise", **ARGUMENTS)
    config = layer.get_config()
    for name, value in ARGUMENTS.items():
        assert config[name] == value
    assert config["fill_value"] == [0.0, 0.0, 0.0] and config["name"] == "rise"
    rebuilt = keras_rise.RiseLayer.from_config(config)
    assert config == layer.get_config()  # left as it was
    assert isinstance(keras_rise.RiseLayer.from_config(config).model, keras.Model)
    assert isinstance(rebuilt.model, keras.Model)
    assert rebuilt.model.count_params() == cnn.count_params()


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"model": lambda x: x}, TypeError, "keras.Model"),
        ({"num_masks": 0}, ValueError, "num_masks"),
        ({"keep_prob": 2.0}, ValueError, "keep_prob"),
        ({"seed": "zero"}, TypeError, "seed"),
        # Field test: Keras' "Unrecognized keyword arguments".
        ({"targets": 2}, TypeError, r"no `targets=`.*ClassScore\(2\).*class_ids="),
    ],
)
def test_layer_rejects_bad_arguments(cnn, kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_rise.RiseLayer(**{"model": cnn, **kwargs})


def _segmenter():
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, keras.layers.AveragePooling2D(5, 1, "same")(inputs))


def test_layer_output_has_a_target_axis_for_several_targets(cnn, images):
    layer = keras_rise.RiseLayer(
        cnn, score=keras_rise.scores.ClassScore([1, 2]), **ARGUMENTS
    )
    inputs = keras.Input((32, 32, 3))
    outputs = layer(inputs)
    assert tuple(outputs.shape) == (None, 32, 32, 2)
    maps = keras.Model(inputs, outputs).predict(images, verbose=0)
    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images, 2)
    np.testing.assert_allclose(maps[..., 1], expected, atol=1e-5)


def test_layer_checks_the_grid_against_the_image(cnn):
    layer = keras_rise.RiseLayer(cnn, num_masks=8, grid_size=40)
    with pytest.raises(ValueError, match="grid_size"):
        layer(np.zeros((1, 32, 32, 3), np.float32))


def test_a_layer_takes_one_fill_for_every_image(cnn):
    per_image = np.zeros((2, 32, 32, 3), np.float32)
    layer = keras_rise.RiseLayer(cnn, num_masks=8, fill_value=per_image)
    with pytest.raises(ValueError, match="One fill per image is for RiseExplainer"):
        layer(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="One fill per image is for RiseExplainer"):
        keras_rise.export_explainer(cnn, "unused", fill_value=per_image)


def test_a_model_of_one_value_per_image_is_explained_by_default(images):
    # As in RiseExplainer, the default score of a (batch,) output is the
    # output itself; the layer's config keeps the default (None).
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    value = keras.layers.Reshape(())(keras.layers.Dense(1)(pooled))
    regressor = keras.Model(inputs, value)
    layer = keras_rise.RiseLayer(regressor, num_masks=40)
    saliency = keras.Model(inputs, layer(inputs))(images)
    expected = keras_rise.RiseExplainer(regressor, num_masks=40).explain(images, verbose=0)
    np.testing.assert_allclose(saliency, expected, atol=1e-5)
    assert layer.get_config()["score"] is None
