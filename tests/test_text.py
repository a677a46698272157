"""Models of raw text: RISE over the words of strings (`keras_rise.text`)."""

import keras
import numpy as np
import pytest

import keras_rise
from keras_rise import scores

VOCABULARY = ["good", "bad", "the", "film", "plot"]
WEIGHTS = {"good": 2.0, "bad": -1.5, "the": 0.1, "film": 0.3, "plot": -0.2}
BIAS = 0.25


def _counting_model(text_shape=(1,)):
    """A regressor of strings: `BIAS + Σ WEIGHTS[word]` over the text's words
    (a `TextVectorization` of word counts, then a Dense layer of known weights)."""
    inputs = keras.Input(text_shape, dtype="string")
    counts = keras.layers.TextVectorization(vocabulary=VOCABULARY, output_mode="count")(inputs)
    dense = keras.layers.Dense(1)
    outputs = dense(counts)
    # Column 0 counts out-of-vocabulary words, which weigh nothing.
    weights = np.array([[0.0]] + [[WEIGHTS[w]] for w in VOCABULARY], np.float32)
    dense.set_weights([weights, np.array([BIAS], np.float32)])
    return keras.Model(inputs, outputs)


def _expected(text, keep_prob=0.5):
    """RISE's map of a linear score over words, exactly: a word's value is
    `E[score | word kept] = BIAS + w_word + keep_prob · Σ_other w`."""
    weights = np.array([WEIGHTS.get(word, 0.0) for word in text.split()])
    return BIAS + weights + keep_prob * (weights.sum() - weights)


def test_a_model_of_strings_is_explained_word_by_word():
    model = _counting_model()
    explainer = keras_rise.RiseExplainer(model, num_masks=256, seed=1)
    texts = ["the good film", "a bad plot", "the film was good but the plot bad"]
    saliency = explainer.explain(texts, targets=scores.OutputScore(0))
    # A linear score is fitted exactly by the score regression: the map is
    # its expectation to float precision, at any number of masks.
    assert saliency.shape == (3, 8)
    for row, text in zip(saliency, texts):
        length = len(text.split())
        np.testing.assert_allclose(row[:length], _expected(text), atol=1e-4)
        assert np.isnan(row[length:]).all()  # past the text's last word
    # One text, (batch, 1) arrays and bytes all read the same.
    np.testing.assert_allclose(
        explainer.explain(texts[2], targets=scores.OutputScore(0)), saliency[2], atol=1e-6
    )
    as_column = np.array([[t.encode()] for t in texts], dtype=object)
    np.testing.assert_allclose(
        explainer.explain(as_column, targets=scores.OutputScore(0)), saliency, atol=1e-6
    )
    assert keras_rise.text.words(texts[1]) == ["a", "bad", "plot"]


def test_texts_give_results_and_stderr_per_word_and_follow_the_plain_estimator():
    model = _counting_model(text_shape=())
    text = "good plot and a bad film"
    plain = keras_rise.RiseExplainer(
        model, num_masks=4000, seed=3, score_regression=False, mask_sampling="independent"
    )
    result = plain.explain_result([text, "the film"], targets=scores.OutputScore(0))
    assert result.saliency.shape == result.stderr.shape == (2, 6)
    np.testing.assert_allclose(result.scores, [BIAS + 2.0 - 0.2 - 1.5 + 0.3, BIAS + 0.4],
                               rtol=1e-5)
    # The paper's estimator is unbiased: within a few standard errors.
    error = np.abs(result.saliency[0] - _expected(text))
    assert (error < 4 * result.stderr[0] + 1e-3).all(), (error, result.stderr[0])
    assert plain.last_num_masks.tolist() == [4000, 4000]


def test_python_code_of_strings_is_explained_too():
    # A model of Python strings (a scikit-learn text pipeline, say): here one
    # that counts a word, as NumPy.
    def count_good(texts):
        return np.array([[text.split().count("good")] for text in texts], np.float32)

    explainer = keras_rise.RiseExplainer(count_good, num_masks=128)
    saliency = explainer.explain(["a good good film", "not good"], scores.OutputScore(0))
    np.testing.assert_allclose(saliency[0], [1.0, 1.5, 1.5, 1.0], atol=1e-4)
    np.testing.assert_allclose(saliency[1, :2], [0.5, 1.0], atol=1e-4)


def test_texts_get_clear_refusals():
    model = _counting_model()
    with pytest.raises(ValueError, match=r"masked words are dropped.*fill_value=1.0"):
        keras_rise.RiseExplainer(model, fill_value=1.0).explain("a film")
    with pytest.raises(ValueError, match="jit_compile=True.*strings"):
        keras_rise.RiseExplainer(model, jit_compile=True).explain("a film")
    explainer = keras_rise.RiseExplainer(model, num_masks=64)
    with pytest.raises(ValueError, match=r"`texts\[1\]` has no words"):
        explainer.explain(["a film", "  "])
    with pytest.raises(ValueError, match=r"\(batch,\) or \(batch, 1\).*\(2, 2\)"):
        explainer.explain([["a", "b"], ["c", "d"]])
    # A model of images given a string is refused as before, not read as text.
    images = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="must hold real numbers"):
        keras_rise.RiseExplainer(images, num_masks=64).explain("photo.png")


def test_a_string_input_held_fixed_beside_the_masked_image():
    # An image and its caption: the image is masked, the caption held fixed.
    image_in = keras.Input((8, 8, 3), name="image")
    caption_in = keras.Input((1,), dtype="string", name="caption")
    counts = keras.layers.TextVectorization(vocabulary=VOCABULARY, output_mode="count")(
        caption_in
    )
    brightness = keras.layers.GlobalAveragePooling2D()(image_in)
    joined = keras.layers.Concatenate()([brightness, keras.layers.Flatten()(counts)])
    model = keras.Model({"image": image_in, "caption": caption_in}, keras.layers.Dense(1)(joined))
    image = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    explainer = keras_rise.RiseExplainer(model, num_masks=128, image_input="image")
    inputs = {"image": image[None], "caption": np.array([["the good film"]], dtype=object)}
    saliency = explainer.explain(inputs, scores.OutputScore(0))
    assert saliency.shape == (1, 8, 8) and np.isfinite(saliency).all()
    # The caption changes the score by a constant only: the map moves with it.
    other = dict(inputs, caption=np.array([["a bad plot"]], dtype=object))
    shifted = explainer.explain(other, scores.OutputScore(0))
    offset = (saliency - shifted).ravel()
    np.testing.assert_allclose(offset, offset.mean(), atol=1e-4)
    assert abs(offset.mean()) > 1e-3


def test_a_dataset_of_texts_is_explained_text_by_text(tmp_path):
    # As keras.utils.text_dataset_from_directory makes them: batches of
    # (texts, labels); the texts of a batch have different word counts.
    import tensorflow as tf

    model = _counting_model(text_shape=())
    texts = ["the good film", "a bad plot and a dull film", "good", "the plot"]
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(3)
    explainer = keras_rise.RiseExplainer(model, num_masks=128, seed=2)
    summary = keras_rise.explain_dataset(
        explainer, dataset, tmp_path / "maps", targets=scores.OutputScore(0)
    )
    assert summary.written == 4
    for index, text in enumerate(texts):
        saliency = np.load(tmp_path / "maps" / f"{index:06d}.npy")
        np.testing.assert_allclose(saliency, _expected(text), atol=1e-4)  # one per word
    # Labels name the class explained, as for images.
    strings = keras.Input((), dtype="string")
    classifier = keras.Model(strings, keras.layers.Dense(2, activation="softmax")(model(strings)))
    labelled = tf.data.Dataset.from_tensor_slices((texts, [1, 0, 1, 0])).batch(2)
    keras_rise.explain_dataset(
        keras_rise.RiseExplainer(classifier, num_masks=128), labelled, tmp_path / "labelled"
    )
    with open(tmp_path / "labelled" / "index.csv") as index:
        assert [line.split(",")[1] for line in index.read().split()[1:]] == ["1", "0", "1", "0"]
