import csv

import numpy as np
import pytest
import tensorflow as tf

import keras_rise

IMAGES = np.random.default_rng(3).random((7, 32, 32, 3), dtype=np.float32)


def _rows(output_dir):
    with open(output_dir / "index.csv", newline="") as file:
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
    expected = explainer.explain(IMAGES)
    for index in range(7):
        np.testing.assert_allclose(
            np.load(tmp_path / f"{index:06d}.npy"), expected[index], atol=1e-5
        )


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
    batched = tf.data.Dataset.from_tensor_slices(IMAGES).batch(2)
    with pytest.raises(ValueError, match="element 0"):
        keras_rise.explain_dataset(explainer, batched, tmp_path / "batched")
    wrong_size = tf.data.Dataset.from_tensor_slices(IMAGES[:, :16])
    with pytest.raises(ValueError, match=r"elements \[0\].*model"):
        keras_rise.explain_dataset(
            explainer, wrong_size, tmp_path / "b", images_per_call=1
        )
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        keras_rise.explain_dataset(explainer, IMAGES, tmp_path)
    pairs = tf.data.Dataset.from_tensor_slices((IMAGES, np.zeros(7, np.int64)))
    with pytest.raises(ValueError, match="targets"):
        keras_rise.explain_dataset(explainer, pairs, tmp_path, targets=1)
