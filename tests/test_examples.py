"""Smoke tests: each example runs as is, with few masks."""

import pathlib
import subprocess
import sys

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
