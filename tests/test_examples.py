"""Smoke tests: each example runs as is, with few masks.

The examples run in two Python processes, one after another in each (as
`python examples/SCRIPT.py ...` would run them, from their own folder): a
process of its own per example spent most of its time importing TensorFlow.
"""

import json
import pathlib
import subprocess
import sys

import pytest
from conftest import GRAPH_OPTIONS
from PIL import Image

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# Runs each `[script, arguments, folder]` of its JSON argument as `__main__`
# and prints `{script: its stdout}`, with the tests' GRAPH_OPTIONS.
_DRIVER = GRAPH_OPTIONS + """
import contextlib, io, json, os, runpy, sys
printed = {}
for script, arguments, folder in json.loads(sys.argv[1]):
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    sys.argv = [script, *arguments]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        runpy.run_path(script, run_name="__main__")
    printed[os.path.basename(script)] = stdout.getvalue()
print(json.dumps(printed))
"""


def _run(tmp_path, **runs):
    """Runs `name=[arguments]` (examples/name.py) one after another in one
    process, each in `tmp_path / name`; returns `{name: stdout}`."""
    plan = [
        [str(EXAMPLES / f"{name}.py"), [str(a) for a in arguments], str(tmp_path / name)]
        for name, arguments in runs.items()
    ]
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    return {pathlib.Path(name).stem: text for name, text in printed.items()}


def test_the_examples_of_images_signals_and_callbacks(tmp_path):
    printed = _run(
        tmp_path,
        explain_image=["--num-masks", 150, "--out", "overlay.png"],
        fill_values=["--num-masks", 100, "--out", "fill_values.png"],
        explain_signal=["--num-masks", 150, "--epochs", 2, "--out", "s.png"],
        training_callbacks=["--epochs", 2, "--num-masks", 60, "--train-images", 128,
                            "--out", "runs"],
        gallery=["--num-masks", 40, "--out-dir", "figures"],
    )
    assert "predicted digit" in printed["explain_image"]
    # The README's gallery: 8 photos over their overlays; 8 detections, 4 a row.
    figures = tmp_path / "gallery" / "figures"
    assert Image.open(figures / "overlays.png").size == (8 * 192, 2 * 192)
    assert Image.open(figures / "detections.png").size == (4 * 192, 2 * 192)
    assert Image.open(tmp_path / "explain_image" / "overlay.png").size == (64, 64)

    assert 'fill = "blur": map ranges' in printed["fill_values"]
    # A photo column and three fills; a row of masked inputs and two images.
    picture = Image.open(tmp_path / "fill_values" / "fill_values.png")
    assert picture.size == (4 * 192, 24 + 3 * 230)

    assert printed["explain_signal"].count("map peaks at step") == 3
    assert printed["explain_signal"].count("per channel, at step") == 3
    assert Image.open(tmp_path / "explain_signal" / "s.png").size == (640, 3 * 144)

    assert "epoch 2: deletion AUC" in printed["training_callbacks"]
    runs = tmp_path / "training_callbacks" / "runs"
    header = (runs / "history.csv").read_text().splitlines()[0]
    assert "deletion_auc" in header and "insertion_auc" in header
    assert len(list((runs / "png").glob("epoch_002_*.png"))) == 4
    assert list((runs / "logs" / "rise").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_the_examples_of_serving_texts_volumes_videos_and_detectors(tmp_path):
    printed = _run(
        tmp_path,
        export_and_serve=["--export-dir", "served", "--num-masks", 50],
        explain_text=["--num-masks", 100, "--epochs", 2, "--out", "t.html"],
        explain_volume=["--num-masks", 100, "--epochs", 1, "--train-volumes", 48,
                        "--out", "v.png"],
        explain_video=["--num-masks", 100, "--epochs", 1, "--train-clips", 48, "--out", "c.png"],
        # MTCNN's whole pipeline (Keras stages with Python between them) as
        # NumPy code: D-RISE's map of the astronaut's face peaks inside its box.
        explain_python_detector=["--num-masks", 60, "--out", "faces.png"],
    )
    assert "docker run" in printed["export_and_serve"]
    assert "class_id=" in printed["export_and_serve"]
    served = tmp_path / "export_and_serve" / "served"
    assert (served / "1" / "saved_model.pb").is_file()
    assert Image.open(served / "heatmap_from_serving.png").size == (64, 64)

    # Four reviews as token ids, four as text.
    assert printed["explain_text"].count("most salient") == 8
    assert printed["explain_text"].count("as text, most salient") == 4
    html = (tmp_path / "explain_text" / "t.html").read_text()
    assert html.count("<span") == 4 * 20

    assert printed["explain_volume"].count("ranking AUC of the blob's voxels") == 2

    assert printed["explain_video"].count("frame totals peak") == 2
    assert Image.open(tmp_path / "explain_video" / "c.png").size == (8 * 96 + 7 * 4, 2 * 100)

    faces = printed["explain_python_detector"]
    assert "face 0:" in faces and "face 1:" not in faces
    assert "inside the box" in faces and "outside" not in faces
    picture = Image.open(tmp_path / "explain_python_detector" / "faces.png")
    assert picture.size == (256, 256)
