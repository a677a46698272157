"""The bundled detector and D-RISE on it, from Python and the command line."""

import json
import pathlib
import warnings

import numpy as np
import pytest
from PIL import Image

import keras_rise
from keras_rise import cli, scores

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
IMAGES = EXAMPLES / "detections"
TRUTH = json.loads((IMAGES / "detections.json").read_text())


def _iou(a, b):
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector():
    return keras_rise.load_demo_detector()


@pytest.fixture(scope="module")
def bundled():
    names = sorted(TRUTH)
    images = np.stack(
        [np.asarray(Image.open(IMAGES / name), np.float32) / 255.0 for name in names]
    )
    return names, images


def test_bundled_detector_finds_the_bundled_digits(detector, bundled):
    names, images = bundled
    outputs = detector(images)
    assert outputs["boxes"].shape == (len(names), 144, 4)
    assert outputs["class_probs"].shape == (len(names), 144, 10)
    found = scores.detections(outputs)
    matched = total = 0
    for name, kept in zip(names, found):
        for box, label in zip(TRUTH[name]["boxes"], TRUTH[name]["labels"]):
            total += 1
            matched += any(
                d.class_id == label and _iou(d.box, box) >= 0.5 for d in kept
            )
    assert matched / total >= 0.75
    assert keras_rise.demo.demo_detector_path().stat().st_size <= 2 * 2**20


def test_drise_maps_point_into_each_detection(detector, bundled):
    _, images = bundled
    explainer = keras_rise.RiseExplainer(detector, num_masks=300, grid_size=8, seed=1)
    outputs = {key: value.numpy() for key, value in detector(images).items()}
    hits = []
    for index, (image, kept) in enumerate(zip(images, scores.detections(outputs))):
        for detection in kept:
            score = scores.DetectionScore(detection.box, detection.class_id)
            result = explainer.explain_result(image, targets=score)
            # On the unmasked image the detection's own proposal matches best:
            # IoU 1, times its objectness and the cosine of one-hot and probs.
            proposal = np.argmin(np.abs(outputs["boxes"][index] - detection.box).sum(1))
            probs = outputs["class_probs"][index, proposal]
            expected = outputs["objectness"][index, proposal] * (
                probs[detection.class_id] / np.linalg.norm(probs)
            )
            assert result.scores == pytest.approx(expected, rel=1e-4)
            x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
            box = [max(y1, 0), max(x1, 0), min(y2, 96), min(x2, 96)]
            hits.append(keras_rise.metrics.pointing_game(result.saliency, box, 0).hits)
    assert len(hits) >= 6 and np.mean(hits) >= 0.75


def test_detections_keep_the_best_of_overlapping_proposals():
    outputs = {
        "boxes": np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [40, 40, 50, 50]]]),
        "class_probs": np.array([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]]]),
        "objectness": np.array([[0.9, 0.95, 0.9, 0.5]]),
    }
    (found,) = scores.detections(outputs, min_score=0.5)
    # The second box (0.76) overlaps the first (IoU 0.68) and is dropped whatever
    # its class; the last scores 0.3, under min_score.
    assert [(d.class_id, round(d.score, 3)) for d in found] == [(0, 0.81), (1, 0.63)]
    assert found[0].box == (0.0, 0.0, 10.0, 10.0)
    padded = {
        "boxes": np.array([[[0, 0, 4, 4], [5, 5, 9, 9]]]),
        "classes": np.array([[3, -1]]),
        "confidence": np.array([[0.7, 0.9]]),
    }
    (found,) = scores.detections(padded)
    assert [(d.class_id, d.score) for d in found] == [(3, pytest.approx(0.7))]
    # An empty box cannot be a target (DetectionScore refuses it): left out.
    empty = {
        "boxes": np.array([[[6, 6, 6, 9], [0, 0, 4, 4], [9, 9, 5, 12]]]),
        "classes": np.array([[1, 2, 3]]),
        "confidence": np.array([[0.9, 0.8, 0.95]]),
    }
    (found,) = scores.detections(empty)
    assert [d.class_id for d in found] == [2]
    with pytest.raises(ValueError, match="boxes"):
        scores.detections(np.zeros((1, 3)))
    # Whole-number thresholds are numbers like any other; 0 keeps every box
    # that suppression leaves (the last, 0.3, included).
    assert [d.class_id for d in scores.detections(outputs, min_score=0)[0]] == [0, 1, 0]
    assert scores.detections(outputs, min_score=1, max_overlap=1) == [[]]
    # A box format that is not one is refused, not read as another.
    for bad in ("foo", 123):
        with pytest.raises(ValueError, match="box_format"):
            scores.detections(outputs, box_format=bad)
    with pytest.raises(ValueError, match="max_overlap"):
        scores.detections(outputs, max_overlap=1.5)
    with pytest.raises(TypeError, match="min_score"):
        scores.detections(outputs, min_score="0.5")
    with pytest.raises(ValueError, match=r"class_probs.*keys \['boxes'\]"):
        scores.detections({"boxes": outputs["boxes"]})


def _run(argv, capsys):
    capsys.readouterr()  # only what the command writes, not the test's own calls
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_cli_explains_and_evaluates_each_detection(tmp_path, capsys):
    image = IMAGES / "detect_00.png"
    options = ["--num-masks", 100, "--grid-size", 8]
    status, stdout, _ = _run(
        ["explain", image, "--detections", "--out", tmp_path, *options], capsys
    )
    assert status == 0
    found = scores.detections(
        keras_rise.load_demo_detector()(
            np.asarray(Image.open(image), np.float32)[None] / 255.0
        )
    )[0]
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == [f"detect_00_det{i}.png" for i in range(len(found))]
    saliency = np.load(tmp_path / "detect_00_det0.npy")
    expected = keras_rise.RiseExplainer(
        keras_rise.load_demo_detector(), num_masks=100, grid_size=8
    ).explain(
        np.asarray(Image.open(image), np.float32) / 255.0,
        scores.DetectionScore(found[0].box, found[0].class_id),
    )
    np.testing.assert_allclose(saliency, expected, atol=1e-5)
    # The box is drawn in white on the overlay.
    picture = np.asarray(Image.open(tmp_path / "detect_00_det0.png"))
    x1, y1, x2, _ = found[0].box
    top, middle = int(round(y1)), int(round((x1 + x2) / 2))
    if 0 <= top < 96:
        assert (picture[top, middle] == 255).all()

    status, stdout, _ = _run(
        ["evaluate", image, "--detections", "--json", *options], capsys
    )
    assert status == 0
    report = json.loads(stdout)
    assert report["summary"]["detections"] == len(found)
    first = report["per_detection"][0]
    assert first["class_id"] == found[0].class_id
    assert 0.0 <= first["deletion_auc"] < first["insertion_auc"]

    # The same detector exported as a SavedModel: its serving_default returns
    # the dict of boxes and class scores (it was refused for its several outputs).
    keras_rise.load_demo_detector().export(str(tmp_path / "detector"), verbose=False)
    out = tmp_path / "from_savedmodel"
    status, _, stderr = _run(
        ["explain", tmp_path / "detector", image, "--detections", "--out", out, *options],
        capsys,
    )
    assert status == 0, stderr
    np.testing.assert_allclose(np.load(out / "detect_00_det0.npy"), expected, atol=1e-5)


def test_cli_detections_need_a_detector(tmp_path, capsys):
    status, _, stderr = _run(
        ["explain", EXAMPLES / "images" / "digit_00.png", "--detections", "--out", tmp_path,
         "--num-masks", 10, "--min-score", 0.3],
        capsys,
    )
    # The bundled detector, on a one-digit image (its two proposals score 0.49, 0.39).
    assert status == 0 and len(list(tmp_path.glob("digit_00_det*.npy"))) == 2
    # No readable file: no table header alone, the error says it all.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("x.png", "y.png"):
        (broken / name).write_bytes(b"not an image")
    status, stdout, stderr = _run(
        ["explain", broken, "--detections", "--out", tmp_path / "none", "--num-masks", 10],
        capsys,
    )
    assert status == 2 and stdout == "" and "2 of 2 files could not be read" in stderr
    model = tmp_path / "classifier.keras"
    keras_rise.load_demo_model().save(model)
    status, _, stderr = _run(
        ["explain", model, EXAMPLES / "images" / "digit_00.png", "--detections", "--out", tmp_path],
        capsys,
    )
    assert status == 2 and "dict" in stderr and stderr.count("\n") == 1
    # Field test: an image with no detection left the output without a word.
    Image.new("RGB", (96, 96)).save(tmp_path / "black.png")
    missing = "no detection scored 0.5 or more in black.png"
    status, _, stderr = _run(
        ["evaluate", tmp_path / "black.png", "--detections", "--num-masks", 10], capsys
    )
    assert status == 2 and missing in stderr and stderr.count("\n") == 1
    # Field test: explain called an image without detections bad input (exit
    # 2), failing a script that goes photo by photo: an answer, said as one.
    status, stdout, stderr = _run(
        ["explain", tmp_path / "black.png", "--detections", "--out", tmp_path / "none",
         "--num-masks", 10],
        capsys,
    )
    assert status == 0 and f"warning: {missing}; lower --min-score" in stderr
    assert stderr.count("\n") == 1
    assert stdout == f"wrote 0 overlays and maps to {tmp_path / 'none'}\n"  # no empty table
    status, _, stderr = _run(
        ["explain", tmp_path / "black.png", EXAMPLES / "detections" / "detect_00.png",
         "--detections", "--out", tmp_path / "o", "--num-masks", 10],
        capsys,
    )
    assert status == 0 and f"warning: {missing}; lower --min-score to explain it" in stderr


def test_a_target_box_that_matches_no_detection_is_warned_of(detector, bundled):
    # Field test: a box outside the image (or in other coordinates than the
    # detector's) gave a map of noise around 0 without a word.
    _, images = bundled
    explainer = keras_rise.RiseExplainer(detector, num_masks=64, grid_size=8, seed=1)
    found = scores.detections({k: v.numpy() for k, v in detector(images[:1]).items()})[0]
    matched = scores.DetectionScore(found[0].box, found[0].class_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explainer.explain_result(images[0], targets=matched)
    # Scores of one kind share a compiled graph; the warning names the box
    # given, not the first one compiled.
    outside = scores.DetectionScore([200.0, 200.0, 260.0, 260.0], 3)
    with pytest.warns(UserWarning, match=r"Target box 0 \[200.0, 200.0, 260.0, 260.0\] .* class 3"):
        result = explainer.explain_result(images[0], targets=outside)
    assert float(result.scores) < scores.DetectionScore.UNMATCHED
    # A box in [0, 1] on a detector in pixels: objectness keeps the similarity
    # just above 0.
    normalised = scores.DetectionScore(np.asarray(found[0].box) / 96, found[0].class_id)
    with pytest.warns(UserWarning, match="matches no detection"):
        keras_rise.RiseExplainer(detector, num_masks=64, grid_size=8).explain(
            images[0], targets=normalised)


def test_a_box_in_other_coordinates_is_warned_of_on_a_soft_detector():
    # Field test: on a detector of soft objectness, a box in [0, 1] given to
    # a detector in pixels overlapped the proposal at the origin a little
    # (similarity 1.4e-6): no warning, and a map of noise.
    outputs = {
        "boxes": np.array([[[0, 0, 8, 8], [10, 12, 30, 34]]], np.float32),
        "class_probs": np.array([[[0.9, 0.1], [0.2, 0.8]]], np.float32),
        "objectness": np.array([[0.5, 0.6]], np.float32),
    }

    def similarity(score):
        return np.asarray(score(outputs, score.targets_of(outputs)))

    normalised = scores.DetectionScore([0.2, 0.2, 0.4, 0.4], 0)
    assert 1e-6 < similarity(normalised)[0] < 1e-3
    assert "matches no detection" in normalised.unmasked_warning(similarity(normalised))
    # A box on the detection, even a loose one, is a match.
    loose = scores.DetectionScore([8, 10, 30, 30], 1)
    assert 0.1 < similarity(loose)[0]
    assert loose.unmasked_warning(similarity(loose)) is None


def test_a_detector_without_a_detection_score_is_told_its_way(detector, bundled, tmp_path, capsys):
    # Field test: a detector exported, or explained with a class id, was told
    # to pass `output=` to a ClassScore; the command line gave that Python
    # advice too.
    _, images = bundled
    told = r"returns detections .*DetectionScore\(box, class_id\)"
    with pytest.raises(ValueError, match=told):
        keras_rise.RiseExplainer(detector, num_masks=8).explain(images[0], targets=1)
    with pytest.raises(ValueError, match=told):
        keras_rise.export_explainer(detector, tmp_path / "export", num_masks=8)
    status, _, stderr = _run(
        ["export", keras_rise.demo.demo_detector_path(), tmp_path / "cli", "--num-masks", 8],
        capsys,
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "a detector" in stderr and "export_explainer(model, EXPORT_DIR, score=" in stderr
    assert not (tmp_path / "cli").exists()


def test_a_detection_score_on_one_output_names_its_shape(detector, bundled):
    # Field test: `output="boxes"` was told "the model returns EagerTensor".
    _, images = bundled
    explainer = keras_rise.RiseExplainer(detector, num_masks=8, grid_size=8)
    boxes_only = scores.DetectionScore([1, 2, 30, 40], 0, output="boxes")
    with pytest.raises(
        ValueError, match=r"`output='boxes'` selects one array of shape \(batch, 144, 4\)"
    ):
        explainer.explain(images[0], targets=boxes_only)
    with pytest.raises(ValueError, match=r"Received one array of shape \(batch, 64, 4\)"):
        scores.detections(np.zeros((1, 64, 4)))
