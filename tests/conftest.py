"""Tiny models shared by the tests: fast on two CPU cores, no downloads."""

import contextlib
import logging
import os


def _cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Under pytest-xdist each worker gets its share of the cores before TensorFlow
# starts: with its default pools every worker would use them all, and two
# workers on two cores ran 7-10% slower (tests/test_ranks.py and
# tests/test_scores.py, 96 tests, 119-123 s against 108-114 s).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _pool in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_pool, str(max(1, _cores() // _WORKERS)))

# oneDNN's graph rewrites (TF_ENABLE_ONEDNN_OPTS, on by default on x86) cost
# a new compiled loop's first run as much as Grappler's did: its layout pass
# asks the kernel registry about every node (13% of ten explainers' first
# calls in a native profile; tests/test_ranks.py and tests/test_scores.py ran
# in 64.7 and 62.6 s without it, 68.0 and 68.9 s with it). Like Grappler's
# rewrites, they keep what a graph computes, so the tests (and the processes
# they start, which inherit the variable) run without them unless it is set;
# users' programs keep TensorFlow's default. Tests of what a user's own shell
# sees take `users_environment()`.
_SET_FOR_TESTS = [name for name in ("TF_ENABLE_ONEDNN_OPTS",) if name not in os.environ]
for _name in _SET_FOR_TESTS:
    os.environ[_name] = "0"


def users_environment():
    """`os.environ` without the variables this module set for the tests."""
    return {k: v for k, v in os.environ.items() if k not in _SET_FOR_TESTS}


import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The tests' models are tiny, so most of the suite's time is TensorFlow
# building each new compiled loop: tracing it and then Grappler's graph
# rewrites on its first run (a third of each first call: ten explainers of
# the tests' CNN took 18.4 s to their first maps with Grappler, 12.5 s
# without, maps equal to 1e-7). Grappler's rewrites keep what a graph computes, and
# what the tests check is what it computes, so they run without it; users'
# programs keep it (its fusions speed up large models).
# KERAS_RISE_TEST_GRAPPLER=1 runs the suite with it. Python processes that
# the tests start run `GRAPH_OPTIONS` first, to compute what the tests do.
GRAPH_OPTIONS = (
    "import os, tensorflow\n"
    "if os.environ.get('KERAS_RISE_TEST_GRAPPLER') != '1':\n"
    "    tensorflow.config.optimizer.set_experimental_options("
    "{'disable_meta_optimizer': True})\n"
)
exec(GRAPH_OPTIONS)


@keras.saving.register_keras_serializable(package="keras_rise_tests")
class RegionMean(keras.layers.Layer):
    """Two-class scores: the mean intensity of a box, and one minus it."""

    def __init__(self, box, **kwargs):
        super().__init__(**kwargs)
        self.box = tuple(box)

    def call(self, images):
        top, bottom, left, right = self.box
        region = keras.ops.mean(images[:, top:bottom, left:right, :], axis=(1, 2, 3))
        return keras.ops.stack([region, 1.0 - region], axis=-1)

    def get_config(self):
        return {**super().get_config(), "box": self.box}


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml) starts one worker per core, up to four:
    each worker imports TensorFlow (about 2 GB of memory)."""
    return max(1, min(4, _cores()))


def region_model(image_shape=(32, 32, 3), box=(8, 16, 20, 28)):
    inputs = keras.Input(image_shape)
    return keras.Model(inputs, RegionMean(box)(inputs))


def small_cnn(image_shape=(32, 32, 3), num_classes=4, seed=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def cnn():
    return small_cnn()


@pytest.fixture(scope="session")
def images():
    return np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)


@keras.saving.register_keras_serializable(package="keras_rise_tests")
class DarkRegion(keras.layers.Layer):
    """Two-class scores of a model that takes pixels in [-1, 1]: how dark a
    box is (the mean of max(-x, 0): 1 for black, 0 for grey or brighter),
    and one minus it. Given pixels in [0, 1] instead, it sees no darkness."""

    def __init__(self, box, **kwargs):
        super().__init__(**kwargs)
        self.box = tuple(box)

    def call(self, images):
        top, bottom, left, right = self.box
        region = keras.ops.relu(-images[:, top:bottom, left:right, :])
        darkness = keras.ops.mean(region, axis=(1, 2, 3))
        return keras.ops.stack([darkness, 1.0 - darkness], axis=-1)

    def get_config(self):
        return {**super().get_config(), "box": self.box}


def dark_region_model(image_shape=(48, 48, 3), box=(0, 48, 0, 48)):
    inputs = keras.Input(image_shape)
    return keras.Model(inputs, DarkRegion(box)(inputs))


@contextlib.contextmanager
def retracing_warnings():
    """Yields a list that holds, once the block is done, the "retracing"
    warnings TensorFlow logged during it."""
    records, found = [], []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        found.extend(r for r in records if "retracing" in r.getMessage())
