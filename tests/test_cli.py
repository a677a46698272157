import json
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest
from conftest import retracing_warnings, small_cnn, users_environment
from PIL import Image

import keras_rise
from keras_rise import cli, loading

EXAMPLE_IMAGES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "images"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    small_cnn().save(path)
    return path


@pytest.fixture(scope="module")
def file_model(model_file):
    """The model of `model_file`, loaded once for the Python API's expected
    maps: its explainers of 40 masks (any seed or numeric fill) share the
    compiled loop of the one held here."""
    model, _ = loading.load_model(model_file)
    held = keras_rise.RiseExplainer(model, num_masks=40)
    yield model
    del held


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        pixels = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return folder


def _run(argv, capsys):
    capsys.readouterr()  # only what the command writes, not the test's own calls
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_explain_writes_maps_equal_to_the_python_api_and_takes_paths_after_options(
    model_file, file_model, image_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    status, stdout, _ = _run(
        [
            "explain",
            model_file,
            "--num-masks",
            40,
            image_dir,  # paths may follow options
            "--out",
            out,
            "--seed",
            3,
        ],
        capsys,
    )
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.png", "b.npy", "b.png"]
    model = file_model
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    expected = keras_rise.RiseExplainer(model, num_masks=40, seed=3).explain(image)
    # Maps and overlays come at the file's size (50 wide, 40 high), resized
    # from the model input's; --map-size input keeps the model's.
    source = np.load(out / "a.npy")
    assert source.shape == (40, 50) and Image.open(out / "a.png").size == (50, 40)
    np.testing.assert_allclose(
        source, keras_rise.visualize.resize_map(expected, (40, 50)), atol=1e-6
    )
    assert expected.min() - 1e-6 <= source.min() and source.max() <= expected.max() + 1e-6
    top = int(model(image[None]).numpy().argmax())
    assert "a.png" in stdout and f" {top} " in stdout
    status, _, _ = _run(
        [
            "explain",
            model_file,
            image_dir / "a.png",
            "--out",
            out,
            "--num-masks",
            40,
            "--seed",
            3,
            "--map-size",
            "input",
        ],
        capsys,
    )
    assert status == 0
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-6)
    assert Image.open(out / "a.png").size == (32, 32)
    with pytest.raises(SystemExit) as info:
        cli.main(["explain", str(image_dir), "--out", str(out), "--no-such-flag"])
    assert info.value.code == 2
    capsys.readouterr()
    # Field test: `--model m.keras` was taken as `--model-output m.keras` (a
    # prefix of a flag), and the bundled model was told it has no such output.
    for argv, told in (
        (["--model", model_file], "the model is given first, without a flag: "
         "keras-rise explain model.keras ..."),
        (["--num-mask", "20"], "unrecognized arguments: --num-mask 20 (see"),
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(["explain", str(image_dir), "--out", str(out)] + [str(a) for a in argv])
        assert info.value.code == 2
        error = capsys.readouterr().err
        assert told in error and error.count("\n") == 1, error


def test_top_k_writes_one_map_per_class(model_file, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status, _, _ = _run(
        [
            "explain",
            model_file,
            image_dir / "a.png",
            "--out",
            out,
            "--num-masks",
            20,
            "--top-k",
            2,
        ],
        capsys,
    )
    assert status == 0
    assert len(list(out.glob("a_class*.npy"))) == 2
    # More classes than the model has: refused in one line (it wrote fewer maps).
    status, _, stderr = _run(
        ["explain", model_file, image_dir / "a.png", "--out", tmp_path / "more", "--top-k", 5],
        capsys,
    )
    assert status == 2 and len(stderr.strip().splitlines()) == 1
    assert "--top-k 5 is more than the model's 4 classes" in stderr
    assert not list((tmp_path / "more").glob("*.npy"))


def test_sampling_options_reach_the_explainer(
    model_file, file_model, image_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    options = [
        "--grid-size",
        4,
        "--keep-prob",
        0.4,
        "--mask-sampling",
        "stratified",
        "--centered-scores",
        "--score-regression",
        "--batch-size",
        16,
    ]
    status, printed, _ = _run(
        ["explain", model_file, image_dir / "a.png", "--out", out, "--num-masks", 640]
        + ["--map-size", "input"]
        + options
        + ["--tolerance", 0.5],
        capsys,
    )
    assert status == 0
    model = file_model
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    explainer = keras_rise.RiseExplainer(
        model,
        num_masks=640,
        grid_size=4,
        keep_prob=0.4,
        mask_sampling="stratified",
        centered_scores=True,
        score_regression=True,
        batch_size=16,
    )
    expected = explainer.explain(image, tolerance=0.5, verbose=0)
    # A loose tolerance stops early, and the command stops where the API does,
    # and says after how many masks (field test: it did not).
    assert explainer.last_num_masks < 640
    header, row = printed.splitlines()[:2]
    assert header.split()[-1] == "masks" and row.split()[-1] == str(explainer.last_num_masks)
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-6)
    plain = keras_rise.RiseExplainer(model, num_masks=640).explain(image, verbose=0)
    assert not np.allclose(expected, plain, atol=1e-3)

    status, stdout, _ = _run(
        ["evaluate", model_file, image_dir / "a.png", "--json", "--num-masks", 640]
        + options
        + ["--tolerance", 0.5],
        capsys,
    )
    assert status == 0
    report = json.loads(stdout)
    assert report["per_image"][0]["num_masks"] == explainer.last_num_masks
    assert report["summary"]["tolerance"] == 0.5


def test_warnings_are_one_line_without_source_and_name_the_image_and_the_flags(
    model_file, image_dir, tmp_path, capsys
):
    # Field test: a tolerance not reached was one warning per image that did
    # not say which, in the Python API's words (`tolerance=`, `num_masks`).
    for command in (["explain", "--out", tmp_path / "o"], ["evaluate"]):
        status, _, stderr = _run(
            [command[0], model_file, image_dir, *command[1:], "--num-masks", 300,
             "--tolerance", 0.001],
            capsys,
        )
        assert status == 0
        lines = [line for line in stderr.splitlines() if "tolerance" in line]
        assert [line.split(": ")[2] for line in lines] == ["a.png", "b.jpg"], stderr
        for line in lines:
            assert "`--tolerance 0.001` was not reached" in line
            assert "Raise `--num-masks`" in line
        # The explainer warns; the command shows each warning as one line
        # of its own, without the source line Python's warnings print.
        warned = [line for line in stderr.splitlines() if "warning" in line]
        assert warned and all(line.startswith("keras-rise: warning: ") for line in warned)
        assert "tolerance" in warned[0] and ".py" not in stderr
    # Warnings of equal words (40 masks: no error could be estimated for
    # either image) are shown for each image, not once for the first.
    status, _, stderr = _run(
        ["explain", model_file, image_dir, "--out", tmp_path / "p", "--num-masks", 40,
         "--tolerance", 0.001],
        capsys,
    )
    lines = [line for line in stderr.splitlines() if "tolerance" in line]
    assert status == 0 and [line.split(": ")[2] for line in lines] == ["a.png", "b.jpg"], stderr
    assert lines[0].split(": ", 3)[3] == lines[1].split(": ", 3)[3]


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda d, m: [m, d / "missing.png"], "no such file"),
        (lambda d, m: [m, d / "corrupt.png"], "not a readable image"),
        # Field test: the model given after an image was "not a readable image".
        (lambda d, m: [m, d / "a.png", m], "It is a model file: give the model first"),
        # Field test: PIL's "cannot identify image file" for an array.
        (lambda d, m: [m, d / "pixels.npy"], "the model takes images; give image files"),
        (lambda d, m: [d / "notes.keras", d / "a.png"], "a .keras file is a zip archive"),
        # Field test: a .tflite model was "not a readable image".
        (lambda d, m: [d / "m.tflite", d / "a.png"], "a TensorFlow Lite model, which is not "
         "loaded here; in Python, explain a function that runs tf.lite.Interpreter"),
        (lambda d, m: [m, d / "empty"], "holds no images"),
        (lambda d, m: [m, d / "nested"], "holds no images (.png, .jpg, .jpeg, .bmp, "),
        (lambda d, m: [m, d / "a.png", "--class-id", 9], "--class-id 9 is outside"),
        (lambda d, m: [m], "at least one image"),
        (
            lambda d, m: [m, d / "a.png", "--complementary-masks", "--keep-prob", 0.3],
            "needs `keep_prob=0.5`",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    model_file, image_dir, tmp_path, capsys, make_args, message
):
    (image_dir / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    np.save(image_dir / "pixels.npy", np.zeros((32, 32, 3), np.float32))
    (image_dir / "notes.keras").write_text("not a model")
    (image_dir / "m.tflite").write_bytes(b"TFL3")
    (image_dir / "empty").mkdir()
    (image_dir / "nested" / "inner").mkdir(parents=True, exist_ok=True)
    (image_dir / "nested" / "inner" / "notes.txt").write_text("no image here")
    out = tmp_path / "out"
    status, _, stderr = _run(
        ["explain", *make_args(image_dir, model_file), "--out", out, "--num-masks", 8],
        capsys,
    )
    assert status == 2
    assert stderr.count("\n") == 1 and message in stderr
    assert not out.exists() or not any(out.iterdir())
    if "readable" in message or "model file" in message:  # answered before --out is made
        assert not out.exists()


def test_an_unreadable_file_among_many_is_skipped_and_named(
    model_file, image_dir, tmp_path, capsys
):
    # Field test: one corrupt file among a folder's stopped the whole run.
    (image_dir / "0_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    status, stdout, stderr = _run(
        ["explain", model_file, image_dir, "--out", out, "--num-masks", 8], capsys
    )
    # The others are explained; the status and the last line say what was not.
    assert status == 2
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.png", "b.npy", "b.png"]
    assert "wrote 2 overlays and maps" in stdout
    lines = stderr.splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("keras-rise: warning: skipped ") and "0_corrupt.png" in lines[0]
    assert lines[1].startswith("keras-rise: error: 1 of 3 files could not be read (")
    assert "0_corrupt.png" in lines[1] and "wrote 2 overlays and maps" in lines[1]

    # Nothing readable: no table header alone on stdout, the error says it all.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("x.png", "y.png"):
        (broken / name).write_bytes(b"not an image")
    status, stdout, stderr = _run(
        ["explain", model_file, broken, "--out", tmp_path / "none"], capsys
    )
    assert status == 2 and stdout == "", stdout
    assert "2 of 2 files could not be read" in stderr and "wrote 0 overlays" in stderr

    # evaluate reads a file at a time too: a corrupt one among them stopped it
    # when reached, after the others' maps were made; they are reported.
    status, stdout, stderr = _run(
        ["evaluate", model_file, image_dir, "--num-masks", 8, "--json"], capsys
    )
    assert status == 2
    report = json.loads(stdout)
    assert [row["image"] for row in report["per_image"]] == ["a.png", "b.jpg"]
    assert report["summary"]["images"] == 2
    assert [row["image"] for row in report["skipped"]] == ["0_corrupt.png"]
    lines = [line for line in stderr.splitlines() if "insertion: the curve's start" not in line]
    assert len(lines) == 2 and "skipped" in lines[0], stderr
    assert lines[1].endswith("1 of 3 files could not be read "
                             f"({image_dir / '0_corrupt.png'}); evaluated the other 2.")
    status, stdout, stderr = _run(["evaluate", model_file, broken], capsys)
    assert status == 2 and stdout == "", stdout
    assert stderr.splitlines()[-1].endswith("nothing was evaluated.")


def test_a_warning_starts_a_line_of_its_own_beside_a_progress_bar(
    model_file, image_dir, tmp_path, capsys, monkeypatch
):
    # Field test: at a terminal, the warning of a skipped file was printed
    # on the progress bar's line ("1/3 ━━━ 4s 2s/imagekeras-rise: warning").
    (image_dir / "a0_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    monkeypatch.setattr(cli, "_shows_progress", lambda args: True)
    status, stdout, stderr = _run(
        ["explain", model_file, image_dir, "--out", tmp_path / "out", "--num-masks", 8], capsys
    )
    assert status == 2 and "warning: skipped" in stderr
    # The bar after a.png, then after b.jpg (the file skipped counts as done).
    between = stdout.split("1/3")[1].split("3/3")[0]
    assert "\n" in between and "2/3" not in stdout, repr(stdout)
    # With --json (which draws no bar), the skipped files are listed.
    monkeypatch.undo()
    status, stdout, _ = _run(
        ["explain", model_file, image_dir, "--out", tmp_path / "json", "--num-masks", 8,
         "--json"],
        capsys,
    )
    report = json.loads(stdout)
    assert status == 2 and [row["image"] for row in report["images"]] == ["a.png", "b.jpg"]
    (skipped,) = report["skipped"]
    assert skipped["image"].endswith("a0_corrupt.png") and "not a readable image" in \
        skipped["error"]


def test_photos_are_read_one_at_a_time(model_file, image_dir, tmp_path, capsys, monkeypatch):
    # Field test: a folder of large photos was read whole before the first
    # map, every photo held at its own size until the last was written.
    import gc
    import weakref

    # And evaluate stacked every image at the model's size before the first.
    (image_dir / "c.png").write_bytes((image_dir / "a.png").read_bytes())
    read, most = {"photo": [], "input": []}, {"photo": [], "input": []}

    def counting(kind, function):
        def call(*args):
            gc.collect()
            most[kind].append(sum(item() is not None for item in read[kind]))
            item = function(*args)
            read[kind].append(weakref.ref(item))
            return item

        return call

    monkeypatch.setattr(loading, "load_photo", counting("photo", loading.load_photo))
    monkeypatch.setattr(loading, "model_input", counting("input", loading.model_input))
    for command in (["explain", "--out", tmp_path / "out"], ["evaluate"]):
        for kind in read:
            read[kind].clear()
            most[kind].clear()
        status, _, stderr = _run(
            [command[0], model_file, image_dir, *command[1:], "--num-masks", 8], capsys
        )
        assert status == 0, stderr
        for kind in read:
            assert len(read[kind]) == 3 and max(most[kind]) <= 1, (command, kind, most)


def test_a_file_of_many_inputs_is_scored_a_batch_at_a_time(tmp_path, capsys, monkeypatch):
    # A .npy file may hold many inputs: the model was called on all at once
    # to find each one's class.
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(tmp_path / "table.keras")
    rows = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    np.save(tmp_path / "rows.npy", rows)
    sizes, predict = [], cli._predict
    monkeypatch.setattr(cli, "_predict", lambda explainer, x: sizes.append(len(x)) or
                        predict(explainer, x))
    monkeypatch.setattr(cli, "SCORED_AT_ONCE", 2)
    status, out, stderr = _run(
        ["explain", tmp_path / "table.keras", tmp_path / "rows.npy", "--num-masks", 16,
         "--json", "--out", tmp_path / "maps"], capsys
    )
    assert status == 0, stderr
    assert sizes == [2, 2, 1]
    expected = model.predict(rows, verbose=0)
    reported = json.loads(out)["inputs"]
    assert [row["class_id"] for row in reported] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose([row["score"] for row in reported], expected.max(axis=1),
                               rtol=1e-5)


def test_outputs_never_overwrite_an_input_or_each_other(model_file, image_dir, tmp_path, capsys):
    original = (image_dir / "a.png").read_bytes()
    # The input's folder as --out: a.png would become its own heatmap.
    status, _, stderr = _run(
        ["explain", model_file, image_dir, "--out", image_dir, "--num-masks", 8], capsys
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "would overwrite the input" in stderr and "a.png" in stderr
    assert (image_dir / "a.png").read_bytes() == original
    assert not (image_dir / "a.npy").exists()
    # Two inputs of one stem in one folder would write the same x.png and x.npy.
    Image.open(image_dir / "a.png").save(tmp_path / "a.png")
    Image.open(image_dir / "a.png").save(tmp_path / "a.jpg")
    out = tmp_path / "out"
    status, _, stderr = _run(
        ["explain", model_file, tmp_path / "a.png", tmp_path / "a.jpg", "--out", out,
         "--num-masks", 8], capsys
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "would write the same outputs (a.png, a.npy)" in stderr
    assert not out.exists()


def test_class_folders_are_searched_and_mirrored_in_the_outputs(
    model_file, image_dir, tmp_path, capsys
):
    # Field test: the layout of image_dataset_from_directory (a folder of class
    # folders, file names repeated across them) was refused twice over.
    photos = tmp_path / "photos"
    for label in ("cat", "dog"):
        (photos / label).mkdir(parents=True)
        for name in ("0001.png", "0002.png"):
            source = image_dir / ("a.png" if label == "cat" else "b.jpg")
            Image.open(source).convert("RGB").save(photos / label / name)
    out = tmp_path / "out"
    common = ["--num-masks", 8, "--seed", 1, "--json"]
    status, stdout, _ = _run(["explain", model_file, photos, "--out", out] + common, capsys)
    assert status == 0
    rows = json.loads(stdout)["images"]
    names = ["cat/0001.png", "cat/0002.png", "dog/0001.png", "dog/0002.png"]
    assert [row["image"] for row in rows] == names
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    assert written == [name.replace(".png", ".npy") for name in names]
    # Each map is the one of its file explained alone; a flat folder keeps flat names.
    alone = tmp_path / "alone"
    status, _, _ = _run(["explain", model_file, photos / "dog", "--out", alone] + common, capsys)
    assert status == 0 and sorted(p.name for p in alone.iterdir())[:2] == ["0001.npy", "0001.png"]
    np.testing.assert_array_equal(np.load(alone / "0002.npy"), np.load(out / "dog" / "0002.npy"))
    # Class folders of links to one pool of files are named by their own folders.
    linked = tmp_path / "linked"
    for label in ("cat", "dog"):
        (linked / label).mkdir(parents=True)
        (linked / label / "0001.png").symlink_to(photos / label / "0001.png")
    status, stdout, _ = _run(["explain", model_file, linked, "--out", tmp_path / "l"] + common,
                             capsys)
    assert [row["image"] for row in json.loads(stdout)["images"]] == [
        "cat/0001.png", "dog/0001.png"]
    # evaluate names them alike, and takes their boxes by that name.
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({name: {"box": [0, 0, 40, 50], "label": 1} for name in names}))
    status, stdout, _ = _run(["evaluate", model_file, photos, "--boxes", boxes] + common, capsys)
    report = json.loads(stdout)
    assert status == 0 and [row["image"] for row in report["per_image"]] == names
    assert all(row["class_id"] == 1 and row["pointing_hit"] for row in report["per_image"])
    # A box keyed by a bare name that several folders hold would serve them all.
    boxes.write_text(json.dumps({"0001.png": [0, 0, 40, 50], "0002.png": [0, 0, 40, 50]}))
    status, _, err = _run(["evaluate", model_file, photos, "--boxes", boxes] + common, capsys)
    assert status == 2 and "the box of '0001.png' would serve every file of that name, " \
        "e.g. cat/0001.png; key the boxes by the path below the folders." in err
    # Field test: a name that only one file has keeps its bare key beside
    # paths (it was refused as if shared).
    Image.open(image_dir / "b.jpg").convert("RGB").save(photos / "dog" / "0003.png")
    keyed = {name: [0, 0, 40, 50] for name in names}
    boxes.write_text(json.dumps({**keyed, "0003.png": [0, 0, 40, 50]}))
    status, stdout, err = _run(["evaluate", model_file, photos, "--boxes", boxes] + common,
                               capsys)
    assert status == 0, err
    assert [row["image"] for row in json.loads(stdout)["per_image"]][-1] == "dog/0003.png"
    (photos / "dog" / "0003.png").unlink()
    # A rerun with --out inside the folder does not explain its own overlays.
    inside = photos / "maps"
    for _ in range(2):
        status, stdout, _ = _run(["explain", model_file, photos, "--out", inside] + common,
                                 capsys)
        assert status == 0 and [row["image"] for row in json.loads(stdout)["images"]] == names


def test_sixteen_bit_grayscale_photos_are_scaled_to_eight_bits(tmp_path):
    pixels = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels, "L").save(tmp_path / "eight.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    for channels in (1, 3):
        eight = np.asarray(loading.load_photo(tmp_path / "eight.png", channels))
        sixteen = np.asarray(loading.load_photo(tmp_path / "sixteen.png", channels))
        np.testing.assert_array_equal(sixteen, eight)


@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_every_subcommand_has_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--num-masks" in capsys.readouterr().out


def test_retracing_warnings_are_left_alone_in_a_users_own_program():
    # Imported as a library (here, by pytest), keras_rise leaves TensorFlow's
    # logger as it is: in a user's own code the warning may be about it.
    import logging

    from keras_rise import _startup

    _startup.quiet_retracing_notices()
    with retracing_warnings() as records:
        logging.getLogger("tensorflow").warning(
            "5 out of the last 5 calls to f triggered tf.function retracing."
        )
    assert [record.getMessage()[:10] for record in records] == ["5 out of t"]


def test_bundled_model_explains_the_bundled_images_from_any_folder_in_a_quiet_start(tmp_path):
    # The console script of the installed package, run away from the checkout.
    # Field test: on TensorFlow 2.20 the command's first explanation wrote
    # "Compiled cluster using XLA!" (logged once a process, whatever
    # TF_CPP_MIN_LOG_LEVEL says) to stderr. The command compiles once with
    # XLA while its start-up log is captured; here that compilation also
    # writes the line, as 2.20 does, and it must not reach stderr; nor must
    # TensorFlow's warnings of functions traced anew.
    script = pathlib.Path(sys.executable).parent / "keras-rise"
    out = tmp_path / "heatmaps"
    wrapper = textwrap.dedent(f"""
        import os, runpy, sys
        sys.argv = [{str(script)!r}, "explain", {str(EXAMPLE_IMAGES)!r},
                    "--out", {str(out)!r}, "--num-masks", "50"]
        from keras_rise import _startup
        compile_once = _startup.compile_once_with_xla

        def logging_as_tensorflow_2_20_does():
            compile_once()
            os.write(2, b"I0000 00:00:1795850415.839316   30887 device_compiler.h:196] "
                        b"Compiled cluster using XLA!  This line is logged at most once.\\n")
            # Keras' TensorFlow backend makes a new XLA function at every
            # eager call of ConvNeXt's depthwise convolutions, and TensorFlow
            # warns of the retracing at each image's classes (field test).
            import tensorflow as tf
            for step in range(6):
                tf.function(lambda x: x + 1.0)(tf.constant(float(step)))
            print("compiled once")

        _startup.compile_once_with_xla = logging_as_tensorflow_2_20_does
        runpy.run_path(sys.argv[0], run_name="__main__")
    """)
    result = subprocess.run(
        [sys.executable, "-c", wrapper],
        cwd=tmp_path,
        env=users_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("compiled once\n")
    # Nothing of TensorFlow's start-up log reaches the command's stderr.
    assert result.stderr == ""
    boxes = json.loads((EXAMPLE_IMAGES / "boxes.json").read_text())
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(
        pathlib.Path(name).stem for name in boxes
    )
    # The demo model gets the bundled images right; the table says so.
    rows = [line.split() for line in result.stdout.splitlines() if ".png" in line]
    predicted = {row[0]: int(row[2]) for row in rows}
    correct = sum(predicted[name] == entry["label"] for name, entry in boxes.items())
    assert correct >= len(boxes) - 1


def test_export_writes_a_servable_explainer(model_file, tmp_path, capsys):
    status, stdout, _ = _run(
        ["export", model_file, tmp_path / "served", "--num-masks", 30], capsys
    )
    assert status == 0 and "serving_default" in stdout
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "served" / "1"))
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    model, _ = loading.load_model(model_file)
    expected = keras_rise.RiseExplainer(model, num_masks=30).explain(images)
    got = loaded.signatures["serving_default"](images=tf.constant(images))["saliency"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # A second export to the same version is refused with one line.
    status, _, stderr = _run(["export", model_file, tmp_path / "served"], capsys)
    assert status == 2 and "already holds" in stderr and stderr.count("\n") == 1


def test_export_serves_a_regressors_value_and_its_map(tmp_path, capsys):
    # Field test: a regressor's one linear unit was served as a classifier of
    # one class ("class_id" 0 for every input), where explain reports the value.
    import tensorflow as tf

    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    regressor = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    flat = keras.Model(inputs, keras.layers.Reshape(())(regressor.output))  # (batch,)
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    explainer = keras_rise.RiseExplainer(regressor, num_masks=30)
    expected = explainer.explain_result(images, targets=keras_rise.scores.OutputScore())
    for name, model in [("unit", regressor), ("flat", flat)]:
        model.save(tmp_path / f"{name}.keras")
        status, _, stderr = _run(
            ["export", tmp_path / f"{name}.keras", tmp_path / name, "--num-masks", 30], capsys
        )
        assert status == 0, stderr
        served = tf.saved_model.load(str(tmp_path / name / "1")).signatures[
            "serving_default"](images=tf.constant(images))
        assert sorted(served) == ["saliency", "score"], name
        np.testing.assert_allclose(served["saliency"].numpy(), expected.saliency, atol=1e-5)
        np.testing.assert_allclose(served["score"].numpy(), expected.scores, rtol=1e-5)


def test_output_folders_that_cannot_be_made_are_one_line(
    model_file, image_dir, tmp_path, capsys
):
    # Field test: export into a file's place ended in a TensorFlow traceback
    # after the model was loaded, and --out's OSErrors did not name --out.
    afile = tmp_path / "afile"
    afile.write_text("")
    (tmp_path / "v" / "1").parent.mkdir()
    (tmp_path / "v" / "1").write_text("")
    image = image_dir / "a.png"
    cases = [
        (["explain", model_file, image, "--out", afile / "x"],
         f"--out {afile / 'x'}: a file is there ({afile} is a file); give a folder."),
        (["explain", model_file, image, "--out", afile], f"--out {afile}: a file is there"),
        (["explain", model_file, image, "--out", tmp_path / "o", "--labels",
          tmp_path / "none.txt"], f"--labels {tmp_path / 'none.txt'}: no such file."),
        (["export", model_file, afile], f"EXPORT_DIR {afile}: a file is there"),
        (["export", model_file, tmp_path / "v"], "a file is where version 1's folder goes"),
        (["export", model_file, tmp_path / "w", "--version", "-1"],
         "argument --version: must be an integer >= 0, got -1"),
        # Not made by the checks before loading (as root /proc is writable):
        # the export itself fails, in one line.
        (["export", model_file, "/proc/keras-rise-test/e", "--num-masks", 10],
         "EXPORT_DIR /proc/keras-rise-test/e"),
    ]
    for argv, message in cases:
        if argv[0] == "explain":
            argv = argv + ["--num-masks", 10]
        try:
            status, _, stderr = _run(argv, capsys)
        except SystemExit as usage_error:  # argparse's
            status, stderr = usage_error.code, capsys.readouterr().err
        assert status == 2 and stderr.count("\n") == 1 and message in stderr, (argv, stderr)
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()


def test_export_takes_a_model_of_signals(signal_model_file, signal_model, tmp_path, capsys):
    # Field test: the command refused what export_explainer takes.
    path = signal_model_file
    status, stdout, stderr = _run(["export", path, tmp_path / "e", "--num-masks", 30], capsys)
    assert status == 0, stderr
    assert "signatures explain_class, serving_default to" in stdout
    import tensorflow as tf

    signals = np.random.default_rng(0).random((3, 40, 2)).astype(np.float32)
    served = tf.saved_model.load(str(tmp_path / "e" / "1")).signatures["serving_default"]
    expected = keras_rise.RiseExplainer(signal_model, num_masks=30).explain(signals, verbose=0)
    np.testing.assert_allclose(served(inputs=tf.constant(signals))["saliency"], expected,
                               atol=1e-5)


def test_python_dash_m_keras_rise_is_the_command():
    # Field test: `python -m keras_rise --help` was "No module named
    # keras_rise.__main__". Like the command, its help needs no TensorFlow.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_rise", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: keras-rise")
    assert "| tensorflow\n" not in result.stderr  # -X importtime lists each import


def test_export_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", "--help"])
    assert exit_info.value.code == 0
    assert "EXPORT_DIR" in capsys.readouterr().out


def test_explain_accepts_a_saved_model_folder(file_model, image_dir, tmp_path, capsys):
    model = file_model
    model.export(str(tmp_path / "classifier"), verbose=False)
    out = tmp_path / "out"
    status, _, stderr = _run(
        [
            "explain",
            tmp_path / "classifier",
            image_dir / "a.png",
            "--out",
            out,
            "--num-masks",
            40,
            "--map-size",
            "input",
        ],
        capsys,
    )
    assert status == 0, stderr
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    expected = keras_rise.RiseExplainer(model, num_masks=40).explain(image)
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-5)
    # Field test: evaluate read the folder's `model.inputs`, which a
    # SavedModel's signature has not (a traceback, status 1).
    status, stdout, stderr = _run(
        ["evaluate", tmp_path / "classifier", image_dir / "a.png", "--json",
         "--num-masks", 40], capsys)
    assert status == 0, stderr
    report = json.loads(stdout)["per_image"][0]
    deleted = keras_rise.metrics.deletion(model, image[None], expected[None])
    assert report["deletion_auc"] == pytest.approx(float(deleted.auc[0]), abs=1e-5)


def test_a_keras_2_saved_model_names_the_package_that_restores_it(
    image_dir, tmp_path, capsys, monkeypatch
):
    # Field test: basic-pitch's SavedModel (Keras 2, with its optimizer's
    # slots) failed to load under Keras 3 with "'_UserObject' object has no
    # attribute 'add_slot'"; with tf_keras installed TensorFlow restores it.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "saved_model.pb").write_bytes(b"")

    def keras_2_objects(path, model_output=None):
        raise AttributeError("'_UserObject' object has no attribute 'add_slot'")

    monkeypatch.setattr(loading, "_SavedModelSignature", keras_2_objects)
    find_spec = loading.importlib.util.find_spec
    for installed, hint in ((False, True), (True, False)):
        monkeypatch.setattr(
            loading.importlib.util, "find_spec",
            lambda name: (installed or None) if name == "tf_keras" else find_spec(name),
        )
        args = ["explain", tmp_path / "old", image_dir, "--out", tmp_path / "o"]
        status, _, stderr = _run(args, capsys)
        assert status == 2 and stderr.count("\n") == 1
        assert "no attribute 'add_slot'" in stderr
        assert ("`pip install tf_keras` lets TensorFlow restore" in stderr) == hint


def test_a_model_of_a_python_lambda_says_how_to_trust_it(tmp_path, capsys):
    # Field test: Keras refuses a Lambda layer's Python code unless trusted;
    # its message was cut at "... disallowed by default. If …", before its
    # hint. The command says how to trust the file, and that way works.
    from keras.src.saving import serialization_lib

    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, :1] * 2.0)(inputs))
    model.save(tmp_path / "lambda.keras")
    np.save(tmp_path / "row.npy", np.ones(6, np.float32))
    args = ["explain", tmp_path / "lambda.keras", tmp_path / "row.npy", "--num-masks", "64"]
    status, _, stderr = _run(args + ["--out", tmp_path / "o"], capsys)
    assert status == 2 and stderr.count("\n") == 1
    assert "a Lambda layer of the model holds Python code" in stderr
    assert "--custom-objects trust.py" in stderr
    trust = "import keras\nkeras.config.enable_unsafe_deserialization()\n"
    (tmp_path / "trust.py").write_text(trust)
    safe_mode = serialization_lib.in_safe_mode()
    try:
        status, _, stderr = _run(
            args + ["--custom-objects", tmp_path / "trust.py", "--out", tmp_path / "o"], capsys
        )
    finally:
        serialization_lib.global_state.set_global_attribute("safe_mode_saving", safe_mode)
    assert status == 0, stderr
    assert np.load(tmp_path / "o" / "row.npy").shape == (6,)


def test_a_table_on_the_command_line_gets_words_for_its_inputs(tmp_path, capsys):
    # Field test: a model of two inputs was "the model must take one input.";
    # a row of the wrong length was told to "resize" it, and .npy rows given
    # without a model, "the model takes images".
    features, extra = keras.Input((10,), name="features"), keras.Input((3,), name="extra")
    joined = keras.layers.Concatenate()([features, extra])
    keras.Model([features, extra], keras.layers.Dense(1)(joined)).save(tmp_path / "two.keras")
    table = keras.Input((10,))
    keras.Model(table, keras.layers.Dense(2, "softmax")(table)).save(tmp_path / "table.keras")
    keras.Model(table, keras.layers.Dense(1)(table)).save(tmp_path / "unit.keras")
    np.save(tmp_path / "row.npy", np.ones(10, np.float32))
    np.save(tmp_path / "short.npy", np.ones(9, np.float32))
    out = ["--out", tmp_path / "o"]
    for args, words in (
        ([tmp_path / "two.keras", tmp_path / "row.npy"],
         ("takes 2 inputs ('features', 'extra')", "image_input=")),
        ([tmp_path / "table.keras", tmp_path / "short.npy"],
         ("length is 9", "give inputs of the model's shape")),
        ([tmp_path / "row.npy", tmp_path / "short.npy"],
         ("row.npy is not a model", "bundled demo model")),
        ([tmp_path / "unit.keras", tmp_path / "row.npy", "--class-id", "1"],
         ("outside the model's 1 classes", "not a sigmoid", "class 0's is its negative")),
    ):
        status, _, stderr = _run(["explain", *args, *out], capsys)
        assert status == 2 and stderr.count("\n") == 1, stderr
        assert all(word in stderr for word in words), stderr
        assert "resize" not in stderr


def test_segmenters_and_taggers_are_explained_over_a_region(tmp_path, capsys):
    # A dense output was refused here ("use the Python API"). Each class's
    # mean over --region (default: the whole output) is read as its score,
    # so the maps are RegionScore's.
    import tensorflow as tf

    from keras_rise.scores import RegionScore

    inputs = keras.Input((16, 16, 3))
    red = keras.layers.AveragePooling2D(3, strides=1, padding="same")(inputs[..., :1])
    keras.Model(inputs, keras.layers.Concatenate()([1.0 - red, red])).save(
        tmp_path / "seg.keras"
    )
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[4:8, 9:13, 0] = 255
    Image.fromarray(pixels).save(tmp_path / "square.png")
    options = ["--num-masks", "200", "--grid-size", "8"]
    args = ["explain", tmp_path / "seg.keras", tmp_path / "square.png", *options]
    status, stdout, stderr = _run(
        args + ["--class-id", "1", "--region", "4,9,8,13", "--out", tmp_path / "o"], capsys
    )
    assert status == 0, stderr
    model, shape = loading.load_model(tmp_path / "seg.keras")
    image = loading.load_image(tmp_path / "square.png", shape)
    explainer = keras_rise.RiseExplainer(model, num_masks=200, grid_size=8)
    expected = explainer.explain(image, targets=RegionScore(1, region=(4, 9, 8, 13)))
    saliency = np.load(tmp_path / "o" / "square.npy")
    np.testing.assert_allclose(saliency, expected, atol=1e-5)
    assert np.unravel_index(np.argmax(saliency), saliency.shape) in {
        (r, c) for r in range(3, 9) for c in range(8, 14)
    }
    assert "0.6944" in stdout  # class 1's mean over the box: 25 of its 36 values are 1
    # Without --region, the whole output: the top class is the background's.
    status, stdout, _ = _run(args + ["--out", tmp_path / "whole"], capsys)
    assert status == 0 and "0.9375" in stdout.splitlines()[1]
    for region, words in (
        ("1,2", "give 4 ints, (top, left, bottom, right)"),
        ("0,0,20,20", "reaches outside the model's 16x16 output"),
    ):
        status, _, stderr = _run(args + ["--region", region, "--out", tmp_path / "x"], capsys)
        assert status == 2 and stderr.count("\n") == 1 and words in stderr, stderr
    # A classifier takes no region; its outputs are shown as shapes.
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs))).save(
        tmp_path / "classes.keras"
    )
    status, _, stderr = _run(
        ["explain", tmp_path / "classes.keras", tmp_path / "square.png", "--region", "0,0,4,4",
         "--out", tmp_path / "x"],
        capsys,
    )
    assert status == 2 and stderr.endswith("this model's outputs are (batch, 3).\n"), stderr

    # `evaluate --region` judges the map by the score it explains: the
    # class's mean over the box, as the Python metrics do with RegionScore.
    status, stdout, stderr = _run(
        ["evaluate", tmp_path / "seg.keras", tmp_path / "square.png", *options,
         "--class-id", "1", "--region", "4,9,8,13", "--json"],
        capsys,
    )
    assert status == 0, stderr
    row = json.loads(stdout)["per_image"][0]
    box = RegionScore(1, region=(4, 9, 8, 13))
    for name, metric in (("deletion_auc", keras_rise.metrics.deletion),
                         ("insertion_auc", keras_rise.metrics.insertion)):
        expected_auc = metric(model, image[None], saliency[None], targets=box).auc[0]
        assert abs(row[name] - expected_auc) < 1e-4, (name, row[name], expected_auc)
    assert row["deletion_auc"] < row["insertion_auc"]

    # A tagger of token ids, (batch, steps, tags), from .npy inputs.
    tokens = keras.Input((12,), dtype="int32")
    table = np.eye(2, dtype=np.float32)[(np.arange(10) > 5).astype(int)]  # tag 1: ids > 5
    embed = keras.layers.Embedding(10, 2, embeddings_initializer=keras.initializers.Constant(table))
    tagger = keras.Model(tokens, embed(tokens))
    ids = np.array([1, 2, 9, 3, 8, 1, 1, 7, 2, 2, 9, 1], np.int32)
    np.save(tmp_path / "ids.npy", ids)
    expected = keras_rise.RiseExplainer(tagger, num_masks=64, fill_value=0).explain(
        ids, targets=RegionScore(1, region=(2, 5))
    )
    assert set(np.argsort(expected)[-2:]) == {2, 4}  # the two ids > 5 in the span
    tagger.save(tmp_path / "tagger.keras", include_optimizer=False)
    # Also as a SavedModel folder, whose signature declares its output (field
    # test: an audio model's note frames were refused, "outputs not declared").
    tagger.export(str(tmp_path / "tagger_saved"), verbose=False)
    for model_path in (tmp_path / "tagger.keras", tmp_path / "tagger_saved"):
        out = tmp_path / f"maps_{model_path.stem}"
        status, _, stderr = _run(
            ["explain", model_path, tmp_path / "ids.npy", "--num-masks", "64", "--fill-value",
             "0", "--class-id", "1", "--region", "2,5", "--out", out],
            capsys,
        )
        assert status == 0, (model_path, stderr)
        np.testing.assert_allclose(np.load(out / "ids.npy"), expected, atol=1e-5)

    # `export --region` serves the same maps: class ids select the class.
    status, _, stderr = _run(
        ["export", tmp_path / "seg.keras", tmp_path / "served", "--region", "4,9,8,13",
         *options],
        capsys,
    )
    assert status == 0, stderr
    served = tf.saved_model.load(str(tmp_path / "served" / "1"))
    got = served.signatures["explain_class"](
        images=tf.constant(image[None]), class_ids=tf.constant([1])
    )["saliency"]
    expected = explainer.explain(image, targets=RegionScore(1, region=(4, 9, 8, 13)))
    np.testing.assert_allclose(got.numpy()[0], expected, atol=1e-5)


def test_evaluate_json_equals_the_python_metrics(tmp_path, capsys):
    boxes = json.loads((EXAMPLE_IMAGES / "boxes.json").read_text())
    names = sorted(boxes)[:3]
    for name in names:
        (tmp_path / name).write_bytes((EXAMPLE_IMAGES / name).read_bytes())
    args = ["evaluate", tmp_path, "--boxes", EXAMPLE_IMAGES / "boxes.json"]
    status, out, _ = _run(args + ["--json", "--num-masks", 80, "--seed", 4], capsys)
    assert status == 0
    report = json.loads(out)  # stdout holds nothing but the JSON
    assert [row["image"] for row in report["per_image"]] == names

    model = keras_rise.load_demo_model()
    images = np.stack(
        [loading.load_image(tmp_path / name, (None, 64, 64, 3)) for name in names]
    )
    classes = model.predict(images, verbose=0).argmax(axis=1)
    explainer = keras_rise.RiseExplainer(model, num_masks=80, seed=4)
    maps = np.stack([explainer.explain(x, int(k)) for x, k in zip(images, classes)])
    deleted = keras_rise.metrics.deletion(model, images, maps, classes).auc
    inserted = keras_rise.metrics.insertion(model, images, maps, classes).auc
    hits = keras_rise.metrics.pointing_game(maps, [boxes[n]["box"] for n in names])
    for index, row in enumerate(report["per_image"]):
        assert row["class_id"] == classes[index]
        assert row["deletion_auc"] == pytest.approx(deleted[index], rel=1e-5)
        assert row["insertion_auc"] == pytest.approx(inserted[index], rel=1e-5)
        assert row["pointing_hit"] == hits.hits[index]
    assert report["summary"]["pointing_game"] == pytest.approx(hits.rate)
    assert report["summary"]["deletion_auc"] == pytest.approx(deleted.mean(), rel=1e-5)

    status, table, _ = _run(args + ["--num-masks", 80, "--seed", 4], capsys)
    assert status == 0 and table.splitlines()[-2].startswith("mean")
    assert f"{report['summary']['insertion_auc']:.4f}" in table.splitlines()[-2]

    # Insertion from black, not from a blurred copy: the same maps, other curves.
    status, out, _ = _run(
        args + ["--json", "--num-masks", 80, "--seed", 4, "--substrate", "0"], capsys
    )
    assert status == 0
    from_black = keras_rise.metrics.insertion(model, images, maps, classes, substrate=0.0)
    rows = json.loads(out)["per_image"]
    assert [row["insertion_auc"] for row in rows] == pytest.approx(from_black.auc, rel=1e-5)
    assert [row["deletion_auc"] for row in rows] == pytest.approx(deleted, rel=1e-5)
    assert not np.allclose(from_black.auc, inserted, rtol=1e-3)


def test_evaluate_substrate_is_checked_and_advised_as_a_flag(image_dir, capsys):
    for value, message in [("grey", "must be blur or a number, got 'grey'"),
                           ("nan", "must be finite, got nan")]:
        with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
            cli.main(["evaluate", str(image_dir), "--substrate", value])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --substrate: {message}" in err
    # The insertion warning's advice, as the command prints it.
    with pytest.warns(UserWarning) as caught:
        keras_rise.metrics.insertion(
            lambda x: -keras.ops.mean(x, axis=(1, 2, 3))[:, None],
            np.ones((1, 8, 8, 1), "float32"), np.eye(8, dtype="float32")[None],
            targets=0, substrate=0.5,
        )
    line = cli.first_line(caught[0].message)
    assert "e.g. --substrate 0.0." in line and "substrate=" not in line


def test_evaluate_names_the_image_whose_insertion_curve_falls(tmp_path, capsys):
    # Field test: the insertion warning said "on some inputs" and no file.
    # Class 1 of this model is "smooth": a blurred copy of a noisy photo
    # scores above the photo (its curve falls); a flat photo's does not.
    inputs = keras.Input((32, 32, 3))
    edges = keras.layers.Conv2D(2, 3, use_bias=False)
    rough = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(edges(inputs)))
    logits = keras.layers.Dense(2)
    model = keras.Model(inputs, keras.layers.Softmax()(logits(rough)))
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "float32")[:, :, None]
    kernel = np.repeat(laplacian, 3, axis=2)[..., None]
    edges.set_weights([np.concatenate([kernel, -kernel], axis=-1)])
    logits.set_weights([np.array([[4.0, -4.0], [4.0, -4.0]], "float32"), np.zeros(2)])
    model.save(tmp_path / "smooth.keras")
    folder = tmp_path / "photos"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noisy.png")
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(folder / "flat.png")
    status, _, err = _run(
        ["evaluate", tmp_path / "smooth.keras", folder, "--class-id", 1,
         "--num-masks", 16, "--json"],
        capsys,
    )
    assert status == 0
    falls = [line for line in err.splitlines() if "the curve falls" in line]
    assert len(falls) == 1, err
    assert falls[0].startswith("keras-rise: warning: noisy.png: insertion: the curve's start")
    # The flat photo's score (1/2) moves under no mask: both its curves are
    # flat, and say which flag to change.
    flat = [line for line in err.splitlines() if "the curve is flat" in line]
    assert [line.split(": ")[3] for line in flat] == ["deletion", "insertion"], err
    assert all(line.startswith("keras-rise: warning: flat.png: ") for line in flat)
    assert "--fill-value mean" in flat[0] and "--substrate 0.0" in flat[1]


@pytest.mark.parametrize(
    "boxes_text,message",
    [
        (None, "no such file"),
        ("{not json", "not a JSON file of boxes"),
        ('{"a.png": [0, 0, 4]}', "must be 4 ints"),
        ('{"a.png": {"boxes": [[0, 0, 4, 4]]}}', "got an object with keys ['boxes']"),
        ('{"a.png": [0, 0, 4, 4]}', "no box for b.jpg"),
    ],
)
def test_evaluate_bad_boxes(
    model_file, image_dir, tmp_path, capsys, boxes_text, message
):
    boxes = tmp_path / "boxes.json"
    if boxes_text is not None:
        boxes.write_text(boxes_text)
    status, out, stderr = _run(
        ["evaluate", model_file, image_dir, "--boxes", boxes, "--num-masks", 8], capsys
    )
    assert status == 2 and out == ""
    assert stderr.count("\n") == 1 and message in stderr


def test_boxes_scale_with_the_resize():
    # A 40x50 file resized to a 32x32 model input.
    assert cli._scaled_box([0, 0, 40, 50], (40, 50), (32, 32)) == [0, 0, 32, 32]
    assert cli._scaled_box([10, 25, 20, 30], (40, 50), (32, 32)) == [8, 16, 16, 20]


@pytest.mark.parametrize("preset, expected", [(None, "true"), ("false", "false")])
def test_command_asks_for_the_bfc_cpu_allocator_unless_told(
    preset, expected, tmp_path, capsys, monkeypatch
):
    # TensorFlow reads the variable when it makes its CPU allocator; the
    # command sets it first thing, and a user's own setting wins.
    if preset is None:
        monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    else:
        monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", preset)
    status, _, _ = _run(["explain", tmp_path / "missing.png", "--out", tmp_path], capsys)
    assert status == 2
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == expected


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_legacy_keras_2_model_files_load(file_model, image_dir, tmp_path, capsys, suffix):
    model = file_model
    path = tmp_path / f"legacy{suffix}"
    model.save(path)  # Keras' legacy HDF5 format, as Keras 2 wrote it
    assert loading.is_model_path(path)
    loaded, input_shape = loading.load_model(path)
    assert input_shape == (None, 32, 32, 3)
    out = tmp_path / "out"
    status, _, _ = _run(
        ["explain", path, image_dir, "--out", out, "--num-masks", 40, "--map-size", "input"],
        capsys,
    )
    assert status == 0
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    expected = keras_rise.RiseExplainer(model, num_masks=40).explain(image)
    np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-5)

    # Field test: Keras writes, but cannot read back, models with operations
    # on tensors in their graph (MobileNetV3's hard swish) in HDF5: `x / 6`
    # is a layer it does not know (which is no custom layer of the user's),
    # and `x * (1 / 6)` keeps a Python number where it takes tensors.
    inputs = keras.Input((4,))
    relu = keras.layers.ReLU(6.0)(inputs + 3.0)
    for name, swish in [("divide", relu / 6.0), ("multiply", relu * (1.0 / 6.0))]:
        keras.Model(inputs, keras.layers.Dense(2)(swish)).save(tmp_path / f"{name}{suffix}")
        status, _, stderr = _run(
            ["explain", tmp_path / f"{name}{suffix}", image_dir, "--out", tmp_path / "o"],
            capsys,
        )
        assert status == 2 and stderr.count("\n") == 1
        assert f"{name}{suffix}: Keras could not rebuild the model from this legacy" in stderr
        assert "save it as .keras (model.save('model.keras')) and give that file." in stderr


def test_a_user_error_is_the_only_line_on_stderr(tmp_path):
    # Run as the installed command, where TensorFlow starts in this process.
    script = pathlib.Path(sys.executable).parent / "keras-rise"
    result = subprocess.run(
        [str(script), "explain", str(tmp_path / "missing.png"), "--out", str(tmp_path)],
        env=users_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"keras-rise: error: {tmp_path / 'missing.png'}: no such file or folder."
    ]


@pytest.fixture
def dark_square(tmp_path):
    """A white 48×48 photo with a black square at rows 8–20, columns 28–40,
    and a model of its darkness that takes pixels in [-1, 1]."""
    from conftest import dark_region_model

    pixels = np.full((48, 48, 3), 255, np.uint8)
    pixels[8:20, 28:40] = 0
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "square.png")
    model_path = tmp_path / "dark.keras"
    dark_region_model().save(model_path)
    return model_path, folder / "square.png"


def test_a_model_of_inputs_in_minus_one_to_one_needs_its_input_range(
    dark_square, tmp_path, capsys
):
    model_path, photo = dark_square
    maps = {}
    for name, options in {
        "default": [],
        "range": ["--input-range", -1, 1],
        "tf": ["--preprocess", "tf"],
    }.items():
        out = tmp_path / name
        status, _, stderr = _run(
            ["explain", model_path, photo, "--out", out, "--num-masks", 300, "--class-id", 0]
            + options,
            capsys,
        )
        assert status == 0, stderr
        maps[name] = np.load(out / "square.npy")
    right = maps["range"]
    inside = np.zeros((48, 48), bool)
    inside[8:20, 28:40] = True
    # With the model's own range the map points at the square ...
    assert right[inside].mean() > right[~inside].mean() + 5 * right[~inside].std()
    assert inside[np.unravel_index(right.argmax(), right.shape)]
    # ... which [0, 1] pixels hide from it: every masked copy scores 0.
    assert np.ptp(maps["default"]) < 1e-6
    np.testing.assert_allclose(maps["tf"], right, atol=1e-5)


def test_fill_value_option_is_the_explainers(
    model_file, file_model, image_dir, tmp_path, capsys
):
    model = file_model
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    for fill in ("0.5", "mean", "blur"):
        out = tmp_path / fill
        status, _, _ = _run(
            ["explain", model_file, image_dir / "a.png", "--out", out, "--num-masks", 40]
            + ["--fill-value", fill, "--map-size", "input"],
            capsys,
        )
        assert status == 0
        value = float(fill) if fill == "0.5" else fill
        expected = keras_rise.RiseExplainer(model, num_masks=40, fill_value=value).explain(
            image
        )
        np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", str(image_dir), "--out", str(tmp_path), "--fill-value", "a b"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "must be a number, mean, blur, a .npy file or (for texts) one word" in error
    # A word fills texts only: an image model refuses it in one line.
    status = cli.main(["explain", str(image_dir), "--out", str(tmp_path), "--fill-value", "grey"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "`--fill-value grey` is a fill word, for models of strings" in err


def test_evaluate_explains_the_class_a_boxes_file_labels(tmp_path, capsys):
    # The pointing game's convention: the labelled object's class, not the top one.
    name = "digit_00.png"  # an 8, predicted with probability 1.00
    (tmp_path / name).write_bytes((EXAMPLE_IMAGES / name).read_bytes())
    box = json.loads((EXAMPLE_IMAGES / "boxes.json").read_text())[name]["box"]
    (tmp_path / "names.txt").write_text("\n".join(f"digit {k}" for k in range(10)))
    common = ["evaluate", tmp_path, "--num-masks", 40, "--json"]
    for label, extra in ((3, []), ("digit 3", ["--labels", tmp_path / "names.txt"])):
        boxes = tmp_path / "boxes.json"
        boxes.write_text(json.dumps({name: {"box": box, "label": label}}))
        status, out, _ = _run(common + ["--boxes", boxes] + extra, capsys)
        assert status == 0
        row = json.loads(out)["per_image"][0]
        assert row["class_id"] == 3 and row["score"] < 0.01
    status, out, _ = _run(common + ["--boxes", boxes, "--class-id", 5], capsys)
    assert status == 0 and json.loads(out)["per_image"][0]["class_id"] == 5

    for label, message in (
        ("digit 3", "the label of 'digit_00.png' is 'digit 3', a name; give the class ids"),
        (10, "the label of 'digit_00.png' is class 10, outside the model's 10 classes"),
        (-1, "must be a class id (an int >= 0) or a class name (a string); got -1."),
        (True, "got True."),
    ):
        boxes.write_text(json.dumps({name: {"box": box, "label": label}}))
        status, _, err = _run(common + ["--boxes", boxes], capsys)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_labels_json_and_honest_ranks(model_file, file_model, image_dir, tmp_path, capsys):
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    scores = file_model(image[None]).numpy()[0]
    lowest = int(scores.argmin())
    names = ["cat", "dog", "fox", "owl"]
    formats = {
        "labels.txt": "\n".join(names) + "\n",
        "labels.json": json.dumps({str(i): name for i, name in enumerate(names)}),
    }
    for file_name, text in formats.items():
        (tmp_path / file_name).write_text(text)
        out = tmp_path / file_name.replace(".", "_")
        status, stdout, _ = _run(
            ["explain", model_file, image_dir / "a.png", "--out", out, "--num-masks", 40]
            + ["--class-id", lowest, "--labels", tmp_path / file_name, "--json"],
            capsys,
        )
        assert status == 0
        (row,) = json.loads(stdout)["images"]
        # The class asked for is the model's last, and the table says so.
        assert row["rank"] == 4 and row["class_id"] == lowest
        assert row["label"] == names[lowest]
        assert row["score"] == pytest.approx(float(scores[lowest]), rel=1e-5)
        assert np.load(row["map"]).shape == (40, 50)
        # The overlay carries its caption on a dark band in the corner.
        assert Image.open(row["overlay"]).getpixel((0, 0)) == (0, 0, 0)
    status, stdout, _ = _run(
        ["explain", model_file, image_dir / "a.png", "--out", tmp_path / "table"]
        + ["--num-masks", 40, "--labels", tmp_path / "labels.txt"],
        capsys,
    )
    top = int(scores.argmax())
    (line,) = [line for line in stdout.splitlines() if line.startswith("a.png")]
    assert line.split()[:4] == ["a.png", "1", str(top), names[top]]
    (tmp_path / "bad.json").write_text('{"first": "cat"}')
    status, _, stderr = _run(
        ["explain", model_file, image_dir, "--out", tmp_path / "x"]
        + ["--labels", tmp_path / "bad.json"],
        capsys,
    )
    assert status == 2 and "class ids" in stderr and stderr.count("\n") == 1


def test_usage_errors_are_one_line_too(model_file, image_dir, tmp_path, capsys):
    for argv in (
        ["explain", image_dir, "--out", tmp_path, "--num-masks", 0],
        ["explain", image_dir, "--out", tmp_path, "--input-range", -1, 1, "--preprocess", "tf"],
        ["evaluate", image_dir, "--bogus"],
        ["explain", image_dir, "--out", tmp_path, "--num-masks", "abc"],
        ["explain", image_dir, "--out", tmp_path, "--tolerance", 0],
        ["evaluate", image_dir, "--tolerance", "inf"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(a) for a in argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "_positive" not in err
        # Field test: usage errors began "keras-rise explain: error:", the
        # others "keras-rise: error:"; one prefix for scripts to look for.
        assert err.startswith("keras-rise: error: ") and f"(see keras-rise {argv[0]} --help)" in err
        assert "--tolerance" not in argv or "must be a number > 0" in err
    # As in the API, a tolerance may be any number > 0, 1 and beyond too.
    status, _, _ = _run(
        ["explain", model_file, image_dir / "a.png", "--out", tmp_path / "loose",
         "--num-masks", 8, "--tolerance", 1.5],
        capsys,
    )
    assert status == 0
    (tmp_path / "afile").write_text("")
    (tmp_path / "two.txt").write_text("cat\ndog\n")
    for extra, message in (
        (["--out", tmp_path / "afile"], "--out"),
        (["--out", tmp_path / "o", "--labels", tmp_path / "two.txt"], "the model has 4 classes"),
    ):
        status, _, stderr = _run(
            ["explain", model_file, image_dir, "--num-masks", 8] + extra, capsys
        )
        assert status == 2 and message in stderr and stderr.count("\n") == 1


def test_a_model_of_one_input_in_a_list_explains_without_keras_warnings(
    image_dir, tmp_path, capsys
):
    # Keras 2 files often declare `inputs=[x]`; Keras 3 warns on every call
    # with a bare tensor that "the structure of `inputs` doesn't match".
    import warnings

    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model([inputs], small_cnn()(inputs))
    path = tmp_path / "listed.h5"
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, _, _ = _run(
            ["explain", path, image_dir, "--out", tmp_path / "out", "--num-masks", 40],
            capsys,
        )
        keras_rise.RiseExplainer(model, num_masks=40).explain(np.zeros((32, 32, 3)))
    assert status == 0
    assert not [w for w in caught if "structure of `inputs`" in str(w.message)]


@pytest.fixture(scope="module")
def signal_model_file(tmp_path_factory):
    """A model of (40, 2) signals."""
    inputs = keras.Input((40, 2))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 5)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    path = tmp_path_factory.mktemp("signal") / "signal.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def signal_model(signal_model_file):
    """The model of `signal_model_file`, loaded once: its explainers of 30
    masks share the compiled loop of the one held here."""
    model = keras.saving.load_model(signal_model_file)
    held = keras_rise.RiseExplainer(model, num_masks=30)
    yield model
    del held


def test_explain_reads_npy_inputs_for_models_of_other_inputs(
    signal_model_file, signal_model, tmp_path, capsys
):
    path = signal_model_file
    rng = np.random.default_rng(0)
    one, batch = rng.random((40, 2), np.float32), rng.random((3, 40, 2), np.float32)
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "batch.npy", batch)
    out = tmp_path / "out"
    args = ["explain", path, tmp_path / "one.npy", tmp_path / "batch.npy", "--out", out]
    status, stdout, stderr = _run(args + ["--num-masks", 30, "--json"], capsys)
    assert status == 0, stderr
    rows = json.loads(stdout)["inputs"]
    assert [row["input"] for row in rows] == ["one.npy"] + [f"batch.npy[{i}]" for i in range(3)]
    model = signal_model
    explainer = keras_rise.RiseExplainer(model, num_masks=30)
    np.testing.assert_allclose(np.load(out / "one.npy"), explainer.explain(one), atol=1e-5)
    np.testing.assert_allclose(
        np.load(out / "batch_002.npy"), explainer.explain(batch)[2], atol=1e-5
    )
    assert Image.open(out / "batch_000.png").size == (640, 200)
    assert rows[0]["class_id"] == int(model.predict(one[None], verbose=0).argmax())
    # The same model as a SavedModel folder (field test: a traceback, exit 1;
    # then its signals were taken for images).
    model.export(str(tmp_path / "saved"), verbose=False)
    args = ["explain", tmp_path / "saved", tmp_path / "one.npy", "--out", tmp_path / "from_saved"]
    status, _, stderr = _run(args + ["--num-masks", 30], capsys)
    assert status == 0, stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "from_saved" / "one.npy"), np.load(out / "one.npy"), atol=1e-5
    )


@pytest.mark.parametrize(
    "extra,files,message",
    [
        ([], ["a.png"], "give its inputs as .npy arrays"),
        (["--input-range", 0, 1], ["one.npy"], "--input-range is for image files"),
        ([], ["wrong.npy"], "wrong.npy: `images` must be one input"),
    ],
)
def test_npy_inputs_errors(signal_model_file, tmp_path, capsys, extra, files, message):
    path = signal_model_file
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    np.save(tmp_path / "one.npy", np.zeros((40, 2), np.float32))
    np.save(tmp_path / "wrong.npy", np.zeros((40,), np.float32))
    args = ["explain", path, *(tmp_path / f for f in files), "--out", tmp_path / "o"]
    status, _, stderr = _run(args + ["--num-masks", 20] + extra, capsys)
    assert status == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_a_model_failing_on_an_npy_input_is_one_line(tmp_path, capsys):
    # Field test: a token id outside an Embedding's vocabulary gave a
    # traceback from the class-score call (exit 1).
    tokens = keras.Input((6,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(40, 4)(tokens))
    path = tmp_path / "tokens.keras"
    keras.Model(tokens, keras.layers.Dense(2, activation="softmax")(pooled)).save(path)
    np.save(tmp_path / "ids.npy", np.array([3, 9, 7, 19, 5, 99], np.int32))
    args = ["explain", path, tmp_path / "ids.npy", "--out", tmp_path / "o", "--num-masks", 8]
    status, _, stderr = _run(args, capsys)
    assert status == 2 and len(stderr.strip().splitlines()) == 1
    assert "could not be called" in stderr and "99 is not in [0, 40)" in stderr
    # The fill value is named as the command's flag, and a bad file once.
    np.save(tmp_path / "ids.npy", np.array([3, 9, 7, 19, 5, 1], np.int32))
    status, _, stderr = _run(args + ["--fill-value", 99], capsys)
    assert status == 2 and "`--fill-value 99.0` is not a token id" in stderr
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    args[2] = tmp_path / "objects.npy"
    status, _, stderr = _run(args, capsys)
    assert status == 2 and stderr.count("objects.npy") == 1, stderr


@pytest.mark.parametrize("outputs", ["dict", "list", "segmentation"])
def test_a_model_that_is_not_a_classifier_is_one_line(outputs, image_dir, tmp_path, capsys):
    # Field test: a dict of heads gave a traceback (exit 1), a list numpy's
    # "inhomogeneous shape", a segmenter a message about targets.
    inputs = keras.Input((32, 32, 3))
    flat = keras.layers.Flatten()(inputs)
    heads = [keras.layers.Dense(3, activation="softmax")(flat),
             keras.layers.Dense(2, activation="softmax")(flat)]
    model_outputs = {
        "dict": {"a": heads[0], "b": heads[1]},
        "list": heads,
        "segmentation": keras.layers.Conv2D(2, 1, activation="softmax")(inputs),
    }[outputs]
    path = tmp_path / f"{outputs}.keras"
    keras.Model(inputs, model_outputs).save(path)
    expected = {"dict": "a dict of outputs ['a', 'b']", "list": "a list of 2 outputs",
                "segmentation": None}[outputs]
    explain = ["explain", path, image_dir, "--out", tmp_path / "o"]
    evaluate = ["evaluate", path, image_dir, "--num-masks", 8]
    if outputs == "segmentation":
        # `explain` and `evaluate` read a segmenter's classes over --region
        # (default: the whole output).
        status, stdout, stderr = _run(evaluate, capsys)
        assert status == 0, stderr
        assert "deletion: lower is better" in stdout
        return
    for command in (evaluate, explain + ["--num-masks", 8]):
        status, _, stderr = _run(command, capsys)
        assert status == 2 and stderr.count("\n") == 1
        assert "(batch, num_classes)" in stderr and expected in stderr


def _two_head_model(kind):
    """A box regressor and a classifier on one trunk: outputs in a list
    (heads named "boxes" and "probs") or a dict (keys "box" and "cls")."""
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(6, 5, activation="relu")(inputs)
    )
    boxes = keras.layers.Dense(4, name="boxes")(features)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(features)
    outputs = [boxes, probs] if kind == "list" else {"box": boxes, "cls": probs}
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "kind, choices", [("list", ["probs", "1"]), ("dict", ["cls"]), ("saved", ["1", "output_1"])]
)
def test_model_output_picks_the_explained_head(kind, choices, image_dir, tmp_path, capsys):
    # Field test: mtcnn's ONet (box, landmarks and face/no-face heads) could
    # not be explained from the command line, as a .keras file or exported.
    model = _two_head_model("dict" if kind == "dict" else "list")
    path = tmp_path / "heads.keras"
    model.save(path)
    if kind == "saved":
        path = tmp_path / "heads_savedmodel"
        model.export(str(path), verbose=False)
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    head = "cls" if kind == "dict" else 1
    probs = keras.ops.convert_to_numpy(model(image[None])[head])[0]
    explainer = keras_rise.RiseExplainer(model, num_masks=40, seed=5)
    expected = explainer.explain(
        image, targets=keras_rise.scores.ClassScore(int(probs.argmax()), output=head)
    )
    for choice in choices:
        out = tmp_path / f"out_{choice}"
        status, stdout, stderr = _run(
            ["explain", path, image_dir / "a.png", "--out", out, "--num-masks", 40,
             "--seed", 5, "--map-size", "input", "--model-output", choice],
            capsys,
        )
        assert status == 0, stderr
        np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-5)
        assert f" {probs.argmax()}  {probs.max():.4f}" in stdout
    # Without the flag the refusal names it; a wrong name is one line that
    # lists the outputs there are.
    status, _, stderr = _run(["explain", path, image_dir, "--out", tmp_path / "o"], capsys)
    assert status == 2 and "--model-output" in stderr and stderr.count("\n") == 1
    status, _, stderr = _run(
        ["evaluate", path, image_dir, "--model-output", "scores"], capsys
    )
    names = {"list": "['boxes', 'probs']", "dict": "['box', 'cls']",
             "saved": "['output_0', 'output_1']"}[kind]
    assert status == 2 and stderr.count("\n") == 1
    assert "--model-output scores" in stderr and names in stderr


def test_export_and_evaluate_take_one_head_of_several(image_dir, tmp_path, capsys):
    model = _two_head_model("list")
    path = tmp_path / "heads.keras"
    model.save(path)
    # Field test: without a head, export told of a Python score's `output=`.
    status, _, stderr = _run(["export", path, tmp_path / "none", "--num-masks", 30], capsys)
    assert status == 2 and "pass --model-output NAME_OR_INDEX to say which" in stderr
    status, _, stderr = _run(
        ["export", path, tmp_path / "served", "--num-masks", 30, "--model-output", "probs"],
        capsys,
    )
    assert status == 0, stderr
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "served" / "1"))
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    head = keras.Model(model.inputs[0], model.outputs[1])
    expected = keras_rise.RiseExplainer(head, num_masks=30).explain(images)
    np.testing.assert_allclose(served["saliency"].numpy(), expected, atol=1e-5)
    status, stdout, stderr = _run(
        ["evaluate", path, image_dir / "a.png", "--model-output", "1", "--num-masks", 30,
         "--json"],
        capsys,
    )
    assert status == 0, stderr
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    (row,) = json.loads(stdout)["per_image"]
    probs = keras.ops.convert_to_numpy(head(image[None]))[0]
    assert row["class_id"] == int(probs.argmax())
    np.testing.assert_allclose(row["score"], probs.max(), rtol=1e-5)


def test_two_axis_grid_reads_channel_less_models_from_photos_and_arrays(tmp_path, capsys):
    # A model of (H, W) grayscale images without a channel axis: with a
    # two-entry --grid-size its inputs are images, from a photo or a .npy file.
    inputs = keras.Input((28, 28))
    head = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, head(keras.layers.Flatten()(inputs)))
    weights = np.zeros((28 * 28, 3), np.float32)
    corner = np.zeros((28, 28), np.float32)
    corner[-8:, -8:] = 0.1
    weights[:, 0] = corner.ravel()
    head.set_weights([weights, np.zeros(3, np.float32)])
    path = tmp_path / "digits.keras"
    model.save(path)
    Image.fromarray(np.full((56, 56), 255, np.uint8)).save(tmp_path / "white.png")
    np.save(tmp_path / "white.npy", np.ones((28, 28), np.float32))
    options = ["--grid-size", "7,7", "--num-masks", 128, "--class-id", 0]
    explainer = keras_rise.RiseExplainer(model, num_masks=128, grid_size=(7, 7))
    expected = explainer.explain(np.ones((28, 28), np.float32), targets=0, verbose=0)
    for name in ("white.png", "white.npy"):
        out = tmp_path / name.replace(".", "_")
        status, _, stderr = _run(["explain", path, tmp_path / name, "--out", out] + options,
                                 capsys)
        assert status == 0, stderr
        saliency = np.load(out / "white.npy")
        if name.endswith(".npy"):
            np.testing.assert_allclose(saliency, expected, atol=1e-5)
        else:  # the map over the photo, at the photo's own size
            assert saliency.shape == (56, 56)
            peak = np.unravel_index(saliency.argmax(), saliency.shape)
            assert min(peak) >= 36, peak  # in the bottom-right corner the model reads
    # A folder of both kinds: explaining one would leave the other out.
    folder = tmp_path / "both"
    folder.mkdir()
    for name in ("white.png", "white.npy"):
        (folder / name).write_bytes((tmp_path / name).read_bytes())
    status, _, stderr = _run(["explain", path, folder, "--out", tmp_path / "b"] + options,
                             capsys)
    assert status == 2 and "both images and .npy arrays" in stderr
    assert len(stderr.splitlines()) == 1


def test_the_square_series_warning_names_the_flag(tmp_path, capsys):
    # Field test: the command's warning said "pass grid_size=(7, 7)", the
    # Python spelling.
    inputs = keras.Input((28, 28))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "square.keras")
    np.save(tmp_path / "x.npy", np.ones((28, 28), np.float32))
    status, _, stderr = _run(["explain", tmp_path / "square.keras", tmp_path / "x.npy",
                              "--out", tmp_path / "o", "--num-masks", 16], capsys)
    assert status == 0, stderr
    assert "pass --grid-size 7,7 (a grid of two axes)" in stderr and "grid_size=" not in stderr
    # Field test: a photo with --preprocess for this model was refused
    # without the hint that it may be a grayscale image model.
    status, _, stderr = _run(["explain", tmp_path / "square.keras", EXAMPLE_IMAGES /
                              "digit_00.png", "--out", tmp_path / "q", "--preprocess", "tf"],
                             capsys)
    assert status == 2 and len(stderr.splitlines()) == 1
    assert "--preprocess is for image files" in stderr and "pass --grid-size 7,7" in stderr
    # Errors too: a grid of three axes for images.
    status, _, stderr = _run(["explain", EXAMPLE_IMAGES / "digit_00.png", "--out",
                              tmp_path / "p", "--grid-size", "7,7,7"], capsys)
    assert status == 2 and "Received: --grid-size 7,7,7." in stderr


def test_export_and_evaluate_take_channel_less_models_with_a_two_axis_grid(tmp_path, capsys):
    keras.utils.set_random_seed(4)  # not the weights that earlier tests leave
    inputs = keras.Input((28, 28))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    path = tmp_path / "digits.keras"
    model.save(path)
    photo = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(photo)
    # Without a two-axis grid each command says how to read them as images.
    for argv in (["explain", path, photo, "--out", tmp_path / "o"],
                 ["export", path, tmp_path / "e"],
                 ["evaluate", path, photo]):
        status, _, stderr = _run(argv, capsys)
        assert status == 2 and "--grid-size 7,7" in stderr and len(stderr.splitlines()) == 1
    grid = ["--grid-size", "7,7", "--num-masks", 64]
    status, stdout, stderr = _run(["export", path, tmp_path / "e"] + grid, capsys)
    assert status == 0, stderr
    signature = __import__("tensorflow").saved_model.load(str(tmp_path / "e" / "1"))
    spec = signature.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 28, 28]
    status, stdout, stderr = _run(["evaluate", path, photo, "--json"] + grid, capsys)
    assert status == 0, stderr
    row = json.loads(stdout)["per_image"][0]
    image = np.full((28, 28), 200 / 255, np.float32)
    saliency = keras_rise.RiseExplainer(model, num_masks=64, grid_size=(7, 7)).explain(
        image, targets=row["class_id"], verbose=0)
    expected = keras_rise.metrics.deletion(model, image, saliency, targets=row["class_id"])
    # The map of a uniform image has near-ties, whose order rounding may swap
    # (the AUCs once differed by 4e-5 under other weights).
    assert abs(row["deletion_auc"] - float(expected.auc)) < 5e-4


def test_min_score_without_detections_and_signal_models_get_plain_refusals(
    signal_model_file, tmp_path, capsys
):
    status, _, stderr = _run(
        ["explain", EXAMPLE_IMAGES / "digit_00.png", "--out", tmp_path / "o", "--min-score", 0.3],
        capsys,
    )
    assert status == 2 and "--min-score is for detectors" in stderr
    # A (40, 2) signal model could not be a grayscale image: no --grid-size hint.
    path = signal_model_file
    status, _, stderr = _run(["evaluate", path, EXAMPLE_IMAGES / "digit_00.png"], capsys)
    assert status == 2 and "must take one (batch, height, width, channels)" in stderr
    assert "--grid-size" not in stderr
    # Field test: it did not say that evaluate is for images only.
    assert "keras-rise evaluate takes image models; the metrics of other inputs" in stderr


_CUSTOM_MODULE = '''
import keras


@keras.saving.register_keras_serializable(package="{name}")
class Halve(keras.layers.Layer):
    def call(self, x):
        return x * 0.5


class Shift(keras.layers.Layer):  # not registered: found through custom_objects
    def call(self, x):
        return x - 0.25


class Net(keras.Model):  # a subclassed model
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.head(self.pool(self.conv(Shift()(Halve()(x)))))
'''


def _custom_module(folder, name):
    import importlib.util

    path = folder / f"{name}.py"
    path.write_text(_CUSTOM_MODULE.format(name=name))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


def test_custom_objects_load_models_of_custom_layers(image_dir, tmp_path, capsys, monkeypatch):
    # Field test: a .keras file of custom layers (or of a subclassed model,
    # such as mtcnn's ONet) could not be explained from the command line:
    # Keras' refusal was cut off mid-sentence and nothing could import them.
    path, module = _custom_module(tmp_path, "rise_custom_a")
    inputs = keras.Input((32, 32, 3))
    x = module.Shift()(module.Halve()(inputs))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    functional = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    functional.save(tmp_path / "layers.keras")
    subclassed = module.Net()
    subclassed(np.zeros((1, 32, 32, 3), np.float32))  # built on (None, 32, 32, 3)
    subclassed.save(tmp_path / "subclassed.keras")
    image = loading.load_image(image_dir / "a.png", (None, 32, 32, 3))
    for name, model in (("layers", functional), ("subclassed", subclassed)):
        file = tmp_path / f"{name}.keras"
        status, _, stderr = _run(["explain", file, image_dir, "--out", tmp_path / "o"], capsys)
        assert status == 2 and stderr.count("\n") == 1
        assert "'rise_custom_a'" in stderr and "--custom-objects rise_custom_a" in stderr
        expected = keras_rise.RiseExplainer(model, num_masks=40, seed=2).explain(image)
        # By the path of the .py file, and by module name from the current folder.
        monkeypatch.chdir(tmp_path)
        for spec in (path, "rise_custom_a"):
            out = tmp_path / f"out_{name}_{pathlib.Path(spec).suffix}"
            status, _, stderr = _run(
                ["explain", file, image_dir / "a.png", "--out", out, "--num-masks", 40,
                 "--seed", 2, "--map-size", "input", "--custom-objects", spec],
                capsys,
            )
            assert status == 0, stderr
            np.testing.assert_allclose(np.load(out / "a.npy"), expected, atol=1e-5)
    status, stdout, stderr = _run(
        ["evaluate", tmp_path / "subclassed.keras", image_dir / "a.png", "--num-masks", 30,
         "--custom-objects", path, "--json"],
        capsys,
    )
    assert status == 0, stderr
    (row,) = json.loads(stdout)["per_image"]
    probs = keras.ops.convert_to_numpy(subclassed(image[None]))[0]
    assert row["class_id"] == int(probs.argmax())
    loaded, shape = loading.load_model(tmp_path / "subclassed.keras", custom_objects=str(path))
    assert shape == (None, 32, 32, 3) and len(loaded.inputs) == 1


def test_a_custom_layer_of_a_script_is_said_to_be_the_scripts(tmp_path, capsys, monkeypatch):
    # Field test: Keras saves no module for a class of the script that saved
    # the model, and the advice took the module of the layer's dtype policy
    # instead ("of module 'keras' ... pass --custom-objects keras").
    class Double(keras.layers.Layer):
        __module__ = "__main__"

        def call(self, x):
            return 2 * x

    keras.saving.register_keras_serializable("rise_script_d")(Double)
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(Double()(inputs))).save(tmp_path / "d.keras")
    monkeypatch.delitem(keras.saving.get_custom_objects(), "rise_script_d>Double")
    with pytest.raises(loading.LoadError) as error:
        loading.load_model(tmp_path / "d.keras", images_only=False)
    assert "custom class 'Double' (defined in the script that saved it)" in str(error.value)
    assert "'keras'" not in str(error.value)
    # Field test: a legacy .h5 gave Keras' "Unknown layer" with no word of the option.
    keras.saving.register_keras_serializable("rise_script_d")(Double)
    keras.Model(inputs, keras.layers.Dense(2)(Double()(inputs))).save(tmp_path / "d.h5")
    monkeypatch.delitem(keras.saving.get_custom_objects(), "rise_script_d>Double")
    with pytest.raises(loading.LoadError, match=r"d.h5: the model uses the custom layer "
                       r"'Double', which is not imported; pass custom_objects='MODULE'"):
        loading.load_model(tmp_path / "d.h5", images_only=False)


def _rewritten(source, target, change):
    """A copy of the .keras file `source` whose config.json `change` edits."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for name in original.namelist():
            data = original.read(name)
            if name == "config.json":
                data = json.dumps(change(json.loads(data))).encode()
            copy.writestr(name, data)
    return target


def test_files_of_converters_are_told_what_to_give_instead(tmp_path):
    # Field test (models from PyTorch, through onnx2tf and onnx2keras): a Keras
    # 2 file was told to pass "--custom-objects tf_keras.src.engine.functional",
    # which then failed; a Lambda's function saved under 'builtins' was told
    # to pass "--custom-objects builtins".
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.keras")

    def keras_2(config):
        config["module"] = "tf_keras.src.engine.functional"
        return config

    def builtin_function(config):
        config["config"]["layers"][1]["config"]["activation"] = {
            "module": "builtins", "class_name": "function", "config": "target_layer",
            "registered_name": "function",
        }
        return config

    def users_module(config):  # a module of the user's that happens to be named so
        layer = config["config"]["layers"][1]
        layer.update(module="utils.tf_keras", class_name="MyDense", registered_name="MyDense")
        return config

    for change, told in (
        (keras_2, r"k.keras: the model was saved by Keras 2 .*give its SavedModel folder"),
        (users_module, r"k.keras: the model uses the custom class 'MyDense' \(of module "
         r"'utils.tf_keras'\), which is not imported; pass custom_objects='utils.tf_keras'"),
        (builtin_function, r"k.keras: the model uses the function 'target_layer', saved "
         r"without a module .*or give the model's SavedModel folder instead"),
    ):
        path = _rewritten(tmp_path / "m.keras", tmp_path / "k.keras", change)
        with pytest.raises(loading.LoadError, match=told):
            loading.load_model(path, images_only=False)


def test_loading_drops_keras_optimizer_warnings(tmp_path, monkeypatch):
    # Field test: every command on a model wrapping a compiled, trained model
    # warned "Skipping variable loading for optimizer 'rm_sprop', ..." (Keras
    # warns while it loads; nothing is trained here). Other warnings pass.
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.keras")
    load = keras.saving.load_model

    def warning_load(*args, **kwargs):
        warnings.warn("Skipping variable loading for optimizer 'rm_sprop', because ...")
        warnings.warn("something else")
        return load(*args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", warning_load)
    with pytest.warns(UserWarning) as caught:
        loading.load_model(tmp_path / "m.keras", images_only=False)
    assert [str(w.message) for w in caught] == ["something else"]


def test_custom_objects_registered_by_another_module(tmp_path, monkeypatch):
    # Field test: a class registered under a package by the user's own file
    # (not by the module defining it) was not found by passing its module,
    # as the error advises, and a .py file could not import the files beside it.
    (tmp_path / "rise_third_c.py").write_text(
        "import keras\n\n\nclass Triple(keras.layers.Layer):\n"
        "    def call(self, x):\n        return 3 * x\n"
    )
    (tmp_path / "rise_register_c.py").write_text(
        "import keras\nfrom rise_third_c import Triple\n\n"
        "keras.saving.register_keras_serializable('rise_pkg_c')(Triple)\n"
    )
    for name in ("rise_third_c", "rise_register_c"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.chdir(tmp_path.parent)  # neither file is in the current folder
    assert loading.import_custom_objects(tmp_path / "rise_register_c.py") == {}
    triple = sys.modules["rise_third_c"].Triple
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(triple()(inputs)))
    model.save(tmp_path / "triple.keras")
    monkeypatch.delitem(keras.saving.get_custom_objects(), "rise_pkg_c>Triple")
    loaded, _ = loading.load_model(
        tmp_path / "triple.keras", images_only=False,
        custom_objects=str(tmp_path / "rise_third_c.py"),
    )
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_custom_objects_refusals_are_one_line(image_dir, tmp_path, capsys):
    path, module = _custom_module(tmp_path, "rise_custom_b")
    unbuilt = module.Net()
    unbuilt(keras.ops.zeros((1, 32, 32, 3)))
    unbuilt.save(tmp_path / "net.keras")
    (tmp_path / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    cases = [
        ("no_such_module_of_ours", "--custom-objects no_such_module_of_ours: no module"),
        (tmp_path / "missing.py", "missing.py: no such file"),
        (tmp_path / "broken.py", "failed on import (RuntimeError: no GPU here)"),
    ]
    for spec, message in cases:
        status, _, stderr = _run(
            ["explain", tmp_path / "net.keras", image_dir, "--out", tmp_path / "o",
             "--custom-objects", spec],
            capsys,
        )
        assert status == 2 and message in stderr and stderr.count("\n") == 1, stderr
    with pytest.raises(loading.LoadError, match="custom_objects='no_such_module_of_ours'"):
        loading.import_custom_objects(["no_such_module_of_ours"])

    # A subclassed model that builds itself with no shape given, as mtcnn's
    # ONet does, records none: refused with what to do instead.
    class Bare(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.head = keras.layers.Dense(2)

        def build(self, input_shape=(None, 8, 8, 3)):
            self.head.build((None, input_shape[-1]))
            self.built = True

        def call(self, x):
            return self.head(keras.ops.mean(x, axis=(1, 2)))

    bare = Bare()
    bare.build()
    bare.save(tmp_path / "bare.keras")
    with pytest.raises(loading.LoadError, match="does not record the shape of its input"):
        loading.load_model(tmp_path / "bare.keras", custom_objects={"Bare": Bare})
    # The classes and functions a module defines, not those it imports.
    found = loading.import_custom_objects(path)
    assert set(found) == {"Halve", "Shift", "Net"}


def test_a_model_that_rescales_its_pixels_gets_them_raw(tmp_path, capsys):
    # Field test: a model built as Keras' image classification guide builds
    # it (augmentation, then Rescaling(1/255), trained on
    # image_dataset_from_directory's [0, 255] pixels) was given [0, 1]
    # pixels: the same class for every image, no warning.
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal")])
    model = keras.Sequential([
        keras.Input((32, 32, 3)), augment, keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    path = tmp_path / "rescales.keras"
    model.save(path)
    photo = (np.random.default_rng(4).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    status, stdout, stderr = _run(
        ["explain", path, tmp_path / "a.png", "--out", tmp_path / "o", "--num-masks", 40,
         "--json"],
        capsys,
    )
    assert status == 0, stderr
    expected = keras_rise.RiseExplainer(model, num_masks=40).explain(photo.astype(np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "o" / "a.npy"), expected, atol=1e-5)
    probs = model.predict(photo[None].astype(np.float32), verbose=0)[0]
    assert json.loads(stdout)["images"][0]["score"] == pytest.approx(probs.max(), abs=1e-5)
    # Second field test: --preprocess tf fed such a model [-1, 1], a wrong
    # class, exit 0.
    status, _, stderr = _run(
        ["explain", path, tmp_path / "a.png", "--out", tmp_path / "p", "--num-masks", 40,
         "--preprocess", "tf"],
        capsys,
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "--preprocess tf: this model scales its pixels itself" in stderr
    # [-1, 1] by the model's own layer too, and ImageNet's means in [0, 255]
    # (ConvNeXt's first layer); a Rescaling after other layers, by another
    # factor, or a Normalization of pixels in [0, 1] is not the pixels' scaling.
    inputs = keras.Input((8, 8, 3))
    for layers, raw in (
        ([keras.layers.Rescaling(1 / 127.5, offset=-1)], True),
        ([keras.layers.Normalization(mean=[123.7, 116.3, 103.5], variance=[3409, 3249, 3262])],
         True),
        ([keras.layers.Normalization(mean=[0.49, 0.46, 0.41], variance=[0.05, 0.05, 0.05])],
         False),
        ([keras.layers.Conv2D(2, 3), keras.layers.Rescaling(1 / 255)], False),
        ([keras.layers.Rescaling(2.0)], False),
        # Field test: caffe-style inputs over 128 were read as [0, 255]
        # pixels (1/128 is within 1% of 2/255), and --preprocess caffe refused.
        ([keras.layers.Rescaling(1 / 128)], False),
        ([keras.layers.Rescaling(1 / 255, offset=-0.5)], True),
    ):
        x = inputs
        for layer in layers:
            x = layer(x)
        functional = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
        assert keras_rise.preprocessing.rescales_pixels_itself(functional) is raw
        expected_range = (0.0, 255.0) if raw else (0.0, 1.0)
        assert keras_rise.Preprocessing.for_model(functional).input_range == expected_range
    # Third (MobileNetV3's Rescaling(1/127.5, -1)): --input-range 0 1 gave it
    # an almost black image, a wrong class, exit 0. 0 255 is what it takes.
    for flags, message in [([0, 1], "--input-range 0 1: this model scales its pixels itself"),
                           ([0, 255], "")]:
        status, _, stderr = _run(
            ["explain", path, tmp_path / "a.png", "--out", tmp_path / "r", "--num-masks", 40,
             "--input-range", *flags],
            capsys,
        )
        assert status == (2 if message else 0) and stderr.count("\n") == bool(message)
        assert message in stderr


def test_a_binary_classifier_is_explained_as_its_two_classes(tmp_path, capsys):
    # Field test: a Dense(1, "sigmoid") classifier was "class 0" with class
    # 1's probability for every image, and its class 0 could not be asked for.
    photos = (np.random.default_rng(6).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    for index, photo in enumerate(photos):
        Image.fromarray(photo).save(tmp_path / f"{index}.png")
    images = photos.astype(np.float32) / 255
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    for activation in ("sigmoid", None):
        unit = keras.layers.Dense(1, activation=activation)
        model = keras.Model(inputs, unit(pooled))
        # Weights that give one image each class: the bias between the two.
        logits = keras.ops.convert_to_numpy(keras.Model(inputs, pooled)(images)) @ (
            keras.ops.convert_to_numpy(unit.kernel)
        )
        unit.bias.assign([-float(np.mean(logits))])
        p = keras.ops.convert_to_numpy(model(images))[:, 0]
        path = tmp_path / f"{activation}.keras"
        model.save(path)
        explainer = keras_rise.RiseExplainer(model, num_masks=40)
        for extra, class_ids in (([], None), (["--class-id", 0], 0)):
            out = tmp_path / f"o_{activation}_{class_ids}"
            status, stdout, stderr = _run(
                ["explain", path, tmp_path / "0.png", tmp_path / "1.png", "--out", out,
                 "--num-masks", 40, "--json"] + extra,
                capsys,
            )
            assert status == 0, stderr
            rows = json.loads(stdout)["images"]
            if activation is None:  # a regressor: its one value, as it was
                assert [row["class_id"] for row in rows] == [0, 0]
                np.testing.assert_allclose([row["score"] for row in rows], p, atol=1e-5)
                continue
            predicted = (p >= 0.5).astype(int)
            assert sorted(predicted.tolist()) == [0, 1]
            chosen = predicted if class_ids is None else np.zeros(2, int)
            assert [row["class_id"] for row in rows] == chosen.tolist()
            np.testing.assert_allclose(
                [row["score"] for row in rows], np.where(chosen == 1, p, 1 - p), atol=1e-5
            )
            expected = explainer.explain(images, targets=keras_rise.scores.BinaryScore(class_ids))
            maps = np.stack([np.load(out / f"{index}.npy") for index in range(2)])
            np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_a_regressor_of_one_value_per_image_is_explained_by_the_commands(tmp_path, capsys):
    # Field test: a (batch,) output was refused ("keras-rise explains a
    # classifier here"), while a (batch, 1) one and `keras-rise export` took it.
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Reshape(())(keras.layers.Dense(1)(pooled)))
    model.save(tmp_path / "value.keras")
    photo = (np.random.default_rng(2).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    image = photo.astype(np.float32) / 255
    status, stdout, stderr = _run(
        ["explain", tmp_path / "value.keras", tmp_path / "a.png", "--out", tmp_path / "o",
         "--num-masks", 40, "--json"], capsys,
    )
    assert status == 0, stderr
    row = json.loads(stdout)["images"][0]
    value = float(keras.ops.convert_to_numpy(model(image[None]))[0])
    assert row["class_id"] == 0 and row["score"] == pytest.approx(value, abs=1e-5)
    expected = keras_rise.RiseExplainer(model, num_masks=40).explain(
        image, targets=keras_rise.scores.OutputScore()
    )
    np.testing.assert_allclose(np.load(tmp_path / "o" / "a.npy"), expected, atol=1e-5)
    # Field test: its table read "rank 1 class 0 score ...": a value has no class.
    status, stdout, stderr = _run(
        ["explain", tmp_path / "value.keras", tmp_path / "a.png", "--out", tmp_path / "o",
         "--num-masks", 40], capsys,
    )
    assert status == 0, stderr
    assert stdout.splitlines()[:2] == [f"{'image':<24} {'value':>10}", f"{'a.png':<24} "
                                       f"{value:>10.4f}"]
    status, stdout, stderr = _run(
        ["evaluate", tmp_path / "value.keras", tmp_path / "a.png", "--num-masks", 40,
         "--json"], capsys,
    )
    assert status == 0, stderr
    assert json.loads(stdout)["per_image"][0]["score"] == pytest.approx(value, abs=1e-5)


def test_a_binary_segmenter_is_explained_as_its_two_classes(tmp_path, capsys):
    # Field test: a one-channel sigmoid segmenter's --class-id 1 was refused,
    # "the model's one output unit is not a sigmoid".
    photo = (np.random.default_rng(7).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    image = photo.astype(np.float32) / 255
    inputs = keras.Input((32, 32, 3))
    probabilities = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    model = keras.Model(inputs, probabilities(inputs))
    model.save(tmp_path / "seg.keras")
    explainer = keras_rise.RiseExplainer(model, num_masks=40)
    whole = keras_rise.scores.RegionScore(0, region=(0, 0, 32, 32))
    mean = float(np.mean(keras.ops.convert_to_numpy(model(image[None]))))
    for class_id in (0, 1):
        out = tmp_path / str(class_id)
        status, stdout, stderr = _run(
            ["explain", tmp_path / "seg.keras", tmp_path / "a.png", "--out", out,
             "--num-masks", 40, "--json", "--class-id", class_id], capsys,
        )
        assert status == 0, stderr
        row = json.loads(stdout)["images"][0]
        assert row["score"] == pytest.approx(mean if class_id else 1 - mean, abs=1e-5)
        expected = explainer.explain(image, targets=whole)  # class 1's: the mean p
        np.testing.assert_allclose(
            np.load(out / "a.npy"), expected if class_id else 1 - expected, atol=1e-5
        )
    # Field test: without --class-id the whole output's top class was
    # explained, mostly the background (1 - p). The default is class 1, the
    # segmenter's own channel, whichever mean is larger; --top-k 2 gives both.
    kernel, bias = probabilities.get_weights()
    faint = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    background = keras.Model(inputs, faint(inputs))
    faint.set_weights([kernel, bias - 4.0])  # p well below 1/2 everywhere
    assert float(np.mean(keras.ops.convert_to_numpy(background(image[None])))) < 0.2
    background.save(tmp_path / "faint.keras")
    for path in (tmp_path / "seg.keras", tmp_path / "faint.keras"):
        status, stdout, stderr = _run(
            ["explain", path, tmp_path / "a.png", "--out", tmp_path / "d", "--num-masks", 40,
             "--json"], capsys,
        )
        assert status == 0, stderr
        assert [row["class_id"] for row in json.loads(stdout)["images"]] == [1]
    status, stdout, _ = _run(
        ["explain", tmp_path / "faint.keras", tmp_path / "a.png", "--out", tmp_path / "k",
         "--num-masks", 40, "--json", "--top-k", 2], capsys,
    )
    assert [row["class_id"] for row in json.loads(stdout)["images"]] == [0, 1]
    # Its export served the top class, the background, as explain once did:
    # it serves class 1, the channel's mean probability, and its map.
    import tensorflow as tf

    status, stdout, stderr = _run(
        ["export", tmp_path / "faint.keras", tmp_path / "served", "--num-masks", 40], capsys
    )
    assert status == 0, stderr
    assert "explain_class" not in stdout
    served = tf.saved_model.load(str(tmp_path / "served" / "1"))
    result = served.signatures["serving_default"](images=tf.constant(image[None]))
    faint_mean = float(np.mean(keras.ops.convert_to_numpy(background(image[None]))))
    assert result["class_id"].numpy().tolist() == [1]
    assert float(result["score"][0]) == pytest.approx(faint_mean, abs=1e-5)
    np.testing.assert_allclose(
        result["saliency"][0].numpy(),
        keras_rise.RiseExplainer(background, num_masks=40).explain(image, targets=whole),
        atol=1e-5,
    )


def test_a_model_of_uint8_images_gets_the_raw_pixels(tmp_path, capsys):
    # Field test: such a model (it scales its pixels itself) was given
    # pixels in [0, 1], cast to 0 and 1: a uniform prediction, no error.
    pixels = keras.Input((32, 32, 3), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(pixels)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(scaled))
    model = keras.Model(pixels, keras.layers.Dense(3, activation="softmax")(pooled))
    path = tmp_path / "uint8.keras"
    model.save(path)
    photo = (np.random.default_rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    assert keras_rise.Preprocessing.for_model(model).input_range == (0.0, 255.0)
    assert keras_rise.Preprocessing.for_model(small_cnn()).is_default
    status, stdout, stderr = _run(
        ["explain", path, tmp_path / "a.png", "--out", tmp_path / "o", "--num-masks", 40,
         "--json"],
        capsys,
    )
    assert status == 0, stderr
    probs = model.predict(photo[None], verbose=0)[0]
    assert json.loads(stdout)["images"][0]["score"] == pytest.approx(probs.max(), abs=1e-5)
    expected = keras_rise.RiseExplainer(model, num_masks=40).explain(photo.astype(np.float32))
    np.testing.assert_allclose(np.load(tmp_path / "o" / "a.npy"), expected, atol=1e-5)
    # The exported explain_image signature reads files the same way.
    import tensorflow as tf

    encoded = tf.stack([tf.io.encode_png(photo)])
    heatmaps = [
        tf.saved_model.load(
            str(keras_rise.export_explainer(model, tmp_path / name, num_masks=8, **options))
        ).signatures["explain_image"](image_bytes=encoded)["heatmap_png"][0].numpy()
        for name, options in (
            ("default", {}),
            ("raw", {"preprocessing": keras_rise.Preprocessing(input_range=(0, 255))}),
        )
    ]
    assert heatmaps[0] == heatmaps[1]


def test_a_reader_that_stops_early_ends_the_command_quietly(monkeypatch, capsys):
    # Field test: `keras-rise explain ... --json | head` ended with
    # "keras-rise: error: [Errno 32] Broken pipe"; Unix tools stop silently
    # with the status of SIGPIPE.
    def reader_gone(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_explain_command", reader_gone)
    monkeypatch.setattr(cli, "_missing_path", lambda args: None)
    assert cli.main(["explain", "--out", "unused", "--num-masks", "1", "x.png"]) == 141
    assert capsys.readouterr().err == ""


def test_top_k_explains_several_classes_of_npy_inputs(tmp_path, capsys):
    # Field test: --top-k was refused for .npy inputs ("for image files"), so
    # a table's or a signal's maps of its other classes needed Python.
    inputs = keras.Input((7, 2))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(flat))
    model.save(tmp_path / "signal.keras")
    batch = np.random.default_rng(0).normal(size=(2, 7, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", batch)
    out = tmp_path / "maps"
    argv = ["explain", str(tmp_path / "signal.keras"), str(tmp_path / "x.npy"), "--out",
            str(out), "--num-masks", "32", "--top-k", "3", "--json"]
    assert cli.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["inputs"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 1, 2, 3]
    explainer = keras_rise.RiseExplainer(model, num_masks=32)
    for row in rows:
        index = int(row["input"].rsplit("[", 1)[1].rstrip("]"))
        expected = explainer.explain(batch[index], targets=row["class_id"])
        np.testing.assert_allclose(np.load(row["map"]), expected, atol=1e-5)
        assert row["map"].endswith(f"x_{index:03d}_class{row['class_id']}.npy")
    assert cli.main(argv[:-3] + ["--top-k", "5"]) == 2
    assert "at most 4" in capsys.readouterr().err
