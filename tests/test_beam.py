"""The Beam pipeline on DirectRunner with 2 worker processes."""

import csv
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import users_environment

pytest.importorskip("apache_beam")

from keras_rise import cli, demo  # noqa: E402

EXAMPLE_IMAGES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "images"
NAMES = ["digit_00.png", "digit_03.png", "digit_05.png"]


@pytest.mark.slow
def test_pipeline_maps_equal_the_command_line(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in NAMES:
        (inputs / name).write_bytes((EXAMPLE_IMAGES / name).read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    out = tmp_path / "out"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_rise.beam",
            "--model",
            str(demo.demo_model_path()),
            "--input",
            str(inputs / "*.png"),
            "--output",
            str(out),
            "--num-masks",
            "120",
            "--seed",
            "7",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    # The unreadable file is a status of 2, as for keras-rise explain (field
    # test: 0, so scripts could not tell).
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "explained 3 images" in completed.stdout and "1 failed" in completed.stdout

    with open(out / "errors.csv", newline="") as file:
        errors = list(csv.reader(file))
    assert errors[0] == ["image", "error"] and [row[0] for row in errors[1:]] == [
        "broken.png"
    ]
    assert "not a readable image" in errors[1][1]
    with open(out / "index.csv", newline="") as file:
        index = {row[0]: row for row in list(csv.reader(file))[1:]}
    assert sorted(index) == NAMES

    reference = tmp_path / "cli"
    assert (
        cli.main(
            ["explain", *map(str, [inputs / n for n in NAMES]), "--out", str(reference)]
            + ["--num-masks", "120", "--seed", "7"]
        )
        == 0
    )
    for name in NAMES:
        stem = pathlib.Path(name).stem
        np.testing.assert_allclose(
            np.load(out / f"{stem}.npy"), np.load(reference / f"{stem}.npy"), atol=1e-5
        )
        assert (out / f"{stem}.png").is_file()


def test_model_handler_explains_a_batch(tmp_path):
    from apache_beam.ml.inference.base import PredictionResult

    from keras_rise import loading
    from keras_rise.beam import RiseModelHandler

    handler = RiseModelHandler(demo.demo_model_path(), num_masks=50, seed=2)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 8
    explainer = handler.load_model()
    images = [loading.load_image(EXAMPLE_IMAGES / n, (None, 64, 64, 3)) for n in NAMES]
    results = handler.run_inference(images, explainer)
    assert all(isinstance(result, PredictionResult) for result in results)
    expected = explainer.explain(np.stack(images))
    for result, saliency in zip(results, expected):
        np.testing.assert_allclose(result.inference.saliency, saliency, atol=1e-6)
    with pytest.raises(TypeError, match="num_mask"):
        RiseModelHandler(demo.demo_model_path(), num_mask=10)


def test_model_handler_takes_batches_and_labels():
    from keras_rise import loading
    from keras_rise.beam import RiseModelHandler

    handler = RiseModelHandler(demo.demo_model_path(), num_masks=50, seed=2)
    explainer = handler.load_model()
    images = np.stack(
        [loading.load_image(EXAMPLE_IMAGES / n, (None, 64, 64, 3)) for n in NAMES]
    )
    top = explainer.explain_result(images)
    labels = (top.class_ids + 1) % 10  # not the top classes
    one_hot = np.eye(10, dtype=np.float32)[labels]
    batch = [images[:2], (images[2], labels[2]), (images[:2], one_hot[:2]), images[2]]
    results = handler.run_inference(batch, explainer)
    assert [result.example is example for result, example in zip(results, batch)] == [True] * 4

    expected = [
        (top.saliency[:2], top.class_ids[:2]),  # a batch: its top classes
        (explainer.explain(images[2], targets=int(labels[2])), labels[2]),
        (explainer.explain(images[:2], targets=labels[:2]), labels[:2]),
        (top.saliency[2], top.class_ids[2]),  # one image, without a batch axis
    ]
    for result, (saliency, class_ids) in zip(results, expected):
        assert result.inference.saliency.shape == saliency.shape
        # Other groups of images share the mask batches: scores round differently.
        np.testing.assert_allclose(result.inference.saliency, saliency, atol=1e-5)
        np.testing.assert_array_equal(result.inference.class_ids, class_ids)

    with pytest.raises(ValueError, match=r"`labels` must be .* Received shape \(3,\)"):
        handler.run_inference([(images[0], np.zeros(3, np.float32))], explainer)


def _signal_model_results(tmp_path, head, labels):
    """A Conv1D model of `(30, 2)` signals ending in `head`, saved and run by
    a `RiseModelHandler` on one signal and on two more with `labels`:
    `(model, results, signals, direct explainer)`."""
    import keras

    import keras_rise
    from keras_rise.beam import RiseModelHandler

    inputs = keras.Input((30, 2))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3)(inputs))
    model = keras.Model(inputs, head(pooled))
    model.save(tmp_path / "signal.keras")
    handler = RiseModelHandler(tmp_path / "signal.keras", num_masks=50, seed=2)
    explainer = handler.load_model()
    signals = np.random.default_rng(0).random((3, 30, 2)).astype(np.float32)
    results = handler.run_inference([signals[0], (signals[1:], np.array(labels))], explainer)
    return model, results, signals, keras_rise.RiseExplainer(model, num_masks=50, seed=2)


def test_model_handler_explains_signals(tmp_path):
    import keras

    _, results, signals, direct = _signal_model_results(
        tmp_path, keras.layers.Dense(3, activation="softmax"), [2, 0]
    )
    np.testing.assert_allclose(results[0].inference.saliency, direct.explain(signals[0]),
                               atol=1e-5)
    np.testing.assert_allclose(results[1].inference.saliency,
                               direct.explain(signals[1:], [2, 0]), atol=1e-5)


def test_model_handler_reads_a_sigmoid_unit_as_two_classes(tmp_path):
    # As the command line does: the unlabelled element's predicted class,
    # and labels 0 and 1 (label 1 was outside the model's "1 class").
    import keras

    from keras_rise.scores import BinaryScore

    model, results, signals, direct = _signal_model_results(
        tmp_path, keras.layers.Dense(1, activation="sigmoid"), [1, 0]
    )
    p = keras.ops.convert_to_numpy(model(signals[:1]))[0, 0]
    assert int(results[0].inference.class_ids) == int(p >= 0.5)
    np.testing.assert_allclose(results[0].inference.saliency,
                               direct.explain(signals[0], BinaryScore()), atol=1e-5)
    np.testing.assert_array_equal(results[1].inference.class_ids, [1, 0])
    expected = [direct.explain(signal, BinaryScore(label))
                for signal, label in zip(signals[1:], [1, 0])]
    np.testing.assert_allclose(results[1].inference.saliency, expected, atol=1e-5)


def test_pipeline_takes_every_rise_option_and_channel_less_images(tmp_path):
    # The Beam command reads the RISE options from the same place as
    # keras-rise (it took three before); with --grid-size 7,7 a model of
    # (28, 28) grayscale images without a channel axis reads photos.
    import keras
    from PIL import Image

    import keras_rise
    from keras_rise import beam as rise_beam

    inputs = keras.Input((28, 28))
    head = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, head(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "digits.keras")
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "digit.png")
    out = tmp_path / "out"
    options = ["--grid-size", "7,7", "--num-masks", "128", "--fill-value", "0.5"]
    argv = ["--model", str(tmp_path / "digits.keras"), "--input", str(folder / "*.png"),
            "--output", str(out)]
    assert rise_beam.main(argv + options) == 0
    explainer = keras_rise.RiseExplainer(model, num_masks=128, grid_size=(7, 7), fill_value=0.5)
    expected = explainer.explain(pixels.astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(np.load(out / "digit.npy"), expected, atol=1e-5)


def test_the_pipeline_writes_a_regressors_value(tmp_path):
    # One linear unit is a regressor's value (its class column -1, as in
    # explain_dataset's index), not class 0; the pipeline failed on it.
    import csv

    import keras
    from PIL import Image

    import keras_rise
    from keras_rise import beam as rise_beam

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "regressor.keras")
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "regressor.keras"), "--input", str(folder / "*.png"),
            "--output", str(out), "--num-masks", "64"]
    assert rise_beam.main(argv) == 0
    image = pixels.astype(np.float32) / 255.0
    expected = keras_rise.RiseExplainer(model, num_masks=64).explain(image, verbose=0)
    np.testing.assert_allclose(np.load(out / "photo.npy"), expected, atol=1e-5)
    (row,) = csv.DictReader((out / "index.csv").open())
    assert row["class_id"] == "-1"
    assert float(row["score"]) == pytest.approx(float(model(image[None])[0, 0]), abs=1e-5)


def test_files_of_one_name_in_two_folders_get_outputs_of_their_own(tmp_path, monkeypatch):
    # Field test: outputs were named after the file's name, so class
    # folders' 0001.png overwrote each other's maps, and index.csv had two
    # rows of one name. They mirror the folders below the pattern's now.
    import keras_rise
    from keras_rise import beam as rise_beam
    from keras_rise import loading

    for folder, name in (("a", NAMES[0]), ("b", NAMES[1])):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "img.png").write_bytes((EXAMPLE_IMAGES / name).read_bytes())
    (tmp_path / "in" / "b" / "broken.png").write_bytes(b"\x89PNG not an image")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # a relative pattern, as typed in a shell
    argv = ["--model", str(demo.demo_model_path()), "--input", "in/*/*.png",
            "--output", str(out), "--num-masks", "50"]
    assert rise_beam.main(argv) == 2  # the broken file
    with open(out / "index.csv", newline="") as file:
        assert [row[0] for row in list(csv.reader(file))[1:]] == ["a/img.png", "b/img.png"]
    with open(out / "errors.csv", newline="") as file:
        assert [row[0] for row in list(csv.reader(file))[1:]] == ["b/broken.png"]
    explainer = keras_rise.RiseExplainer(keras_rise.load_demo_model(), num_masks=50)
    for folder, name in (("a", NAMES[0]), ("b", NAMES[1])):
        image = loading.load_image(EXAMPLE_IMAGES / name, (None, 64, 64, 3))
        np.testing.assert_allclose(
            np.load(out / folder / "img.npy"), explainer.explain(image, verbose=0), atol=1e-5
        )
        assert (out / folder / "img.png").is_file()
    assert rise_beam.input_base("gs://bucket/photos/*/*.jpg") == "gs://bucket/photos/"
    assert rise_beam.relative_name("gs://bucket/photos/cat/1.jpg", "gs://bucket/photos/") == (
        "cat/1.jpg"
    )
    assert rise_beam.input_base("*.png") == "" and rise_beam.relative_name("/x/y.png", "") == (
        "y.png"
    )


def test_every_class_maps_from_the_handler_and_the_pipeline(tmp_path):
    from keras_rise import beam, loading

    handler = beam.RiseModelHandler(
        demo.demo_model_path(), num_masks=50, seed=2, targets="all"
    )
    explainer = handler.load_model()
    images = np.stack(
        [loading.load_image(EXAMPLE_IMAGES / n, (None, 64, 64, 3)) for n in NAMES]
    )
    every = explainer.explain_result(images, "all")
    label = (int(every.class_ids[2]) + 1) % 10
    results = handler.run_inference([images[:2], (images[2], label), images[2]], explainer)
    assert results[0].inference.saliency.shape == (2, 64, 64, 10)
    np.testing.assert_allclose(results[0].inference.saliency, every.saliency[:2], atol=1e-5)
    np.testing.assert_array_equal(results[0].inference.class_ids, every.class_ids[:2])
    np.testing.assert_allclose(results[2].inference.saliency, every.saliency[2], atol=1e-5)
    # A labelled element is still explained for its label's class only.
    assert results[1].inference.saliency.shape == (64, 64)
    np.testing.assert_allclose(
        results[1].inference.saliency, every.saliency[2, ..., label], atol=1e-5
    )
    with pytest.raises(ValueError, match=r'`targets` must be None .* or "all".*targets=3'):
        beam.RiseModelHandler(demo.demo_model_path(), targets=3)

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in NAMES[:2]:
        (inputs / name).write_bytes((EXAMPLE_IMAGES / name).read_bytes())
    outputs = {}
    for flags in ([], ["--all-classes"]):
        out = tmp_path / ("all" if flags else "top")
        argv = ["--model", str(demo.demo_model_path()), "--input", str(inputs / "*.png")]
        assert beam.main(argv + ["--output", str(out), "--num-masks", "60"] + flags) == 0
        with open(out / "index.csv", newline="") as file:
            outputs[bool(flags)] = (out, list(csv.reader(file)))
    (top, top_index), (every_out, every_index) = outputs[False], outputs[True]
    assert every_index == top_index  # the top class and its score, either way
    for row in top_index[1:]:
        stem, class_id = pathlib.Path(row[0]).stem, int(row[1])
        maps = np.load(every_out / f"{stem}.npy")
        assert maps.shape == (64, 64, 10)
        np.testing.assert_allclose(maps[..., class_id], np.load(top / f"{stem}.npy"), atol=1e-5)
        assert (every_out / f"{stem}.png").is_file()


def test_the_handler_and_the_pipeline_explain_one_head_of_several(tmp_path):
    import keras

    from keras_rise import RiseExplainer, beam, loading

    inputs = keras.Input((64, 64, 3))
    features = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(6, 5, activation="relu")(inputs)
    )
    heads = {"box": keras.layers.Dense(4)(features),
             "cls": keras.layers.Dense(3, activation="softmax")(features)}
    path = tmp_path / "heads.keras"
    keras.Model(inputs, heads).save(path)
    handler = beam.RiseModelHandler(path, num_masks=40, seed=1, model_output="cls")
    explainer = handler.load_model()
    images = np.stack(
        [loading.load_image(EXAMPLE_IMAGES / n, (None, 64, 64, 3)) for n in NAMES[:2]]
    )
    head = keras.Model(inputs, heads["cls"])
    expected = RiseExplainer(head, num_masks=40, seed=1).explain_result(images)
    (result,) = handler.run_inference([images], explainer)
    np.testing.assert_allclose(result.inference.saliency, expected.saliency, atol=1e-5)
    np.testing.assert_array_equal(result.inference.class_ids, expected.class_ids)

    inputs_dir = tmp_path / "in"
    inputs_dir.mkdir()
    (inputs_dir / NAMES[0]).write_bytes((EXAMPLE_IMAGES / NAMES[0]).read_bytes())
    out = tmp_path / "out"
    argv = ["--model", str(path), "--input", str(inputs_dir / "*.png"), "--output", str(out),
            "--num-masks", "40", "--seed", "1", "--model-output", "cls"]
    assert beam.main(argv) == 0
    with open(out / "index.csv", newline="") as file:
        (_, row) = list(csv.reader(file))
    assert int(row[1]) == int(expected.class_ids[0])
    np.testing.assert_allclose(float(row[2]), float(expected.scores[0]), rtol=1e-4)


def test_the_pipeline_loads_custom_layers_from_a_module_file(tmp_path):
    import keras

    from keras_rise import RiseExplainer, beam, loading

    module = tmp_path / "rise_beam_layers.py"
    module.write_text(
        "import keras\n\n\n"
        "class Darken(keras.layers.Layer):  # not registered with Keras\n"
        "    def call(self, x):\n"
        "        return x * 0.8\n"
    )
    (darken,) = loading.import_custom_objects(module).values()
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(6, 5, activation="relu")(darken()(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(loading.LoadError, match="custom_objects="):
        beam.RiseModelHandler(path, num_masks=40).load_model()
    inputs_dir = tmp_path / "in"
    inputs_dir.mkdir()
    (inputs_dir / NAMES[0]).write_bytes((EXAMPLE_IMAGES / NAMES[0]).read_bytes())
    out = tmp_path / "out"
    argv = ["--model", str(path), "--input", str(inputs_dir / "*.png"), "--output", str(out),
            "--num-masks", "40", "--seed", "1", "--custom-objects", str(module)]
    assert beam.main(argv) == 0
    image = loading.load_image(EXAMPLE_IMAGES / NAMES[0], (None, 64, 64, 3))
    expected = RiseExplainer(model, num_masks=40, seed=1).explain_result(image)
    with open(out / "index.csv", newline="") as file:
        (_, row) = list(csv.reader(file))
    assert int(row[1]) == int(expected.class_ids)
    np.testing.assert_allclose(float(row[2]), float(expected.scores), rtol=1e-4)


def test_the_command_refuses_a_bad_model_or_options_in_one_line(tmp_path, capsys):
    # Checked before the pipeline starts: one line and exit 2, not a
    # worker's traceback from inside Beam.
    import keras

    from keras_rise import beam as rise_beam

    common = ["--input", str(EXAMPLE_IMAGES / "*.png"), "--output", str(tmp_path / "out")]
    signals = keras.Input((30, 2))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3)(signals))
    keras.Model(signals, keras.layers.Dense(3, activation="softmax")(pooled)).save(
        tmp_path / "signal.keras"
    )
    for argv, message in (
        (  # field test: refused by a worker, after Beam's traceback
            ["--model", str(tmp_path / "signal.keras")],
            "signal.keras: the model must take one (batch, height, width, channels) "
            "input. The pipeline reads image files: explain .npy arrays with keras-rise "
            "explain",
        ),
        (["--model", str(tmp_path / "nope.keras")], "nope.keras: no such file or folder."),
        (["--model", str(EXAMPLE_IMAGES)], "a folder that is not a SavedModel"),
        (
            ["--model", str(demo.demo_model_path()), "--mask-sampling", "orthogonal",
             "--keep-prob", "0.3"],
            "keep_prob",
        ),
        (  # field test: "explained 0 images", exit 0
            ["--model", str(demo.demo_model_path()), "--input", str(tmp_path / "*.png")],
            "*.png: no file matches this pattern.",
        ),
        (  # field test: Beam only logged it, and 4000 masks were used
            ["--model", str(demo.demo_model_path()), "--masks", "100"],
            "--masks is not an option of this command or of Beam's pipeline "
            "(see --help). Did you mean --num-masks?",
        ),
        (
            ["--model", str(demo.demo_model_path()), "--direct_num_worker=2"],
            "Did you mean --direct_num_workers?",
        ),
        (  # field test: 128 lines of Beam's usage, then the error
            ["--model", str(demo.demo_model_path()), "--direct_num_workers=abc"],
            "argument --direct_num_workers: invalid int value: 'abc' (a Beam pipeline "
            "option).",
        ),
        (  # field test: "[Errno 17] File exists", naming no flag
            ["--model", str(demo.demo_model_path()), "--output",
             str(EXAMPLE_IMAGES / "boxes.json" / "maps")],
            "boxes.json is a file; give a folder (made if missing) for the maps.",
        ),
        (  # field test: refused by a worker, after a 37-line Beam traceback
            ["--model", str(demo.demo_detector_path())],
            "returns a dict of outputs ['boxes', 'class_probs', 'objectness']. For a "
            "detector use keras-rise explain --detections",
        ),
    ):
        assert rise_beam.main(common + argv) == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("WARNING:root:")]
        assert len(lines) == 1 and lines[0].startswith("python -m keras_rise.beam: error: ")
        assert message in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
    # A usage error is one line too (was argparse's usage block before it).
    with pytest.raises(SystemExit) as exit_info:
        rise_beam.main(common + ["--model", "m.keras", "--num-masks", "-5"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "argument --num-masks: must be a positive integer, got -5" in err


def test_the_command_runs_here_without_downloading_a_runner(tmp_path, monkeypatch, capsys):
    # Beam's DirectRunner first tries its Prism runner, which downloads a
    # binary from GitHub; without --runner the command runs on the
    # FnApiRunner directly. A --runner given is the user's.
    from apache_beam.runners.portability import fn_api_runner, prism_runner

    from keras_rise import beam as rise_beam

    started = []
    for runner in (prism_runner.PrismRunner, fn_api_runner.FnApiRunner):
        real = runner.run_pipeline
        monkeypatch.setattr(
            runner,
            "run_pipeline",
            lambda self, *a, real=real, **k: started.append(type(self).__name__)
            or real(self, *a, **k),
        )
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / NAMES[0]).write_bytes((EXAMPLE_IMAGES / NAMES[0]).read_bytes())
    argv = ["--model", str(demo.demo_model_path()), "--input", str(inputs / "*.png")]
    argv += ["--num-masks", "40"]
    assert rise_beam.main(argv + ["--output", str(tmp_path / "out")]) == 0
    assert started == ["FnApiRunner"]
    assert "explained 1 image into" in capsys.readouterr().out

    started.clear()
    options = rise_beam._local_unless_told(["--runner=PrismRunner", "--direct_num_workers=2"])
    assert options.get_all_options()["runner"] == "PrismRunner"
    assert options.get_all_options()["direct_num_workers"] == 2


def test_the_command_starts_without_beams_environment_notices(tmp_path):
    # Importing Beam logs "apitools not found ..." on the root logger; the
    # command's stderr is for the user's errors only.
    completed = subprocess.run(
        [sys.executable, "-m", "keras_rise.beam", "--help"],
        env=users_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0 and "--num-masks" in completed.stdout
    assert completed.stderr == ""


def test_beams_notices_are_left_alone_in_a_users_own_program(caplog):
    # Imported as a library (here, by pytest), keras_rise leaves the root
    # logger as it is.
    import logging

    from keras_rise import _startup

    _startup.quiet_beam_notices()
    logging.warning("Resource module is not available for current platform, x")
    assert "Resource module is not available" in caplog.text
