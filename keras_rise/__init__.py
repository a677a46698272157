"""keras_rise: RISE saliency maps for Keras models, compiled with TensorFlow."""

import importlib

from keras_rise import _startup

__version__ = "0.1.0"

# Where each public name is defined: a module of the package, or the module
# of that name itself.
_HOMES = {
    "Preprocessing": "preprocessing",
    "RiseConfig": "config",
    "RiseEngine": "engine",
    "RiseExplainer": "explainer",
    "RiseLayer": "layer",
    "RiseResult": "engine",
    "RiseSums": "estimators",
    "callbacks": "callbacks",
    "estimators": "estimators",
    "explain_dataset": "dataset",
    "export_explainer": "export",
    "generate_masks": "masks",
    "load_demo_detector": "demo",
    "load_demo_model": "demo",
    "masks": "masks",
    "metrics": "metrics",
    "scores": "scores",
    "text": "text",
    "visualize": "visualize",
}


def __getattr__(name):
    """Imports a public name on first use (see `_import_all`)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'keras_rise' has no attribute {name!r}")
    with _startup.quiet_tensorflow_startup():
        module = importlib.import_module(f"keras_rise.{_HOMES[name]}")
    value = module if _HOMES[name] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))


def _import_all():
    """Imports every public name (and with them TensorFlow and Keras, and
    the package's Keras serializables, which loading a saved model needs)."""
    for name in _HOMES:
        __getattr__(name)


_startup.quiet_beam_notices()
_startup.quiet_retracing_notices()
# As a library, the package imports everything at once. The `keras-rise`
# command imports it once its arguments are read (`cli.main`), so that
# `--help` and a usage error answer at once, without TensorFlow.
if not _startup.is_command_line(modules=("keras_rise", "keras_rise.cli")):
    _import_all()

__all__ = list(_HOMES)
