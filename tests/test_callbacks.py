import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from conftest import small_cnn

import keras_rise
from keras_rise.callbacks import DeletionInsertionCallback, SaliencyCallback


@pytest.fixture()
def training():
    model = small_cnn(num_classes=3, seed=7)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    return model, x, rng.integers(0, 3, 32)


def _image_events(log_dir):
    """(step, tag, decoded images) for every image summary under `log_dir`."""
    found = []
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    tensor = tf.make_ndarray(value.tensor)
                    pictures = [tf.io.decode_png(png).numpy() for png in tensor[2:]]
                    found.append((event.step, value.tag, tensor[:2], pictures))
    return found


def test_deletion_insertion_keys_reach_history_and_csv(training, tmp_path):
    model, x, y = training
    callback = DeletionInsertionCallback(x[:2], num_masks=100, batch_size=50)
    csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[callback, csv])
    # The barely trained model's curves are flat (its insertion's, at least,
    # here): told once per metric, not after every epoch of the three.
    flat = [str(w.message).split(":")[0] for w in caught if "curve is flat" in str(w.message)]
    assert flat and len(flat) == len(set(flat)) and set(flat) <= {"deletion", "insertion"}, flat
    for key in ("deletion_auc", "insertion_auc"):
        values = history.history[key]
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
    # The logged means are those of the last epoch's curves.
    assert history.history["insertion_auc"][-1] == pytest.approx(
        float(np.mean(callback.insertion.auc))
    )
    assert "insertion_auc" in (tmp_path / "log.csv").read_text().splitlines()[0]
    # One compiled explainer and one compiled curve loop for all epochs.
    assert callback.explainer._explain_fn.experimental_get_tracing_count() == 1
    runner = keras_rise.metrics._runner(model, 50)
    assert runner.scores.experimental_get_tracing_count() == 1


def test_the_curves_warnings_follow_pythons_filters_across_epochs():
    # Review: the callback re-emitted its metrics' warnings after every epoch
    # (Python's default filter shows one text once). Class 0's logit falls
    # with the input's variance: a blur scores above the noisy input.
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    inputs = keras.Input((16, 16, 1))
    spread = keras.layers.Lambda(lambda t: keras.ops.var(t, axis=[1, 2, 3])[:, None])(inputs)
    head = keras.layers.Dense(
        2, activation="softmax",
        kernel_initializer=keras.initializers.Constant([[-20.0, 0.0]]),
        bias_initializer=keras.initializers.Constant([3.0, 0.0]))
    model = keras.Model(inputs, head(spread))
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "categorical_crossentropy")
    callback = DeletionInsertionCallback(x[:1], num_masks=50, batch_size=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        model.fit(x, np.eye(2)[[0, 0, 0, 0]], epochs=3, verbose=0, callbacks=[callback])
    falls = [w for w in caught if "the curve falls" in str(w.message)]
    assert len(falls) == 1, [str(w.message) for w in caught]


@pytest.mark.filterwarnings("ignore:Early stopping conditioned")
def test_every_n_epochs_and_early_stopping(training, tmp_path):
    model, x, y = training
    callback = DeletionInsertionCallback(x[:2], every_n_epochs=2, num_masks=50)
    stop = keras.callbacks.EarlyStopping(
        monitor="insertion_auc", mode="max", patience=50
    )
    csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[callback, stop, csv])
    assert len(history.history["loss"]) == 4
    # After the first epoch, then after every second: epochs 0, 1 and 3.
    assert len(history.history["insertion_auc"]) == 3
    assert stop.best == max(history.history["insertion_auc"])
    # CSVLogger fixes its columns at the first epoch: the keys are kept, and
    # the epoch in between has none.
    rows = (tmp_path / "log.csv").read_text().splitlines()
    column = rows[0].split(",").index("insertion_auc")
    logged = [row.split(",")[column] for row in rows[1:]]
    assert [value == "NA" for value in logged] == [False, False, True, False]


def test_deletion_insertion_callback_takes_a_substrate(training):
    model, x, y = training
    callback = DeletionInsertionCallback(x[:2], num_masks=50, substrate=0.0, seed=2)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    saliency = keras_rise.RiseExplainer(model, num_masks=50, seed=2).explain(x[:2])
    expected = keras_rise.metrics.insertion(model, x[:2], saliency, substrate=0.0)
    np.testing.assert_allclose(callback.insertion.auc, expected.auc, atol=1e-5)
    blurred = keras_rise.metrics.insertion(model, x[:2], saliency)
    assert not np.allclose(blurred.auc, expected.auc, atol=1e-3)
    with pytest.raises(ValueError, match="substrate="):
        DeletionInsertionCallback(x[:2], substrate="black")


@pytest.mark.parametrize("kind", [DeletionInsertionCallback, SaliencyCallback])
def test_a_wrong_class_fails_before_the_first_epoch(training, tmp_path, kind):
    model, x, y = training
    extra = {"png_dir": tmp_path} if kind is SaliencyCallback else {}
    callback = kind(x[:2], targets=7, num_masks=50, **extra)
    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    with pytest.raises(ValueError, match="class index 7, outside the model's 3 classes"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callback, counter])
    assert epochs == []


def test_saliency_callback_writes_tensorboard_images_and_pngs(training, tmp_path):
    model, x, y = training
    callback = SaliencyCallback(
        x[:3], log_dir=tmp_path / "logs", png_dir=tmp_path / "png", num_masks=100
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    events = _image_events(tmp_path / "logs")
    assert [(step, tag) for step, tag, _, _ in events] == [
        (0, "rise_overlays"),
        (1, "rise_overlays"),
    ]
    _, _, dimensions, pictures = events[-1]
    assert list(dimensions) == [b"32", b"32"]
    assert len(pictures) == 3 and pictures[0].shape == (32, 32, 3)
    # The last event holds exactly the overlays of the final maps.
    for image, saliency, picture in zip(x[:3], callback.saliency, pictures):
        expected = np.asarray(keras_rise.visualize.overlay(image, saliency))
        np.testing.assert_array_equal(picture, expected)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert len(pngs) == 6 and pngs[0] == "epoch_001_image_00.png"
    assert callback.explainer._explain_fn.experimental_get_tracing_count() == 1


def test_saliency_matches_explainer_on_trained_weights(training, tmp_path):
    model, x, y = training
    callback = SaliencyCallback(x[:2], png_dir=tmp_path, num_masks=80, seed=3)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    fresh = keras_rise.RiseExplainer(model, num_masks=80, seed=3).explain(x[:2])
    np.testing.assert_allclose(callback.saliency, fresh, rtol=1e-5, atol=1e-7)


def test_callback_errors(images, cnn):
    with pytest.raises(ValueError, match="log_dir"):
        SaliencyCallback(images)
    with pytest.raises(TypeError, match="num_mask"):
        DeletionInsertionCallback(images, num_mask=10)
    with pytest.raises(ValueError, match="every_n_epochs"):
        DeletionInsertionCallback(images, every_n_epochs=0)
    with pytest.raises(TypeError, match="images"):
        DeletionInsertionCallback(np.array([None, 1.0], dtype=object))
    # Texts are for models of strings.
    with pytest.raises(TypeError, match="given texts as `images`"):
        DeletionInsertionCallback(np.array(["not", "numbers"])).set_model(cnn)
    # (32, 32) could be a batch of vectors: the model's input decides.
    callback = DeletionInsertionCallback(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="images"):
        callback.set_model(cnn)
    # Field test: an explainer passed first read as "images must hold real
    # numbers. Received dtype object".
    for given in (cnn, keras_rise.RiseExplainer(cnn, num_masks=8)):
        with pytest.raises(TypeError, match="explains the model being trained"):
            DeletionInsertionCallback(given, num_masks=8)


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
def test_callbacks_explain_and_judge_any_score(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    value = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, {"value": value})
    model.compile("adam", {"value": "mse"})
    x = np.random.default_rng(0).random((16, 16, 16, 1), dtype=np.float32)
    y = x[:, 4:8, 4:8, 0].mean(axis=(1, 2))
    score = keras_rise.scores.OutputScore(output="value")
    judge = DeletionInsertionCallback(x[:2], targets=score, num_masks=60, grid_size=4)
    watch = SaliencyCallback(x[:2], targets=score, png_dir=tmp_path, num_masks=60, grid_size=4)
    history = model.fit(x, {"value": y}, epochs=1, verbose=0, callbacks=[judge, watch])
    assert np.isfinite(history.history["deletion_auc"][0])
    # The curves follow the score: their first point is the model's value.
    np.testing.assert_allclose(
        judge.deletion.curves[:, 0], model(x[:2])["value"].numpy()[:, 0], rtol=1e-5
    )
    assert watch.saliency.shape == (2, 16, 16)


@pytest.mark.filterwarnings("ignore:insertion. .*curve.s start")  # a synthetic model
@pytest.mark.parametrize("kind", ["signal", "tokens"])
def test_callbacks_on_signals_and_token_sequences(kind, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if kind == "signal":
        inputs = keras.Input((40, 2))
        hidden = keras.layers.Conv1D(4, 5, activation="relu")(inputs)
        pooled = keras.layers.GlobalAveragePooling1D()(hidden)
        x = rng.random((32, 40, 2), dtype=np.float32)
    else:
        inputs = keras.Input((12,), dtype="int32")
        embedded = keras.layers.Embedding(50, 4)(inputs)
        pooled = keras.layers.GlobalAveragePooling1D()(embedded)
        x = rng.integers(1, 50, (32, 12)).astype(np.int32)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    model.compile("adam", "sparse_categorical_crossentropy")
    y = rng.integers(0, 2, 32)
    pictures = SaliencyCallback(x[:2], png_dir=tmp_path, num_masks=60)
    scores = DeletionInsertionCallback(x[:2], num_masks=60, step=4)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[scores, pictures])
    assert len(history.history["insertion_auc"]) == 2
    assert pictures.saliency.shape == (2, x.shape[1])
    written = sorted(tmp_path.glob("epoch_002_image_*.png"))
    assert len(written) == 2
    size = Image.open(written[0]).size
    assert size == ((640, 200) if kind == "signal" else (16 * 48, 24))
    fresh = keras_rise.RiseExplainer(model, num_masks=60).explain(x[:2], verbose=0)
    np.testing.assert_allclose(pictures.saliency, fresh, rtol=1e-5, atol=1e-6)


def test_callbacks_on_a_model_of_several_inputs(tmp_path):
    # An image beside a vector: the image is masked and altered, the vector
    # held fixed; the maps and AUCs are those of the trained model.
    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 1), name="image")
    vector = keras.Input((3,), name="vector")
    hidden = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    joined = keras.layers.Concatenate()([hidden, vector])
    model = keras.Model({"image": image, "vector": vector},
                        keras.layers.Dense(2, activation="softmax")(joined))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = {"image": rng.random((16, 12, 12, 1), np.float32),
         "vector": rng.random((16, 3)).astype(np.float32)}
    y = rng.integers(0, 2, 16)
    shown = {key: value[:2] for key, value in x.items()}
    options = {"num_masks": 40, "grid_size": 4, "image_input": "image"}
    pictures = SaliencyCallback(shown, png_dir=tmp_path, **options)
    curves = DeletionInsertionCallback(shown, **options)
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[curves, pictures])
    explainer = keras_rise.RiseExplainer(model, **options)
    expected = explainer.explain(shown, verbose=0)
    np.testing.assert_allclose(pictures.saliency, expected, rtol=1e-5, atol=1e-6)
    assert len(sorted(tmp_path.glob("epoch_002_image_*.png"))) == 2
    insertion = keras_rise.metrics.insertion(model, shown, expected, image_input="image")
    np.testing.assert_allclose(history.history["insertion_auc"][-1], insertion.auc.mean(),
                               rtol=1e-5)
    with pytest.raises(TypeError, match=r"`image_input='image'`, `images` must be"):
        SaliencyCallback(x["image"], png_dir=tmp_path, **options)
    # Field test: several inputs without `image_input` read as one array of objects.
    without = {k: v for k, v in options.items() if k != "image_input"}
    for given, kind in ((shown, r"a dict of inputs \['image', 'vector'\]"),
                        (list(shown.values()), "a list of 2 parts of different shapes")):
        for callback in (DeletionInsertionCallback, SaliencyCallback):
            with pytest.raises(ValueError, match=rf"{callback.__name__} was given {kind}: "
                               "for a model of several inputs pass `image_input=`"):
                callback(given, png_dir=tmp_path, **without) if callback is SaliencyCallback \
                    else callback(given, **without)
    # One example as a list of numbers is one array, as before.
    DeletionInsertionCallback([0.1, 0.2, 0.3], num_masks=8)
    with pytest.raises(TypeError, match=r"take texts alone.*images\['image'\]"):
        SaliencyCallback(dict(shown, image=["a text", "another"]), png_dir=tmp_path, **options)
