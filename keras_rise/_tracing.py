"""Compiled functions whose traces are counted apart from their twins'.

TensorFlow counts a `tf.function`'s traces by the code of the Python
function it wraps, and after five traces in a row it logs a "retracing"
warning. An object that builds its own compiled function (an explainer's
loop, a metric's curve runner, an engine's mask maker, a regression's fit)
shares that code with every other instance, so many instances, each traced
once per shape, would add up to the warning. Wrapping the function in a
`functools.partial` gives each instance a key of its own.
"""

import functools

import tensorflow as tf


def instance_function(python_function, **options):
    """`tf.function(python_function, **options)`, traced and counted apart
    from other functions of the same code.

    Args:
        python_function: the function (or bound method) to compile.
        **options: `tf.function`'s options; `autograph` defaults to False.

    Returns:
        The `tf.function`.

    Example:

    >>> square = instance_function(lambda x: x * x)
    >>> float(square(tf.constant(3.0)))
    9.0
    """
    options.setdefault("autograph", False)
    return tf.function(functools.partial(python_function), **options)
