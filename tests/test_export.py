import io
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

import keras_rise

ARGUMENTS = dict(num_masks=80, batch_size=40, seed=6, score_regression=True)
CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"


@pytest.fixture(scope="module")
def exported(cnn, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("export")
    return keras_rise.export_explainer(cnn, export_dir, **ARGUMENTS)


def _folder_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def test_layout_and_size(cnn, exported):
    assert exported.name == "1" and (exported / "saved_model.pb").is_file()
    # No mask constants: masks are made in the graph from the seed, so the
    # largest constant is small (the regression's block matrices), and the
    # export weighs the model plus its graph of ops.
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((exported / "saved_model.pb").read_bytes())
    functions = saved.meta_graphs[0].graph_def.library.function
    largest = max(
        node.attr["value"].ByteSize()
        for function in functions
        for node in function.node_def
        if node.op == "Const"
    )
    assert largest < 16_000  # the 80 masks would take 80 · 32 · 32 · 4 = 327 680 bytes
    weights_bytes = 4 * cnn.count_params()
    assert _folder_bytes(exported) < weights_bytes + 2_000_000


def test_each_signature_traces_its_explanation_once(cnn, tmp_path, monkeypatch):
    # Keras' archive traced each endpoint to list its variables, and
    # tf.saved_model.save traced it again: an export took twice as long.
    traced = []
    explain = keras_rise.engine.RiseEngine.explain

    def counted(self, *args, **kwargs):
        traced.append(args[0].shape)
        return explain(self, *args, **kwargs)

    monkeypatch.setattr(keras_rise.engine.RiseEngine, "explain", counted)
    path = keras_rise.export_explainer(cnn, tmp_path, num_masks=8)
    signatures = tf.saved_model.load(str(path)).signatures
    assert sorted(signatures) == ["explain_class", "explain_image", "serving_default"]
    assert len(traced) == 3, traced


def test_saved_model_cli_lists_the_signatures(exported):
    shown = subprocess.run(
        [str(CLI), "show", "--dir", str(exported), "--all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    blocks = {
        name: shown.split(f"signature_def['{name}']:")[1].split("signature_def[")[0]
        for name in ("serving_default", "explain_class", "explain_image")
    }
    default = blocks["serving_default"]
    assert "inputs['images'] tensor_info:" in default
    assert "dtype: DT_FLOAT" in default and "shape: (-1, 32, 32, 3)" in default
    for output, dtype, shape in [
        ("saliency", "DT_FLOAT", "(-1, 32, 32)"),
        ("class_id", "DT_INT32", "(-1)"),
        ("score", "DT_FLOAT", "(-1)"),
    ]:
        section = default.split(f"outputs['{output}'] tensor_info:")[1]
        assert dtype in section.split("name:")[0] and shape in section.split("name:")[0]
    assert "inputs['class_ids'] tensor_info:" in blocks["explain_class"]
    assert "DT_INT32" in blocks["explain_class"].split("inputs['class_ids']")[1]
    image_block = blocks["explain_image"]
    assert "inputs['image_bytes'] tensor_info:" in image_block
    assert "outputs['heatmap_png'] tensor_info:" in image_block
    assert image_block.count("DT_STRING") == 2


def test_saved_model_cli_run_matches_explain(cnn, images, exported, tmp_path):
    np.save(tmp_path / "images.npy", images)
    subprocess.run(
        [
            str(CLI),
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'images.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images)
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "saliency.npy"), expected, atol=1e-5
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "class_id.npy"),
        cnn.predict(images, verbose=0).argmax(-1),
    )


def test_fresh_process_reproduces_the_maps_and_refuses_wrong_shapes(
    cnn, images, exported, tmp_path
):
    # Field test: a request without its batch axis aborted the process that
    # served the export (a check failure inside the model's ops); a wrongly
    # sized one failed deep inside the graph, an empty one in the model's
    # first convolution. They name the shapes now, and explain_class wants
    # one class id per image. In a child process: an abort would end the run.
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        signatures = tf.saved_model.load({str(exported)!r}).signatures
        images = tf.constant(np.load({str(tmp_path / "images.npy")!r}))
        out = signatures["explain_class"](
            images=images, class_ids=tf.constant([0, 1, 2], tf.int32))
        np.save({str(tmp_path / "maps.npy")!r}, out["saliency"].numpy())
        for name, extra in (("serving_default", {{}}),
                            ("explain_class", {{"class_ids": tf.constant([0])}})):
            for shape in ((32, 32, 3), (2, 16, 16, 3)):
                try:
                    signatures[name](images=tf.zeros(shape), **extra)
                except tf.errors.InvalidArgumentError as error:
                    print(name, str(error).splitlines()[-2].strip())
        try:
            signatures["explain_class"](images=tf.zeros((2, 32, 32, 3)),
                                        class_ids=tf.constant([0, 1, 2]))
        except tf.errors.InvalidArgumentError as error:
            print("ids", "one class id per input" in str(error))
        try:
            signatures["serving_default"](images=tf.zeros((0, 32, 32, 3)))
        except tf.errors.InvalidArgumentError as error:
            print("empty", "the request holds no inputs (a batch of 0)" in str(error))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images, [0, 1, 2])
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), expected, atol=1e-5)
    lines = done.stdout.splitlines()
    for name in ("serving_default", "explain_class"):
        for shape in ("[32,32,3]", "[2,16,16,3]"):
            assert (
                f"{name} Shape of tensor images {shape} is not compatible with expected "
                "shape [?,32,32,3]." in lines
            ), done.stdout
    assert "ids True" in lines and "empty True" in lines


def test_explain_image_returns_the_overlay(cnn, images, exported):
    loaded = tf.saved_model.load(str(exported))
    pixels = (images[0] * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    out = loaded.signatures["explain_image"](
        image_bytes=tf.constant([buffer.getvalue()])
    )
    heatmap = np.asarray(Image.open(io.BytesIO(out["heatmap_png"][0].numpy())))
    image = pixels.astype(np.float32) / 255
    saliency = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(image)
    expected = np.asarray(keras_rise.visualize.overlay(image, saliency))
    assert heatmap.shape == (32, 32, 3)
    assert np.abs(heatmap.astype(int) - expected.astype(int)).max() <= 2


def test_explain_image_shrinks_a_photo_as_the_command_line_does(cnn, exported, tmp_path):
    # Field test: explain_image resized without antialiasing, the command
    # line and Beam with PIL's (antialiased) bilinear: a photo four times
    # the model's size reached the model as other pixels, so other maps.
    from keras_rise import loading

    photo = (np.random.default_rng(5).random((128, 128, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    image = loading.load_image(tmp_path / "photo.png", (None, 32, 32, 3))  # as the CLI reads it
    saliency = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(image)
    expected = np.asarray(keras_rise.visualize.overlay(
        photo.astype(np.float32) / 255, keras_rise.visualize.resize_map(saliency, (128, 128))
    )).astype(int)
    served = tf.saved_model.load(str(exported)).signatures["explain_image"](
        image_bytes=tf.constant([(tmp_path / "photo.png").read_bytes()])
    )
    heatmap = np.asarray(Image.open(io.BytesIO(served["heatmap_png"][0].numpy()))).astype(int)
    assert heatmap.shape == (128, 128, 3)
    assert np.abs(heatmap - expected).max() <= 3


def test_predict_requests_match_the_signatures(exported):
    from tensorflow_serving.apis import predict_pb2

    signatures = tf.saved_model.load(str(exported)).signatures
    inputs = {
        "serving_default": {"images": np.zeros((1, 32, 32, 3), np.float32)},
        "explain_class": {
            "images": np.zeros((1, 32, 32, 3), np.float32),
            "class_ids": np.array([2], np.int32),
        },
        "explain_image": {"image_bytes": np.array([b"\x89PNG"], object)},
    }
    for name, values in inputs.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rise"
        request.model_spec.signature_name = name
        for key, value in values.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        spec = signatures[name].structured_input_signature[1]
        assert set(request.inputs) == set(spec)
        for key, proto in request.inputs.items():
            assert tf.dtypes.as_dtype(proto.dtype) == spec[key].dtype


def test_export_rejects_bad_arguments(cnn, exported, tmp_path):
    with pytest.raises(ValueError, match="already holds"):
        keras_rise.export_explainer(cnn, exported.parent, **ARGUMENTS)
    with pytest.raises(TypeError, match="Unknown explainer arguments"):
        keras_rise.export_explainer(cnn, tmp_path, masks=10)
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    flexible = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    with pytest.raises(ValueError, match=r"fixed size on every input axis.*\(batch, None, "
                                         r"None, 3\)\. Export a functional model around it"):
        keras_rise.export_explainer(flexible, tmp_path)

    # Field test: a subclassed model, called and built, got "AttributeError:
    # 'Sub' object has no attribute 'inputs'".
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, images, training=None):
            return self.dense(keras.ops.mean(images, axis=(1, 2)))

    subclassed = Sub()
    subclassed(np.zeros((1, 32, 32, 3), np.float32))
    # Its first call tells its rank and channels, not the sizes it takes.
    with pytest.raises(ValueError, match=r"must declare a fixed size.*\(batch, None, None, 3\)"
                                         r"\. Export a functional model around it"):
        keras_rise.export_explainer(subclassed, tmp_path)
    with pytest.raises(ValueError, match=r"must declare its input.*Sub declares none\. "
                                         r"Export a functional model around it"):
        keras_rise.export_explainer(Sub(), tmp_path)  # never called
    series = keras.Input((None, 3))  # field test: told of (height, width, channels)
    pooled = keras.layers.GlobalAveragePooling1D()(series)
    with pytest.raises(ValueError, match=r"keras.Input\(\(96, 3\)\).*\(batch, None, 3\)"):
        keras_rise.export_explainer(keras.Model(series, keras.layers.Dense(2)(pooled)), tmp_path)
    with pytest.raises(ValueError, match="num_masks"):
        keras_rise.export_explainer(cnn, tmp_path, num_masks=0)
    # Field test: `image_input` was an "unknown explainer argument", with no word of
    # how a model of several inputs is served.
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((2,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    two = keras.Model({"image": image, "meta": meta}, keras.layers.Dense(2)(joined))
    for model, message in (
        (two, r"takes 2 inputs \['image', 'meta'\]\. Wrap it, .*RiseLayer\(model, image_input"),
        (cnn, "this model has one input, which the export masks: leave `image_input` out"),
    ):
        with pytest.raises(ValueError, match=message):
            keras_rise.export_explainer(model, tmp_path, image_input="image")
    # Field test: a file given as the folder was TensorFlow's
    # "FailedPreconditionError: ... is not a directory".
    (tmp_path / "log.csv").write_text("epoch\n")
    with pytest.raises(ValueError, match=r"`export_dir` .*log.csv is a file"):
        keras_rise.export_explainer(cnn, tmp_path / "log.csv", **ARGUMENTS)


def test_grpc_client_round_trip_on_loopback(cnn, images, exported):
    """The example's gRPC client against a loopback PredictionService.

    TF Serving itself cannot be installed here; this server answers the same
    service with the exported signatures, so the client's request, the wire
    format and the response handling are all exercised.
    """
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
    import export_and_serve

    loaded = tf.saved_model.load(str(exported))

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            signature = loaded.signatures[request.model_spec.signature_name]
            inputs = {
                name: tf.constant(tf.make_ndarray(proto))
                for name, proto in request.inputs.items()
            }
            response = predict_pb2.PredictResponse()
            for name, value in signature(**inputs).items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        Servicer(), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        outputs = export_and_serve.grpc_predict(
            export_and_serve.grpc_request(images[1]), target=f"127.0.0.1:{port}"
        )
    finally:
        server.stop(None)
    expected = keras_rise.RiseExplainer(cnn, **ARGUMENTS).explain(images[1])
    np.testing.assert_allclose(outputs["saliency"][0], expected, atol=1e-5)
    assert int(outputs["class_id"][0]) == int(
        cnn.predict(images[1:2], verbose=0).argmax()
    )


def test_a_regression_export_returns_saliency_and_score(images, tmp_path):
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    regressor = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    score = keras_rise.scores.OutputScore()
    path = keras_rise.export_explainer(regressor, tmp_path, score=score, **ARGUMENTS)
    loaded = tf.saved_model.load(str(path))
    assert sorted(loaded.signatures) == ["explain_image", "serving_default"]
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    assert sorted(served) == ["saliency", "score"]
    explainer = keras_rise.RiseExplainer(regressor, **ARGUMENTS)
    result = explainer.explain_result(images, targets=score)
    np.testing.assert_allclose(served["saliency"].numpy(), result.saliency, atol=1e-5)
    np.testing.assert_allclose(served["score"].numpy(), result.scores, rtol=1e-5)
    # A (batch,) output is explained by default, as RiseExplainer does.
    flat = keras.Model(inputs, keras.layers.Reshape(())(regressor.output))
    path = keras_rise.export_explainer(flat, tmp_path / "flat", **ARGUMENTS)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        images=tf.constant(images)
    )
    assert sorted(served) == ["saliency", "score"]
    np.testing.assert_allclose(served["saliency"].numpy(), result.saliency, atol=1e-5)


def test_a_sigmoid_unit_exports_its_two_classes(images, tmp_path):
    # Field test: the export of a Dense(1, "sigmoid") classifier served p's
    # map as "class 0" for every image, where the command line said class 1.
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    model.layers[-1].set_weights([np.array([[40.0], [-30.0], [0.0]], "float32"), np.zeros(1)])
    images = images.copy()
    images[: len(images) // 2, ..., 0] *= 0.2  # less red: class 0
    path = keras_rise.export_explainer(model, tmp_path, **ARGUMENTS)
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    result = keras_rise.RiseExplainer(model, **ARGUMENTS).explain_result(
        images, keras_rise.scores.BinaryScore()
    )
    assert set(result.class_ids) == {0, 1}  # the weights split the images
    np.testing.assert_array_equal(served["class_id"].numpy(), result.class_ids)
    np.testing.assert_allclose(served["score"].numpy(), result.scores, rtol=1e-5)
    np.testing.assert_allclose(served["saliency"].numpy(), result.saliency, atol=1e-5)


def test_an_explainer_exports_with_its_options(cnn, images, exported, tmp_path):
    # Field test: export_explainer(explainer, ...) said "`model` must be a
    # keras.Model. Received: RiseExplainer."
    explainer = keras_rise.RiseExplainer(cnn, **ARGUMENTS)
    path = keras_rise.export_explainer(explainer, tmp_path)
    batch = tf.constant(images[:2])
    mine = tf.saved_model.load(str(path)).signatures["serving_default"](images=batch)
    theirs = tf.saved_model.load(str(exported)).signatures["serving_default"](images=batch)
    np.testing.assert_array_equal(mine["saliency"].numpy(), theirs["saliency"].numpy())
    with pytest.raises(TypeError, match="not both"):
        keras_rise.export_explainer(explainer, tmp_path / "b", num_masks=10)
