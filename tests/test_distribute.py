"""Mask-split explanations on 2 replicas equal the single-device maps."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from distributed_worker import explain_all

import keras_rise

TESTS = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def single_device_maps():
    return explain_all()


def _environment(**extra):
    environment = dict(os.environ, PYTHONPATH=str(TESTS), TF_CPP_MIN_LOG_LEVEL="3")
    environment.update(extra)
    return environment


def _assert_equal_maps(result, single_device_maps):
    assert int(result["replicas"]) == 2
    for key, expected in single_device_maps.items():
        np.testing.assert_allclose(result[key], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mirrored_strategy_on_two_devices(tmp_path, single_device_maps):
    out = tmp_path / "maps.npz"
    subprocess.run(
        [sys.executable, str(TESTS / "distributed_worker.py"), "mirrored", str(out)],
        env=_environment(),
        check=True,
        timeout=300,
        capture_output=True,
    )
    _assert_equal_maps(np.load(out), single_device_maps)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_processes(
    tmp_path, single_device_maps
):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
        }
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(TESTS / "distributed_worker.py"),
                    "multi_worker",
                    str(tmp_path / f"maps_{index}.npz"),
                ],
                env=_environment(TF_CONFIG=json.dumps(config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr.decode()[-2000:]
    finally:
        for process in processes:
            process.kill()
    for index in range(2):
        _assert_equal_maps(np.load(tmp_path / f"maps_{index}.npz"), single_device_maps)


def test_strategy_errors(cnn, images):
    with pytest.raises(TypeError, match="tf.distribute.Strategy"):
        keras_rise.RiseExplainer(cnn, strategy="mirrored")
    explainer = keras_rise.RiseExplainer(
        cnn, num_masks=10, strategy=tf.distribute.get_strategy()
    )
    with pytest.raises(ValueError, match="tolerance"):
        explainer.explain(images, tolerance=0.1)
    layer = keras_rise.RiseLayer(
        cnn, num_masks=10, strategy=tf.distribute.get_strategy()
    )
    inputs = keras.Input((32, 32, 3))
    with pytest.raises(ValueError, match="called directly"):
        keras.Model(inputs, layer(inputs)).predict(images, verbose=0)
    dynamic = tf.function(
        layer.call, input_signature=[tf.TensorSpec((None, 32, 32, 3))]
    )
    with pytest.raises(ValueError, match="static batch size"):
        dynamic.get_concrete_function()


class _FailsOnMaskedInput(keras.layers.Layer):
    """Passes the probe on an unmasked image, fails inside the mask loop."""

    def call(self, x):
        tf.debugging.assert_greater(
            tf.reduce_min(x), 0.25, message="this device cannot run the model"
        )
        return x


def test_a_model_failing_on_the_strategy_gives_a_clear_error():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        inputs = keras.Input((16, 16, 3))
        hidden = keras.layers.Flatten()(_FailsOnMaskedInput()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(3, "softmax")(hidden))
    explainer = keras_rise.RiseExplainer(
        model, num_masks=10, batch_size=5, strategy=strategy
    )
    image = np.full((16, 16, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"strategy's devices .*CPU:0.*cannot run"):
        explainer.explain(image, targets=0)
