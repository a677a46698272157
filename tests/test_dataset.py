import csv
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import small_cnn
from PIL import Image

import keras_rise
from keras_rise import scores

IMAGES = np.random.default_rng(3).random((7, 32, 32, 3), dtype=np.float32)


def _rows(output_dir):
    with open(output_dir / "index.csv", newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def test_maps_and_index_equal_the_explainer(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=60, batch_size=30)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES)
    summary = keras_rise.explain_dataset(
        explainer, dataset, tmp_path, images_per_call=3
    )
    assert summary == (7, 0)
    expected = explainer.explain_result(IMAGES)
    rows = _rows(tmp_path)
    assert rows[0] == ["index", "class_id", "score"] and len(rows) == 8
    for index in range(7):
        saliency = np.load(tmp_path / f"{index:06d}.npy")
        np.testing.assert_allclose(saliency, expected.saliency[index], atol=1e-6)
        position, class_id, score = rows[index + 1]
        assert int(position) == index and int(class_id) == expected.class_ids[index]
        assert float(score) == pytest.approx(float(expected.scores[index]), rel=1e-6)


def test_every_class_of_every_image(cnn, tmp_path):
    # Field test: targets="all" was refused ("must be an int").
    explainer = keras_rise.RiseExplainer(cnn, num_masks=60, batch_size=30)
    batched = tf.data.Dataset.from_tensor_slices(IMAGES).batch(4)
    assert keras_rise.explain_dataset(explainer, batched, tmp_path, targets="all") == (7, 0)
    rows = _rows(tmp_path)
    for first, last in ((0, 4), (4, 7)):  # as the batches came
        expected = explainer.explain_result(IMAGES[first:last], targets="all")
        for row, index in enumerate(range(first, last)):
            saliency = np.load(tmp_path / f"{index:06d}.npy")
            assert saliency.shape == (32, 32, cnn.output_shape[-1])
            np.testing.assert_allclose(saliency, expected.saliency[row], atol=1e-6)
            _, class_id, score = rows[index + 1]
            assert int(class_id) == int(np.argmax(expected.scores[row]))
            assert float(score) == pytest.approx(float(np.max(expected.scores[row])), rel=1e-6)
    with pytest.raises(ValueError, match='"all"'):
        keras_rise.explain_dataset(explainer, batched, tmp_path / "b", targets="every")


def test_pairs_give_the_classes(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    classes = np.array([3, 0, 2, 1, 1, 0, 3])
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES, classes))
    keras_rise.explain_dataset(explainer, dataset, tmp_path)
    assert [int(row[1]) for row in _rows(tmp_path)[1:]] == classes.tolist()
    saved = np.load(tmp_path / "000004.npy")
    # Seven images share a forward pass here and one does below: the scores
    # round differently, and the score regression's fit on 40 masks magnifies
    # that to ~1e-6; the map of another class differs by far more.
    np.testing.assert_allclose(
        saved, explainer.explain(IMAGES[4], targets=1), atol=1e-5
    )
    assert np.abs(saved - explainer.explain(IMAGES[4], targets=0)).max() > 1e-4


def test_keras_training_elements_explain_as_their_images(cnn, tmp_path):
    # Field test: Keras' (x, y, sample_weight) triples were refused, and so
    # were ({"name": x}, y) pairs for a model of one input, which fit takes.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    classes = np.array([3, 0, 2, 1, 1, 0, 3])
    name = cnn.inputs[0].name
    weights = np.linspace(0.5, 2.0, 7).astype(np.float32)
    pairs = tf.data.Dataset.from_tensor_slices((IMAGES, classes)).batch(3)
    keras_rise.explain_dataset(explainer, pairs, tmp_path / "pairs")
    for kind, elements in (
        ("triples", (IMAGES, classes, weights)),
        ("named", ({name: IMAGES}, classes)),
    ):
        dataset = tf.data.Dataset.from_tensor_slices(elements).batch(3)
        assert keras_rise.explain_dataset(explainer, dataset, tmp_path / kind) == (7, 0)
        assert _rows(tmp_path / kind) == _rows(tmp_path / "pairs")
        for index in range(7):
            np.testing.assert_array_equal(
                np.load(tmp_path / kind / f"{index:06d}.npy"),
                np.load(tmp_path / "pairs" / f"{index:06d}.npy"),
            )
    four = tf.data.Dataset.from_tensor_slices((IMAGES, classes, weights, weights))
    with pytest.raises(ValueError, match="Received elements of structure"):
        keras_rise.explain_dataset(explainer, four, tmp_path / "four")


def test_a_crash_loses_nothing_and_a_rerun_resumes(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)

    def broken(fail_at):
        def generate():
            for index, image in enumerate(IMAGES):
                if index == fail_at:
                    raise RuntimeError("the disk went away")
                yield image

        return tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec((32, 32, 3), tf.float32)
        )

    with pytest.raises(Exception, match="the disk went away"):
        keras_rise.explain_dataset(explainer, broken(5), tmp_path, images_per_call=2)
    finished = sorted(path.name for path in tmp_path.glob("*.npy"))
    assert finished == [f"{i:06d}.npy" for i in range(4)]  # two full calls
    assert not [path for path in tmp_path.iterdir() if ".tmp" in path.name]
    first_maps = {name: (tmp_path / name).read_bytes() for name in finished}
    # A line cut short by a crash is dropped when the run resumes.
    with open(tmp_path / "index.csv", "a") as file:
        file.write("4,1")

    summary = keras_rise.explain_dataset(
        explainer, broken(None), tmp_path, images_per_call=2
    )
    assert summary == (3, 4)
    rows = _rows(tmp_path)
    assert [int(row[0]) for row in rows[1:]] == list(range(7))
    for name, content in first_maps.items():
        assert (tmp_path / name).read_bytes() == content
    # A run over part of the dataset counts the maps it skipped, not the
    # folder's (field test: take(2) over 7 finished maps said skipped=7).
    part = tf.data.Dataset.from_tensor_slices(IMAGES).take(2)
    assert keras_rise.explain_dataset(explainer, part, tmp_path) == (0, 2)
    expected = explainer.explain(IMAGES)
    for index in range(7):
        np.testing.assert_allclose(
            np.load(tmp_path / f"{index:06d}.npy"), expected[index], atol=1e-5
        )


def test_a_rerun_of_another_request_raises_instead_of_mixing_maps(cnn, tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES[:3])
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path) == (3, 0)
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path) == (0, 3)
    for other, targets, differs in [
        (explainer, 2, "targets"),
        (keras_rise.RiseExplainer(cnn, num_masks=40, fill_value="blur"), None, "fill_value"),
        (keras_rise.RiseExplainer(cnn, num_masks=80), None, "num_masks"),
        (keras_rise.RiseExplainer(cnn, num_masks=40), scores.OutputScore(index=1), "targets"),
    ]:
        with pytest.raises(ValueError, match=f"another request .*{differs}"):
            keras_rise.explain_dataset(other, dataset, tmp_path, targets=targets)
    # Field test: a retrained model, or other data, resumed into the maps.
    trained = small_cnn()
    keras_rise.explain_dataset(keras_rise.RiseExplainer(trained, num_masks=40), dataset,
                               tmp_path / "trained")
    trained.set_weights([w * 1.01 for w in trained.get_weights()])  # more training
    with pytest.raises(ValueError, match=r"another request \(it differs in model\)"):
        keras_rise.explain_dataset(
            keras_rise.RiseExplainer(trained, num_masks=40), dataset, tmp_path / "trained"
        )
    with pytest.raises(ValueError, match="differs in data.*shuffle=False"):
        keras_rise.explain_dataset(explainer, dataset.map(lambda x: 1 - x), tmp_path)
    # The earlier maps and index are left as they were, and still resume.
    assert [int(row[1]) for row in _rows(tmp_path)[1:]] == list(
        explainer.explain_result(IMAGES[:3], verbose=0).targets
    )
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path) == (0, 3)
    # A seed drawn at random (seed=None) is named, so that the run can resume.
    drawn = keras_rise.RiseExplainer(cnn, num_masks=40, seed=None)
    keras_rise.explain_dataset(drawn, dataset.take(2), tmp_path / "drawn")
    with pytest.raises(ValueError, match=rf"differs in seed\) \(its maps were made with "
                       rf"seed={drawn.seed}; pass it to resume\)"):
        keras_rise.explain_dataset(
            keras_rise.RiseExplainer(cnn, num_masks=40, seed=None), dataset, tmp_path / "drawn"
        )
    again = keras_rise.RiseExplainer(cnn, num_masks=40, seed=drawn.seed)
    assert keras_rise.explain_dataset(again, dataset, tmp_path / "drawn") == (1, 2)


def test_an_output_dir_that_is_a_file_is_refused(cnn, tmp_path):
    # Field test: pathlib's bare FileExistsError.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=20)
    (tmp_path / "labels.txt").write_text("cat\n")
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES[:1])
    for target in (tmp_path / "labels.txt", tmp_path / "labels.txt" / "maps"):
        with pytest.raises(ValueError, match=r"`output_dir` .*labels.txt is a file"):
            keras_rise.explain_dataset(explainer, dataset, target)


def test_bad_elements_are_named(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=20)

    def generate():
        yield IMAGES[0]
        yield IMAGES[1]
        yield IMAGES[2][:16]

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec((None, None, 3), tf.float32)
    )
    with pytest.raises(ValueError, match="element 2"):
        keras_rise.explain_dataset(explainer, dataset, tmp_path, images_per_call=1)
    batched_twice = tf.data.Dataset.from_tensor_slices(IMAGES).batch(2).batch(2)
    with pytest.raises(ValueError, match=r"element 0: `images` must be one image"):
        keras_rise.explain_dataset(explainer, batched_twice, tmp_path / "batched")
    wrong_size = tf.data.Dataset.from_tensor_slices(IMAGES[:, :16])
    with pytest.raises(ValueError, match=r"element 0: .*model input"):
        keras_rise.explain_dataset(
            explainer, wrong_size, tmp_path / "b", images_per_call=1
        )
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        keras_rise.explain_dataset(explainer, {IMAGES[0, 0, 0, 0]}, tmp_path)
    with pytest.raises(TypeError, match="RiseExplainer"):
        keras_rise.explain_dataset(cnn, dataset, tmp_path)
    dicts = tf.data.Dataset.from_tensor_slices({"image": IMAGES, "other": IMAGES})
    with pytest.raises(TypeError, match=r"element 0: .*need an explainer with `image_input`"):
        keras_rise.explain_dataset(explainer, dicts, tmp_path)
    nested = tf.data.Dataset.from_tensor_slices(((IMAGES, (IMAGES, IMAGES)), IMAGES))
    with pytest.raises(ValueError, match=r"\(images, labels\) pairs .*Received elements"):
        keras_rise.explain_dataset(explainer, nested, tmp_path)


def test_a_model_of_several_inputs_explains_a_dataset_of_dicts(tmp_path):
    # An image beside a vector held fixed: batched or not, with labels or
    # without, the maps are the explainer's on the whole batch.
    image = keras.Input((8, 8, 1), name="image")
    meta = keras.Input((2,), name="meta")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), meta])
    outputs = keras.layers.Dense(3, activation="softmax")(joined)
    model = keras.Model({"image": image, "meta": meta}, outputs)
    rng = np.random.default_rng(5)
    inputs = {"image": rng.random((4, 8, 8, 1), np.float32), "meta": rng.random((4, 2), np.float32)}
    labels = np.array([2, 0, 1, 1])
    explainer = keras_rise.RiseExplainer(model, num_masks=40, image_input="image")
    top, labelled = explainer.explain(inputs), explainer.explain(inputs, targets=labels)
    datasets = {
        "single": (tf.data.Dataset.from_tensor_slices(inputs), top),
        "batches": (tf.data.Dataset.from_tensor_slices(inputs).batch(2), top),
        "pairs": (tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(2), labelled),
        "arrays": (inputs, top),  # as Model.predict takes them
        "array-pairs": ((inputs, labels), labelled),
    }
    # Every call explains two examples: one compiled loop serves them all.
    for name, (dataset, expected) in datasets.items():
        keras_rise.explain_dataset(explainer, dataset, tmp_path / name, images_per_call=2)
        np.testing.assert_allclose(_maps(tmp_path / name, 4), expected, atol=1e-5, err_msg=name)
    assert [int(row[1]) for row in _rows(tmp_path / "pairs")[1:]] == labels.tolist()
    # A model built on a list of inputs takes ([image, meta], labels), as fit does.
    listed = keras.Model([image, meta], outputs)
    by_index = keras_rise.RiseExplainer(listed, num_masks=40, image_input=0)
    pairs = ([inputs["image"], inputs["meta"]], labels)
    keras_rise.explain_dataset(by_index, pairs, tmp_path / "list", images_per_call=2)
    np.testing.assert_allclose(
        _maps(tmp_path / "list", 4), by_index.explain(list(pairs[0]), targets=labels), atol=1e-5
    )
    with pytest.raises(TypeError, match=r"a list of arrays, read as a model's several "
                       r"inputs.*as a dict by input name, or paired with labels"):
        keras_rise.explain_dataset(by_index, pairs[0], tmp_path / "bare-list")
    # Field test: the model's inputs as a tuple without labels were read as
    # (images, labels), and refused as "a single array".
    unlabelled = tf.data.Dataset.from_tensor_slices((inputs["image"], inputs["meta"]))
    with pytest.raises(ValueError, match=r"element 0: A tuple element is read as \(inputs, "
                       r"labels\), and its inputs here are one array where the model takes 2"):
        keras_rise.explain_dataset(explainer, unlabelled.batch(2), tmp_path / "tuple")


class _Batches(keras.utils.PyDataset):
    """A `keras.utils.PyDataset` of `(images, labels)` batches of `size`."""

    def __init__(self, images, labels, size, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.size = images, labels, size

    def __len__(self):
        return -(-len(self.images) // self.size)

    def __getitem__(self, index):
        rows = slice(index * self.size, (index + 1) * self.size)
        return self.images[rows], self.labels[rows]


def test_what_predict_takes_is_a_dataset_too(cnn, tmp_path):
    # Field test (a Keras user): arrays and a keras.utils.PyDataset, which
    # Model.predict and fit take, were refused ("must be a tf.data.Dataset").
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    classes = np.array([3, 0, 2, 1, 1, 0, 3])
    keras_rise.explain_dataset(
        explainer, tf.data.Dataset.from_tensor_slices((IMAGES, classes)), tmp_path / "data"
    )
    keras_rise.explain_dataset(
        explainer, tf.data.Dataset.from_tensor_slices(IMAGES), tmp_path / "data-top"
    )
    for kind, given, reference in (
        ("array", IMAGES, "data-top"),
        ("tensor", tf.constant(IMAGES), "data-top"),
        ("pairs", (IMAGES, classes), "data"),
        ("label-list", (IMAGES, classes.tolist()), "data"),
        ("py-dataset", _Batches(IMAGES, classes, 3), "data"),
        ("py-dataset-list", _Batches(IMAGES, list(classes), 4), "data"),
        ("one-tuple", (IMAGES,), "data-top"),  # (x,) is x, as Keras reads it
        ("image-list", (list(IMAGES), classes), "data"),  # images loaded one by one
    ):
        assert keras_rise.explain_dataset(explainer, given, tmp_path / kind) == (7, 0), kind
        assert _rows(tmp_path / kind) == _rows(tmp_path / reference), kind
        np.testing.assert_allclose(
            _maps(tmp_path / kind), _maps(tmp_path / reference), atol=1e-5, err_msg=kind
        )
        # A rerun resumes: the same request, every map skipped.
        assert keras_rise.explain_dataset(explainer, given, tmp_path / kind) == (0, 7), kind


def test_datasets_without_an_end_or_of_the_wrong_kind_are_refused(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    # Field test: a training pipeline's .repeat() wrote maps without end.
    forever = tf.data.Dataset.from_tensor_slices(IMAGES).repeat()
    with pytest.raises(ValueError, match=r"`dataset` repeats forever.*dataset.take\(n\)"):
        keras_rise.explain_dataset(explainer, forever, tmp_path / "forever")
    assert not (tmp_path / "forever").exists()
    # Review: after a filter its length is unknown, and it still repeats
    # forever; a take after the repeat ends it.
    with pytest.raises(ValueError, match=r"`dataset` repeats forever"):
        keras_rise.explain_dataset(explainer, forever.filter(lambda x: True), tmp_path / "f")
    ended = tf.data.Dataset.from_tensor_slices(IMAGES).repeat().take(9).filter(lambda x: True)
    assert keras_rise.explain_dataset(explainer, ended, tmp_path / "ended") == (9, 0)

    class Endless(keras.utils.PyDataset):
        num_batches = None

        def __getitem__(self, index):
            return IMAGES[:2]

    for given, error, match in (
        (Endless(), ValueError, r"PyDataset without an end \(num_batches is None\)"),
        ((IMAGES, np.zeros(5)), ValueError, r"as many rows each. Received first axes of "
         r"\(\(7,\), \(5,\)\)"),
        (IMAGES[:0], ValueError, "holds no images"),
        ([IMAGES[0], 1], TypeError, r"a list of \['int', 'ndarray'\]"),
        ("photos/", TypeError, "or arrays .* Received: str"),
        # Field test: one image was read as 32 inputs of (32, 3).
        (IMAGES[0], ValueError, r"shape \(32, 32, 3\) is one input of the model's rank "
         r"\(no batch axis\): pass a batch, e.g. x\[None\]"),
        ((image for image in IMAGES), TypeError, r"Received: generator. A generator is read "
         r"once only: make it a tf.data.Dataset.from_generator"),
    ):
        with pytest.raises(error, match=match):
            keras_rise.explain_dataset(explainer, given, tmp_path / "bad")


def _maps(output_dir, count=7):
    return np.stack([np.load(output_dir / f"{index:06d}.npy") for index in range(count)])


def test_batched_maps_equal_unbatched_maps(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=60, batch_size=30)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES)
    keras_rise.explain_dataset(explainer, dataset, tmp_path / "single", images_per_call=2)
    # Batches of 3, 3 and 1: maps are numbered by image, not by batch.
    summary = keras_rise.explain_dataset(explainer, dataset.batch(3), tmp_path / "batched")
    assert summary == (7, 0)
    # Mask batches hold other groups of images: the scores round differently.
    np.testing.assert_allclose(
        _maps(tmp_path / "batched"), _maps(tmp_path / "single"), atol=1e-5
    )
    single, batched = _rows(tmp_path / "single"), _rows(tmp_path / "batched")
    assert [row[:2] for row in batched] == [row[:2] for row in single]

    # A run of the first 4 images, resumed batched: the second batch is half done.
    resumed = tmp_path / "resumed"
    keras_rise.explain_dataset(explainer, dataset.take(4), resumed)
    first_maps = _maps(resumed, 4)
    summary = keras_rise.explain_dataset(explainer, dataset.batch(3), resumed)
    assert summary == (3, 4)
    np.testing.assert_array_equal(_maps(resumed, 4), first_maps)
    np.testing.assert_allclose(_maps(resumed), _maps(tmp_path / "single"), atol=1e-5)
    assert [int(row[0]) for row in _rows(resumed)[1:]] == list(range(7))


def test_one_process_writes_a_folder_at_a_time(cnn, tmp_path):
    # Field test: two workers given one output_dir both wrote maps 0, 1, ... and
    # reported success, each overwriting the other's.
    explainer = keras_rise.RiseExplainer(cnn, num_masks=20)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES[:2])
    lock = tmp_path / "maps" / ".lock"
    lock.parent.mkdir()
    host = socket.gethostname()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{host} {holder.pid}")
        with pytest.raises(ValueError, match=rf"is being written by another process "
                           rf"\({host} {holder.pid}, host and process id"):
            keras_rise.explain_dataset(explainer, dataset, tmp_path / "maps")
        assert not list(lock.parent.glob("*.npy")) and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    # The lock of a process that died (a run killed midway) is taken over, and
    # released at the end.
    summary = keras_rise.explain_dataset(explainer, dataset, tmp_path / "maps")
    assert summary == (2, 0) and not lock.exists()
    # So is one naming this very process (an earlier one of its id: a restarted
    # container), unless this process writes the folder now.
    lock.write_text(f"{host} {os.getpid()}")
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path / "again") == (2, 0)
    lock = tmp_path / "again" / ".lock"
    lock.write_text(f"{host} {os.getpid()}")
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path / "again") == (0, 2)
    assert not lock.exists()


def test_grayscale_batches_without_a_channel_axis(tmp_path):
    explainer = keras_rise.RiseExplainer(small_cnn((32, 32, 1)), num_masks=40)
    gray = IMAGES[:4, ..., 0]  # (4, 32, 32): no channel axis
    expected = explainer.explain(gray[..., None])
    for name, dataset in [
        ("batched", tf.data.Dataset.from_tensor_slices(gray).batch(3)),
        ("single", tf.data.Dataset.from_tensor_slices(gray)),
    ]:
        summary = keras_rise.explain_dataset(explainer, dataset, tmp_path / name)
        assert summary == (4, 0)
        np.testing.assert_allclose(_maps(tmp_path / name, 4), expected, atol=1e-5)


def test_labels_explain_their_class(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40)
    classes = np.array([3, 0, 2, 1, 1, 0, 3])
    one_hot = np.eye(4, dtype=np.float32)[classes]
    probabilities = 0.6 * one_hot + 0.1  # argmax: the same classes
    expected = explainer.explain(IMAGES, targets=classes)
    datasets = {
        "int_batches": tf.data.Dataset.from_tensor_slices((IMAGES, classes)).batch(3),
        "one_hot_batches": tf.data.Dataset.from_tensor_slices((IMAGES, one_hot)).batch(3),
        "probabilities": tf.data.Dataset.from_tensor_slices((IMAGES, probabilities)),
        # Field test: Keras' sparse losses take (batch, 1) ids; they were refused.
        "int_columns": tf.data.Dataset.from_tensor_slices((IMAGES, classes[:, None])).batch(3),
    }
    for name, dataset in datasets.items():
        keras_rise.explain_dataset(explainer, dataset, tmp_path / name)
        assert [int(row[1]) for row in _rows(tmp_path / name)[1:]] == classes.tolist()
        np.testing.assert_allclose(_maps(tmp_path / name), expected, atol=1e-5, err_msg=name)
    # Labels differ from the top classes, or this would not test them.
    assert (explainer.explain_result(IMAGES).class_ids != classes).any()

    # `targets` wins over the labels.
    keras_rise.explain_dataset(
        explainer, datasets["one_hot_batches"], tmp_path / "targets", targets=1
    )
    assert [int(row[1]) for row in _rows(tmp_path / "targets")[1:]] == [1] * 7
    np.testing.assert_allclose(
        _maps(tmp_path / "targets"), explainer.explain(IMAGES, targets=1), atol=1e-5
    )


@pytest.fixture(scope="module")
def two_class_cnn():
    # One model for the three label modes: their explainers share loops.
    return small_cnn(num_classes=2)


@pytest.mark.filterwarnings("ignore::keras_rise.inputs.PixelRangeWarning")
@pytest.mark.parametrize("label_mode", ["int", "categorical", "binary", None])
def test_image_dataset_from_directory(label_mode, two_class_cnn, tmp_path):
    # label_mode="binary" (float 0.0 / 1.0 labels, (batch, 1)) for a two-class
    # softmax was refused as neither class ids nor one-hot vectors.
    folder = tmp_path / "photos"
    noise = np.random.default_rng(5)
    for class_name in ("cats", "dogs"):
        (folder / class_name).mkdir(parents=True)
        for index in range(3):
            pixels = noise.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / class_name / f"{index}.png")
    dataset = keras.utils.image_dataset_from_directory(
        folder, label_mode=label_mode, image_size=(32, 32), batch_size=4, shuffle=False
    )
    explainer = keras_rise.RiseExplainer(two_class_cnn, num_masks=40)
    # Its [0, 255] pixels, for a model that does not scale them: warned of.
    with pytest.warns(keras_rise.inputs.PixelRangeWarning):
        summary = keras_rise.explain_dataset(explainer, dataset, tmp_path / "maps")
    assert summary == (6, 0)

    if label_mode is None:
        images = np.concatenate(list(dataset.as_numpy_iterator()))
        expected = explainer.explain_result(images)
    else:
        images, labels = (np.concatenate(part) for part in zip(*dataset.as_numpy_iterator()))
        if label_mode == "categorical":
            assert labels.shape == (6, 2)
            labels = labels.argmax(axis=1)
        if label_mode == "binary":
            assert labels.shape == (6, 1) and labels.dtype == np.float32
            labels = labels[:, 0].astype(int)
        assert labels.tolist() == [0, 0, 0, 1, 1, 1]  # cats, then dogs
        expected = explainer.explain_result(images, targets=labels)
    rows = _rows(tmp_path / "maps")
    assert rows[0] == ["index", "class_id", "score", "name"]
    rows = rows[1:]
    assert [int(row[1]) for row in rows] == expected.class_ids.tolist()
    np.testing.assert_allclose(_maps(tmp_path / "maps", 6), expected.saliency, atol=1e-5)
    # Field test: index.csv told no file: the dataset's own files name the maps.
    assert [row[3] for row in rows] == dataset.file_paths
    assert rows[4][3].endswith(os.path.join("dogs", "1.png"))


@pytest.mark.filterwarnings("ignore::keras_rise.inputs.PixelRangeWarning")
def test_names_follow_the_dataset_and_one_out_of_order_is_refused(two_class_cnn, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(5):
        pixels = np.random.default_rng(index).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    files = keras.utils.image_dataset_from_directory(
        folder, labels=None, image_size=(32, 32), batch_size=2, shuffle=False
    )
    dataset = files.map(lambda images: images / 255.0)  # a new dataset, without file_paths
    assert not hasattr(dataset, "file_paths")
    explainer = keras_rise.RiseExplainer(two_class_cnn, num_masks=40)
    out = tmp_path / "maps"
    named = [pathlib.Path(path) for path in files.file_paths]  # paths are taken too
    assert keras_rise.explain_dataset(explainer, dataset.take(2), out, names=named) == (4, 0)
    # A rerun resumes with the index's names kept; a name a crash cut short
    # is written anew; a folder of maps without names gets them (a folder
    # written before names were: field test).
    rows = _rows(out)
    (out / "index.csv").write_text(
        "index,class_id,score\n" + "".join(",".join(row[:3]) + "\n" for row in rows[1:4])
        + ",".join(rows[4][:3]) + ",dogs/0.p", encoding="utf-8"
    )
    assert keras_rise.explain_dataset(explainer, dataset, out, names=named) == (1, 4)
    rows = _rows(out)
    assert rows[0][3] == "name"
    assert [row[3] for row in rows[1:]] == files.file_paths
    assert [int(row[0]) for row in rows[1:]] == [0, 1, 2, 3, 4]
    # Without names, the earlier ones stay, and the maps added have none, as said.
    (out / "000004.npy").unlink()
    with pytest.warns(UserWarning, match="index.csv names the files of the maps written"):
        assert keras_rise.explain_dataset(explainer, dataset, out) == (1, 4)
    assert [row[3] for row in _rows(out)[1:]] == files.file_paths[:4] + [""]
    # Names in any script, with commas and quotes, in UTF-8 whatever the locale.
    odd = ["猫, \"1\".png", "é.png", "a\nb.png", "d.png", "e.png"]
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path / "odd", names=odd) == (5, 0)
    with open(tmp_path / "odd" / "index.csv", newline="", encoding="utf-8") as index:
        assert [row[3] for row in list(csv.reader(index))[1:]] == odd

    with pytest.raises(ValueError, match=r"Dataset element 1: `names` has 3 names, and"):
        keras_rise.explain_dataset(explainer, dataset, tmp_path / "b", names=named[:3])
    with pytest.raises(TypeError, match="`names` must be a sequence of one name per image"):
        keras_rise.explain_dataset(explainer, dataset, tmp_path / "c", names="photos")
    shuffled = keras.utils.image_dataset_from_directory(
        folder, labels=None, image_size=(32, 32), batch_size=2, seed=1
    )
    with pytest.raises(ValueError, match=r"shuffles its elements.*shuffle=False"):
        keras_rise.explain_dataset(
            explainer, shuffled.map(lambda x: x / 255.0), tmp_path / "d",
            names=shuffled.file_paths,
        )
    # Nor in any other order than the files': drawn at random from two
    # datasets, or mapped in parallel without keeping the order.
    plain = files.map(lambda x: x / 255.0)
    options = tf.data.Options()
    options.deterministic = False
    for unordered, message in [
        (tf.data.Dataset.sample_from_datasets([plain.take(1), plain.skip(1)], seed=1),
         "sample_from_datasets"),
        (files.map(lambda x: x / 255.0, num_parallel_calls=2, deterministic=False),
         "deterministic=False"),
        (files.map(lambda x: x / 255.0, num_parallel_calls=2).with_options(options),
         "deterministic=False"),
    ]:
        with pytest.raises(ValueError, match=rf"and `dataset` .*\({message}\), so the maps"):
            keras_rise.explain_dataset(explainer, unordered, tmp_path / "f", names=named)
    # In order, mapped in parallel: the maps are named.
    ordered = files.map(lambda x: x / 255.0, num_parallel_calls=2)
    assert keras_rise.explain_dataset(explainer, ordered, tmp_path / "g", names=named) == (5, 0)
    # Its own files do not name maps in another order: no name column, and
    # the user is told why.
    with pytest.warns(UserWarning, match="shuffles its elements.*index.csv names no files"):
        keras_rise.explain_dataset(explainer, shuffled, tmp_path / "e")
    assert _rows(tmp_path / "e")[0] == ["index", "class_id", "score"]


def test_bad_labels_are_named(cnn, tmp_path):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=20)

    def explain(labels, model=explainer, batched=True):
        dataset = tf.data.Dataset.from_tensor_slices((IMAGES, labels))
        if batched:
            dataset = dataset.batch(3)
        folder = tmp_path / str(len(list(tmp_path.iterdir())))  # a new one per call
        with pytest.raises(ValueError) as info:
            keras_rise.explain_dataset(model, dataset, folder)
        message = str(info.value)
        assert "\n" not in message and "`labels`" in message
        return message

    message = explain(np.zeros((7, 2), np.int64))
    assert message.startswith("Dataset element 0: ")
    assert "Received shape (3, 2)" in message
    assert "(3,)" in message and "(3, 4)" in message  # what is expected
    assert "Received shape (3, 3)" in explain(np.eye(7, 3, dtype=np.float32))
    assert "dtype float32" in explain(np.zeros(7, np.float32))  # ids must be ints
    assert "class index 9" in explain(np.array([0, 1, 2, 3, 0, 9, 1]))
    single = explain(np.zeros((7, 2), np.float32), batched=False)
    assert "one class id (an int) or a one-hot" in single and "(4,)" in single
    scalar_model = keras_rise.RiseExplainer(_mean_model(), num_masks=20)
    assert "`targets=`" in explain(np.zeros(7, np.int64), model=scalar_model)
    # Field test: a one-unit model's float labels, (batch, 1), were read as
    # vectors over one class, all class 0 — a regressor's targets, or a
    # sigmoid classifier's 0/1, explained as "class 0" without a word.
    inputs = keras.Input((32, 32, 3))
    unit = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)[:, :1])
    unit_model = keras_rise.RiseExplainer(unit, num_masks=20)
    for labels in (np.ones((7, 1), np.float32), np.ones(7, np.float32)):
        message = explain(labels, model=unit_model)
        assert "are not classes of a model of one output unit" in message
        assert "BinaryScore()" in message
    assert "BinaryScore()" in explain(np.ones((7, 1), np.int64), model=unit_model)


def test_a_sigmoid_unit_explains_labels_0_and_1_as_its_two_classes(tmp_path):
    # Field test: a Dense(1, "sigmoid") classifier's int labels failed at the
    # first batch holding a 1 ("outside the model's 1 classes"), after the
    # earlier maps were written; the float labels Keras trains it on were
    # refused.
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    model.layers[-1].set_weights([np.array([[4.0], [-3.0], [1.0]], "float32"), np.zeros(1)])
    explainer = keras_rise.RiseExplainer(model, num_masks=40, batch_size=20)
    labels = np.array([0, 1, 1, 0, 1, 0, 0])
    both = [explainer.explain(IMAGES, scores.BinaryScore(k)) for k in (0, 1)]
    expected = np.where(labels[:, None, None] == 1, both[1], both[0])
    p = model.predict(IMAGES, verbose=0)[:, 0]
    for kind, values in (("ints", labels), ("floats", labels[:, None].astype("float32"))):
        folder = tmp_path / kind
        dataset = tf.data.Dataset.from_tensor_slices((IMAGES, values)).batch(3)
        assert keras_rise.explain_dataset(explainer, dataset, folder) == (7, 0)
        rows = _rows(folder)
        for index in range(7):
            np.testing.assert_allclose(
                np.load(folder / f"{index:06d}.npy"), expected[index], atol=1e-6
            )
            _, class_id, score = rows[index + 1]
            assert int(class_id) == labels[index]
            probability = p[index] if labels[index] else 1 - p[index]
            assert float(score) == pytest.approx(probability, rel=1e-5)
    # Class 0's map is not the unit's: the maps of 1 - p and p add up to 1.
    np.testing.assert_allclose(both[0] + both[1], 1.0, atol=1e-5)
    assert not np.allclose(both[0], both[1], atol=1e-2)
    soft = tf.data.Dataset.from_tensor_slices((IMAGES, np.full(7, 0.5, "float32")))
    with pytest.raises(ValueError, match="must be 0 or 1") as info:
        keras_rise.explain_dataset(explainer, soft, tmp_path / "soft")
    assert str(info.value).startswith("Dataset element 0: ")


def _mean_model():
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)[:, 0])


def test_verbose_counts_the_elements(cnn, tmp_path, capsys):
    explainer = keras_rise.RiseExplainer(cnn, num_masks=20, batch_size=20)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES)
    keras_rise.explain_dataset(explainer, dataset, tmp_path / "quiet", verbose=0)
    keras_rise.explain_dataset(explainer, dataset, tmp_path / "auto")  # a short run
    assert capsys.readouterr().out == ""
    keras_rise.explain_dataset(explainer, dataset.batch(3), tmp_path / "line", verbose=2)
    out = capsys.readouterr().out
    # One line for the dataset's 3 batches; the explanations print nothing.
    assert out.count("\n") == 1 and out.startswith("3/3 - ") and "/batch" in out
    keras_rise.explain_dataset(explainer, dataset, tmp_path / "bar", verbose=1)
    out = capsys.readouterr().out
    assert "7/7" in out and "/mask" not in out
    with pytest.raises(ValueError, match="verbose='loud'"):
        keras_rise.explain_dataset(explainer, dataset, tmp_path, verbose="loud")


def test_a_function_score_explains_a_dataset_as_explain_does(cnn, tmp_path):
    # Field test: a lambda, which explain takes, was refused ("must be an int").
    explainer = keras_rise.RiseExplainer(cnn, num_masks=40, batch_size=20)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES[:3])
    second = lambda outputs: outputs[:, 2]  # noqa: E731
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path, targets=second) == (3, 0)
    expected = explainer.explain(IMAGES[:3], targets=2, verbose=0)
    for index in range(3):
        np.testing.assert_allclose(np.load(tmp_path / f"{index:06d}.npy"), expected[index],
                                   atol=1e-6)
    # Resumable like any request: a rerun skips the maps; another function is
    # another request.
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path, targets=second) == (0, 3)
    with pytest.raises(ValueError, match="targets"):
        keras_rise.explain_dataset(explainer, dataset, tmp_path, targets=lambda o: o[:, 1])


@pytest.mark.parametrize("kind", ["tf.function", "numpy"])
def test_a_model_that_is_not_keras_explains_a_dataset(cnn, tmp_path, kind):
    # Field test: explain_dataset recorded the model by `.name` and
    # `.count_params()` and failed on a tf.function or Python code.
    if kind == "tf.function":
        model, other = tf.function(lambda x: cnn(x)), tf.function(lambda x: 1.0 - cnn(x))
    else:
        model, other = (lambda x: cnn(x).numpy()), (lambda x: 1.0 - cnn(x).numpy())
    explainer = keras_rise.RiseExplainer(model, num_masks=40, batch_size=20)
    dataset = tf.data.Dataset.from_tensor_slices(IMAGES[:3]).batch(2)
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path) == (3, 0)
    expected = keras_rise.RiseExplainer(cnn, num_masks=40, batch_size=20).explain(IMAGES[:3])
    for index in range(3):
        np.testing.assert_allclose(np.load(tmp_path / f"{index:06d}.npy"), expected[index],
                                   atol=1e-5)
    assert keras_rise.explain_dataset(explainer, dataset, tmp_path) == (0, 3)
    with pytest.raises(ValueError, match="another request .*model"):
        keras_rise.explain_dataset(
            keras_rise.RiseExplainer(other, num_masks=40, batch_size=20), dataset, tmp_path
        )


def test_series_of_several_lengths_for_a_model_of_any_length(tmp_path):
    # Field test: an LSTM on keras.Input((None, 1)) explained windows of any
    # length, but a dataset of them was refused ("All images must have the
    # model's size").
    series = keras.Input((None, 1))
    model = keras.Model(series, keras.layers.Dense(2, activation="softmax")(
        keras.layers.LSTM(4)(series)))
    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(length, 1)).astype(np.float32) for length in (20, 20, 30, 20)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(windows), output_signature=tf.TensorSpec((None, 1), tf.float32)
    )
    explainer = keras_rise.RiseExplainer(model, num_masks=64)
    summary = keras_rise.explain_dataset(explainer, dataset, tmp_path, verbose=0)
    assert summary.written == 4
    for index, window in enumerate(windows):
        np.testing.assert_allclose(
            np.load(tmp_path / f"{index:06d}.npy"), explainer.explain(window), atol=1e-6
        )
