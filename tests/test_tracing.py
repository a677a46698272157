import logging

import tensorflow as tf

from keras_rise._tracing import instance_function


class _Doubler:
    def __init__(self, wrap):
        self.call = wrap(self._double)

    def _double(self, x):
        return 2.0 * x


def _retracing_warnings(wrap):
    """Retracing warnings while six instances are traced once each."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = tf.get_logger()
    logger.addHandler(handler)
    try:
        for size in range(1, 7):
            assert _Doubler(wrap).call(tf.ones([size])).shape == (size,)
    finally:
        logger.removeHandler(handler)
    return [r for r in records if "retracing" in r.getMessage()]


def test_instances_trace_apart_from_their_twins():
    # Plain tf.function counts the six instances' traces together and warns.
    assert _retracing_warnings(lambda f: tf.function(f, autograph=False))
    assert not _retracing_warnings(instance_function)
    square = instance_function(lambda x: x * x)
    assert float(square(tf.constant(3.0))) == 9.0
