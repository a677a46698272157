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
