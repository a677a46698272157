"""Models of raw text: RISE over the words of strings (`keras_rise.text`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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


def test_a_fill_word_takes_the_place_of_each_masked_word():
    # A model that reads the fourth word: with a fill word the others keep
    # their places, so its score is that word's mask bit and RISE's map is
    # E[bit_4 | word kept] = keep_prob for the others, 1 for it. Dropped,
    # every word must be kept for "good" to be fourth: the map is
    # keep_prob³ for each.
    def fourth_is_good(texts):
        return np.array([[float(text.split()[3:4] == ["good"])] for text in texts], np.float32)

    text = "the film was good"
    filled = keras_rise.RiseExplainer(fourth_is_good, num_masks=256, fill_value="[UNK]")
    np.testing.assert_allclose(
        filled.explain(text, scores.OutputScore(0)), [0.5, 0.5, 0.5, 1.0], atol=1e-4
    )
    dropped = keras_rise.RiseExplainer(fourth_is_good, num_masks=1024)
    np.testing.assert_allclose(dropped.explain(text, scores.OutputScore(0)), 0.125, atol=0.05)
    # A Keras model of strings sees the word: "plot" (weight -0.2) in place
    # of each masked word adds (1 - keep_prob) · -0.2 per other word.
    model = _counting_model()
    texts = ["the good film", "a bad plot"]
    explainer = keras_rise.RiseExplainer(model, num_masks=256, fill_value="plot")
    saliency = explainer.explain(texts, scores.OutputScore(0))
    for row, text in zip(saliency, texts):
        np.testing.assert_allclose(row, _expected(text) + 2 * 0.5 * -0.2, atol=1e-4)
    # The metrics replace removed words by the word, and insert into a text
    # of nothing but it: each word out of place adds its -0.2.
    score = scores.OutputScore(0)
    for metric, name, out_of_place in (
        (keras_rise.metrics.deletion, "fill_value", [0, 1, 2, 3]),
        (keras_rise.metrics.insertion, "substrate", [3, 2, 1, 0]),
    ):
        plain = metric(model, texts, saliency, targets=score).curves
        filled_curves = metric(model, texts, saliency, targets=score, **{name: "plot"}).curves
        np.testing.assert_allclose(
            filled_curves, plain - 0.2 * np.array(out_of_place), atol=1e-5
        )
    # One word only, and not an image model's fill.
    with pytest.raises(ValueError, match="one word without spaces.*'a b'"):
        keras_rise.RiseExplainer(model, fill_value="a b")
    with pytest.raises(ValueError, match=r"dropped, or replaced by a word.*'blur'"):
        keras_rise.RiseExplainer(model, fill_value="blur").explain("a film")
    images = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="fill_value='\\[UNK\\]'` is a fill word"):
        keras_rise.RiseExplainer(images, fill_value="[UNK]").explain(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="is a fill word"):
        keras_rise.RiseLayer(images, fill_value="[UNK]")(np.zeros((1, 8, 8, 3), np.float32))


def test_texts_get_clear_refusals():
    model = _counting_model()
    with pytest.raises(ValueError, match=r"dropped, or replaced by a word.*fill_value=1.0"):
        keras_rise.RiseExplainer(model, fill_value=1.0).explain("a film")
    with pytest.raises(ValueError, match="jit_compile=True.*strings"):
        keras_rise.RiseExplainer(model, jit_compile=True).explain("a film")
    explainer = keras_rise.RiseExplainer(model, num_masks=64)
    with pytest.raises(ValueError, match=r"`texts\[1\]` has no words"):
        explainer.explain(["a film", "  "])
    with pytest.raises(ValueError, match=r"\(batch,\) or \(batch, 1\).*\(2, 2\)"):
        explainer.explain([["a", "b"], ["c", "d"]])
    # Numbers for a model of strings are refused as such (field test: they
    # were taken for a signal too short for the grid).
    # So are None and a list holding a number (field test: "must be an array
    # of real numbers").
    for numbers in (np.array([1.0, 2.0]), [[3, 4, 5]], 7, None, ["good", 3]):
        with pytest.raises(TypeError, match=r"`images` must be texts: the model takes strings"):
            explainer.explain(numbers)
    # A model of images given a string is refused as before, not read as text.
    images = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="must be an array of real numbers. Received 'photo.png'"):
        keras_rise.RiseExplainer(images, num_masks=64).explain("photo.png")


def _review_and_price_model(as_dict=True):
    """The counting model's score plus 0.5 · price: texts beside a number."""
    review = keras.Input((1,), dtype="string", name="review")
    price = keras.Input((1,), name="price")
    counts = keras.layers.TextVectorization(vocabulary=VOCABULARY, output_mode="count")(review)
    dense = keras.layers.Dense(1)
    outputs = dense(keras.layers.Concatenate()([keras.layers.Flatten()(counts), price]))
    weights = [[0.0]] + [[WEIGHTS[w]] for w in VOCABULARY] + [[0.5]]
    dense.set_weights([np.array(weights, np.float32), np.array([BIAS], np.float32)])
    inputs = {"review": review, "price": price} if as_dict else [review, price]
    return keras.Model(inputs, outputs)


def test_texts_masked_beside_an_input_held_fixed(tmp_path):
    # A review and a price: the review's words are masked, the price held
    # fixed, so each map is the linear one plus 0.5 · price.
    texts = np.array([["the good film"], ["a bad plot and the film"]], dtype=object)
    prices = np.array([[2.0], [-1.0]], np.float32)
    expected = np.full((2, 6), np.nan)
    expected[0, :3] = _expected("the good film") + 0.5 * 2.0
    expected[1] = _expected("a bad plot and the film") - 0.5
    score = scores.OutputScore(0)
    by_name = keras_rise.RiseExplainer(
        _review_and_price_model(), num_masks=256, image_input="review"
    ).explain({"review": texts, "price": prices}, score)
    np.testing.assert_allclose(by_name, expected, atol=1e-5)
    listed = _review_and_price_model(as_dict=False)
    for image_input in (0, "review"):
        explainer = keras_rise.RiseExplainer(listed, num_masks=256, image_input=image_input)
        np.testing.assert_allclose(explainer.explain([texts, prices], score), expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"input 1 must hold one example per text: 2 texts"):
        explainer.explain([texts, prices[:1]], score)
    # A dataset of such dicts: each map has one value per word of its text.
    dataset = tf.data.Dataset.from_tensor_slices({"review": texts, "price": prices})
    explainer = keras_rise.RiseExplainer(
        _review_and_price_model(), num_masks=256, image_input="review"
    )
    keras_rise.explain_dataset(explainer, dataset, tmp_path, targets=score)
    np.testing.assert_allclose(np.load(tmp_path / "000000.npy"), expected[0, :3], atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "000001.npy"), expected[1], atol=1e-5)


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
    # A list of texts, as Model.predict takes them, is a dataset of texts,
    # alone or paired with labels (lists both).
    keras_rise.explain_dataset(explainer, texts, tmp_path / "list", targets=scores.OutputScore(0))
    for index, text in enumerate(texts):
        np.testing.assert_allclose(
            np.load(tmp_path / "list" / f"{index:06d}.npy"), _expected(text), atol=1e-4
        )
    as_bytes = [text.encode() for text in texts]
    keras_rise.explain_dataset(
        keras_rise.RiseExplainer(classifier, num_masks=128), (as_bytes, [1, 0, 1, 0]),
        tmp_path / "list-pairs",
    )
    with open(tmp_path / "list-pairs" / "index.csv") as index:
        assert [line.split(",")[1] for line in index.read().split()[1:]] == ["1", "0", "1", "0"]
    assert np.load(tmp_path / "list-pairs" / "000001.npy").shape == (7,)  # words of texts[1]

    class Batches(keras.utils.PyDataset):  # lists of texts and of labels per batch
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return texts[2 * index: 2 * index + 2], [1, 0]

    keras_rise.explain_dataset(
        keras_rise.RiseExplainer(classifier, num_masks=128), Batches(), tmp_path / "batches"
    )
    for kind in ("list-pairs", "batches"):
        with open(tmp_path / kind / "index.csv") as index:
            rows = [line.split(",")[:2] for line in index.read().split()[1:]]
        assert rows == [["0", "1"], ["1", "0"], ["2", "1"], ["3", "0"]], kind


def test_deletion_and_insertion_drop_and_add_words():
    model = _counting_model()
    texts = ["the good film", "a bad plot"]
    maps = keras_rise.RiseExplainer(model, num_masks=128).explain(texts, scores.OutputScore(0))
    score = scores.OutputScore(0)
    deletion = keras_rise.metrics.deletion(model, texts, maps, targets=score)
    insertion = keras_rise.metrics.insertion(model, texts, maps, targets=score)
    # Words leave (or come) in the maps' order: "good", "film", "the" for the
    # first text (weights 2, 0.3, 0.1); "a", "plot", "bad" for the second.
    np.testing.assert_allclose(
        deletion.curves, [[2.65, 0.65, 0.35, 0.25], [-1.45, -1.45, -1.25, 0.25]], atol=1e-5
    )
    np.testing.assert_allclose(
        insertion.curves, [[0.25, 2.25, 2.55, 2.65], [0.25, 0.25, 0.05, -1.45]], atol=1e-5
    )
    np.testing.assert_allclose(deletion.fractions, [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    one = keras_rise.metrics.deletion(model, texts[0], maps[0], targets=score)
    np.testing.assert_allclose(one.curves, deletion.curves[0], atol=1e-6)
    # Texts of several word counts: each row is that text's own curve, NaN
    # past its end, with its own fractions.
    mixed = ["a film", "the good film", "bad"]
    mixed_maps = keras_rise.RiseExplainer(model, num_masks=128).explain(mixed, score)
    for metric in (keras_rise.metrics.deletion, keras_rise.metrics.insertion):
        together = metric(model, mixed, mixed_maps, targets=score)
        assert together.curves.shape == together.fractions.shape == (3, 4)
        for row, text in enumerate(mixed):
            count = len(text.split())
            alone = metric(model, text, mixed_maps[row, :count], targets=score)
            np.testing.assert_allclose(together.curves[row, : count + 1], alone.curves, atol=1e-6)
            np.testing.assert_allclose(together.fractions[row, : count + 1], alone.fractions)
            assert np.isnan(together.curves[row, count + 1:]).all()
            np.testing.assert_allclose(together.auc[row], alone.auc, atol=1e-6)
    # A flat map of a text of several words is told by its index in the batch.
    flat = mixed_maps.copy()
    flat[1] = 0.5
    with pytest.warns(UserWarning, match=r"the map at index 1 \(of 3\) is constant, so "
                      "words are taken in order") as caught:
        keras_rise.metrics.deletion(model, mixed, flat, targets=score)
    assert [w.filename for w in caught] == [__file__]
    with pytest.raises(ValueError, match=r"one value per word: \(3, 3\).*shape \(3, 2\)"):
        keras_rise.metrics.deletion(model, mixed, mixed_maps[:, :2], targets=score)
    with pytest.raises(ValueError, match="replaced by a word given as `substrate`.*=0.0"):
        keras_rise.metrics.insertion(model, texts, maps, targets=score, substrate=0.0)


def _text_classifier():
    """Two classes of strings, positive and negative, from the counting model."""
    counting = _counting_model()
    strings = keras.Input((1,), dtype="string")
    total = counting(strings)
    head = keras.layers.Dense(2, activation="softmax")
    outputs = head(keras.layers.Concatenate()([-total, total]))
    head.set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    return keras.Model(strings, outputs)


def test_the_command_line_explains_text_files(tmp_path, capsys):
    import json

    from keras_rise import cli

    model = _text_classifier()
    path = tmp_path / "reviews.keras"
    model.save(path)
    folder = tmp_path / "texts"
    folder.mkdir()
    texts = {"one.txt": "the good film", "two.txt": "a bad\nplot and  a dull film"}
    for name, text in texts.items():
        (folder / name).write_text(text)
    capsys.readouterr()
    out = tmp_path / "out"
    status = cli.main(["explain", str(path), str(folder), "--out", str(out), "--num-masks", "96",
                       "--seed", "4", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    rows = json.loads(captured.out)["inputs"]
    explainer = keras_rise.RiseExplainer(model, num_masks=96, seed=4)
    for row, (name, text) in zip(rows, texts.items()):
        words = text.split()
        expected = explainer.explain(text)
        assert row["input"] == name and row["words"] == words
        np.testing.assert_allclose(np.load(out / f"{name[:-4]}.npy"), expected, atol=1e-5)
        page = (out / f"{name[:-4]}.html").read_text()
        assert all(f">{word}</span>" in page for word in words)
    assert [row["class_id"] for row in rows] == [1, 0]  # good, then bad
    # --top-k: each text's K top classes, a map and page each (field test:
    # refused for texts, though --help says "of each input").
    status = cli.main(["explain", str(path), str(folder / "one.txt"), "--out",
                       str(tmp_path / "top"), "--num-masks", "96", "--seed", "4",
                       "--top-k", "2"])
    assert status == 0
    for class_id in (0, 1):
        np.testing.assert_allclose(
            np.load(tmp_path / "top" / f"one_class{class_id}.npy"),
            explainer.explain(texts["one.txt"], targets=class_id), atol=1e-5)
        assert (tmp_path / "top" / f"one_class{class_id}.html").is_file()
    # A folder of class folders, as text_dataset_from_directory reads them
    # (field test: "the folder holds no .txt files"), its outputs mirrored.
    classes = tmp_path / "classes"
    for label, name in (("pos", "one.txt"), ("neg", "two.txt")):
        (classes / label).mkdir(parents=True)
        (classes / label / "000.txt").write_text(texts[name])
    mirrored = classes / "maps"  # inside the folder read, and run twice
    for _ in range(2):
        assert cli.main(["explain", str(path), str(classes), "--out", str(mirrored),
                         "--num-masks", "96", "--seed", "4"]) == 0
    for label, name in (("pos", "one.txt"), ("neg", "two.txt")):
        np.testing.assert_allclose(np.load(mirrored / label / "000.npy"),
                                   explainer.explain(texts[name]), atol=1e-5)
    assert sorted(p.name for p in mirrored.iterdir()) == ["neg", "pos"]
    # A file that cannot be read is passed over with a warning, as an image
    # is; the others are written and the status says so (field test: one
    # blank file stopped the run, nothing written).
    (classes / "neg" / "blank.txt").write_text("  \n")
    (classes / "pos" / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    capsys.readouterr()
    status = cli.main(["explain", str(path), str(classes), "--out", str(tmp_path / "some"),
                       "--num-masks", "16"])
    err = capsys.readouterr().err
    assert status == 2
    assert "skipped " in err and "neg/blank.txt: the file holds no words" in err
    assert "2 of 4 files could not be read" in err and "wrote 2 pages and maps" in err
    assert sorted(p.name for p in (tmp_path / "some").rglob("*.npy")) == ["000.npy"] * 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "below").mkdir()
    for argv, message in (
        (["explain", path, folder, "--out", out, "--fill-value", "0.5"],
         "replaced by a word given as `--fill-value`"),
        (["explain", path, tmp_path / "empty", "--out", out],
         "holds no .txt files, nor do its subfolders"),
        (["evaluate", path, folder], "takes texts, not images"),
    ):
        status = cli.main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert status == 2 and message in err and err.count("\n") == 1, err


def test_the_layer_and_the_export_refuse_a_model_of_strings(tmp_path):
    model = _text_classifier()
    with pytest.raises(ValueError, match="RiseLayer takes models of numeric inputs.*strings"):
        keras_rise.RiseLayer(model, num_masks=64)
    with pytest.raises(ValueError, match="export_explainer takes models of numeric"):
        keras_rise.export_explainer(model, tmp_path / "export", num_masks=64)
    image_model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(2)])
    callback = keras_rise.callbacks.DeletionInsertionCallback(["the good film"], num_masks=64)
    with pytest.raises(TypeError, match="was given texts as `images`.*does not take strings"):
        callback.set_model(image_model)


def test_the_callbacks_explain_texts_while_a_model_of_strings_trains(tmp_path, caplog):
    # Texts of three word counts: the maps are NaN past a text's end, the
    # pictures coloured words, the curves over each text's own words.
    model = _text_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    texts = ["the good film", "a bad plot and a dull film", "good"]
    options = {"num_masks": 64, "seed": 3, "fill_value": "[UNK]"}
    pictures = keras_rise.callbacks.SaliencyCallback(
        texts, png_dir=tmp_path / "png", log_dir=tmp_path / "logs", **options
    )
    curves = keras_rise.callbacks.DeletionInsertionCallback(texts, **options)
    x = tf.constant([["the good film"], ["a bad plot"], ["good good"], ["bad film"]])
    history = model.fit(x, np.array([1, 0, 1, 0]), epochs=1, verbose=0,
                        callbacks=[pictures, curves])

    explainer = keras_rise.RiseExplainer(model, **options)  # the trained model
    expected = explainer.explain(texts)
    np.testing.assert_allclose(pictures.saliency, expected, atol=1e-5)
    assert np.isnan(pictures.saliency[0, 3:]).all() and np.isnan(pictures.saliency[2, 1:]).all()
    assert len(list((tmp_path / "png").glob("epoch_001_image_*.png"))) == 3
    assert list((tmp_path / "logs" / "rise").iterdir())
    deletion = keras_rise.metrics.deletion(model, texts, expected, fill_value="[UNK]")
    insertion = keras_rise.metrics.insertion(model, texts, expected, substrate="[UNK]")
    np.testing.assert_allclose(curves.deletion.auc, deletion.auc, atol=1e-5)
    np.testing.assert_allclose(history.history["insertion_auc"][-1], insertion.auc.mean(),
                               atol=1e-5)
    assert curves.deletion.curves.shape == (3, 8)
    # Each epoch's curves run over new vocabularies: no retracing advice
    # about the curves' loop.
    assert "_CurveRunner" not in caplog.text
