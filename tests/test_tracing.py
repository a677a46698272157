import tensorflow as tf
from conftest import retracing_warnings

from keras_rise._tracing import instance_function


class _Doubler:
    def __init__(self, wrap):
        self.call = wrap(self._double)

    def _double(self, x):
        return 2.0 * x


def _warned(wrap):
    """Retracing warnings while six instances are traced once each."""
    with retracing_warnings() as warned:
        for size in range(1, 7):
            assert _Doubler(wrap).call(tf.ones([size])).shape == (size,)
    return warned


def test_instances_trace_apart_from_their_twins():
    # Plain tf.function counts the six instances' traces together and warns.
    assert _warned(lambda f: tf.function(f, autograph=False))
    assert not _warned(instance_function)
    square = instance_function(lambda x: x * x)
    assert float(square(tf.constant(3.0))) == 9.0
