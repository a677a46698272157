"""Smoke tests: each example runs as is, with few masks."""

import pathlib
import subprocess
import sys

import pytest
from PIL import Image

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _run(script, *arguments, cwd):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, arguments)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_explain_image(tmp_path):
    stdout = _run(
        "explain_image.py", "--num-masks", 300, "--out", "overlay.png", cwd=tmp_path
    )
    assert "predicted digit" in stdout
    assert Image.open(tmp_path / "overlay.png").size == (64, 64)


@pytest.mark.slow
def test_export_and_serve(tmp_path):
    stdout = _run(
        "export_and_serve.py",
        "--export-dir",
        "served",
        "--num-masks",
        100,
        cwd=tmp_path,
    )
    assert "docker run" in stdout and "class_id=" in stdout
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
    assert Image.open(tmp_path / "served" / "heatmap_from_serving.png").size == (64, 64)


def test_training_callbacks(tmp_path):
    stdout = _run(
        "training_callbacks.py",
        "--epochs",
        2,
        "--num-masks",
        60,
        "--train-images",
        256,
        "--out",
        "runs",
        cwd=tmp_path,
    )
    assert "epoch 2: deletion AUC" in stdout
    header = (tmp_path / "runs" / "history.csv").read_text().splitlines()[0]
    assert "deletion_auc" in header and "insertion_auc" in header
    assert len(list((tmp_path / "runs" / "png").glob("epoch_002_*.png"))) == 4
    assert list((tmp_path / "runs" / "logs" / "rise").glob("events.out.tfevents.*"))


def test_fill_values(tmp_path):
    stdout = _run(
        "fill_values.py", "--num-masks", 200, "--out", "fill_values.png", cwd=tmp_path
    )
    assert 'fill = "blur": map ranges' in stdout
    # A photo column and three fills; a row of masked inputs and two images.
    assert Image.open(tmp_path / "fill_values.png").size == (4 * 192, 24 + 3 * 230)


def test_explain_signal(tmp_path):
    stdout = _run("explain_signal.py", "--num-masks", 300, "--epochs", 3, "--out", "s.png",
                  cwd=tmp_path)
    assert stdout.count("map peaks at step") == 3
    assert Image.open(tmp_path / "s.png").size == (640, 3 * 144)


@pytest.mark.slow
def test_explain_text(tmp_path):
    stdout = _run("explain_text.py", "--num-masks", 200, "--epochs", 4, "--out", "t.html",
                  cwd=tmp_path)
    assert stdout.count("most salient") == 8  # four reviews as token ids, four as text
    assert stdout.count("as text, most salient") == 4
    assert (tmp_path / "t.html").read_text().count("<span") == 4 * 20


@pytest.mark.slow
def test_explain_volume(tmp_path):
    stdout = _run("explain_volume.py", "--num-masks", 200, "--epochs", 2, "--out", "v.png",
                  cwd=tmp_path)
    assert stdout.count("ranking AUC of the blob's voxels") == 2


@pytest.mark.slow
def test_explain_video(tmp_path):
    stdout = _run("explain_video.py", "--num-masks", 200, "--epochs", 2, "--out", "c.png",
                  cwd=tmp_path)
    assert stdout.count("frame totals peak") == 2
    assert Image.open(tmp_path / "c.png").size == (8 * 96 + 7 * 4, 2 * 100)


@pytest.mark.slow
def test_explain_python_detector(tmp_path):
    # MTCNN's whole pipeline (Keras stages with Python between them) as NumPy
    # code: D-RISE's map of the astronaut's face peaks inside its box.
    stdout = _run(
        "explain_python_detector.py", "--num-masks", 150, "--out", "faces.png", cwd=tmp_path
    )
    assert "face 0:" in stdout and "face 1:" not in stdout
    assert "inside the box" in stdout and "outside" not in stdout
    assert Image.open(tmp_path / "faces.png").size == (256, 256)
