"""RiseConfig: one home for the options, their defaults and checks."""

import inspect
import subprocess
import sys

import numpy as np
import pytest

import keras_rise
from keras_rise.config import RiseConfig


def test_dict_round_trip_and_equality():
    config = RiseConfig(num_masks=300, fill_value=np.full((1, 1, 3), 0.5), seed=7)
    assert RiseConfig.from_dict(config.to_dict()) == config
    assert RiseConfig.from_dict(config.to_dict()) != RiseConfig(num_masks=300)
    assert isinstance(config.to_dict()["fill_value"], list)
    assert isinstance(config.fill_value, np.ndarray)
    assert RiseConfig().to_dict() == RiseConfig.defaults()


@pytest.mark.parametrize("front_end", [keras_rise.RiseExplainer, keras_rise.RiseLayer])
def test_front_ends_take_every_option_with_its_default(front_end):
    parameters = inspect.signature(front_end).parameters
    for name, default in RiseConfig.defaults().items():
        assert parameters[name].default == default, name


def test_explainer_and_layer_store_the_same_config(cnn):
    options = dict(num_masks=50, keep_prob=0.4, mask_sampling="stratified")
    explainer = keras_rise.RiseExplainer(cnn, **options)
    layer = keras_rise.RiseLayer(cnn, **options)
    assert explainer.config == layer.config == RiseConfig(**options)


def test_command_line_offers_every_option_with_its_default():
    from keras_rise.cli import _build_parser

    args = _build_parser().parse_args(["explain", "x.png", "--out", "o"])
    for field in RiseConfig.fields():
        if field.metadata["flag"]:
            assert getattr(args, field.name) == field.default, field.name
    args = _build_parser().parse_args(
        ["explain", "x.png", "--out", "o", "--num-masks", "9", "--no-score-regression"]
    )
    assert args.num_masks == 9 and args.score_regression is False


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"num_masks": 0}, ValueError, "num_masks"),
        ({"keep_prob": 1.0}, ValueError, "keep_prob"),
        ({"mask_sampling": "sobol"}, ValueError, "mask_sampling"),
        ({"complementary_masks": True, "keep_prob": 0.3}, ValueError, "keep_prob=0.5"),
        ({"dtype_policy": "float64"}, ValueError, "dtype_policy"),
        ({"jit_compile": 1}, TypeError, "jit_compile"),
        ({"seed": 2.0}, TypeError, r"`seed` must be an int, or None .* Received: seed=2.0"),
        ({"seed": 2**63}, ValueError, "signed 64-bit"),
    ],
)
def test_bad_options_name_themselves(options, error, match):
    with pytest.raises(error, match=match):
        RiseConfig(**options)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match=r"\['num_mask'\]"):
        RiseConfig.from_dict({"num_mask": 3})


def _run_command(*arguments):
    """`python -X importtime -m keras_rise.cli ARGUMENTS`: the result, and
    the modules it imported (`-X importtime` lists them on stderr)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_rise.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    return result, imported


def test_help_lists_the_options_from_the_config():
    result, imported = _run_command("explain", "--help")
    assert result.returncode == 0
    for field in RiseConfig.fields():
        if field.metadata["flag"]:
            assert "--" + field.name.replace("_", "-") in result.stdout
    # `--help` and a usage error answer without importing TensorFlow (its
    # import was nine seconds of a ten-second `--help`).
    assert "keras_rise.config" in imported and not {"tensorflow", "keras"} & imported
    result, imported = _run_command("explain", "--num-masks", "0", "photo.png")
    assert result.returncode == 2
    assert "--num-masks: must be a positive integer, got 0" in result.stderr
    assert "keras_rise.config" in imported and not {"tensorflow", "keras"} & imported


def test_a_missing_path_is_answered_before_tensorflow(tmp_path):
    # The file names a user mistypes: one line, exit 2, no TensorFlow import.
    image = tmp_path / "photo.png"
    image.write_bytes(b"")
    model, other, boxes = tmp_path / "model.keras", tmp_path / "b.png", tmp_path / "boxes.json"
    for arguments, message in (
        (["explain", model, image, "--out", tmp_path / "out"],
         f"{model}: no such file or folder."),
        (["evaluate", image, other], f"{other}: no such file or folder."),
        (["export", model, tmp_path / "out"], f"{model}: no such file or folder."),
        (["evaluate", image, "--boxes", boxes], f"--boxes {boxes}: no such file."),
        # An output folder that cannot be made, too.
        (["explain", image, "--out", image / "out"],
         f"--out {image / 'out'}: a file is there ({image} is a file); give a folder."),
    ):
        result, imported = _run_command(*map(str, arguments))
        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines() if not line.startswith("import ")]
        assert lines == [f"keras-rise: error: {message}"]
        assert not {"tensorflow", "keras"} & imported


def test_a_config_hashes_after_its_module_is_torn_down(monkeypatch):
    # At interpreter exit, a weak cache of compiled loops hashed its keys
    # again after `dataclasses` was gone from the module ("Exception ignored
    # in ... WeakValueDictionary ... 'NoneType' object has no attribute
    # 'fields'" on a test worker's stderr).
    import pickle

    from keras_rise import config as config_module

    config = keras_rise.RiseConfig(num_masks=64)
    expected = hash(config)
    copy = pickle.loads(pickle.dumps(config))
    assert "_hash" not in copy.__dict__ and copy == config and hash(copy) == expected
    monkeypatch.setattr(config_module, "dataclasses", None)
    monkeypatch.setattr(config_module, "np", None)
    assert hash(config) == expected
