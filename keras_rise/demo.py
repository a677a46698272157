"""The bundled demo model: handwritten digits pasted onto photographs.

`examples/train_demo_model.py` trains it reproducibly from data that
scikit-learn and scikit-image ship; the wheel carries the `.keras` file, so
it works offline from any folder.
"""

import importlib.resources
import json

import keras

DEMO_MODEL = "digits_on_photos"


def demo_model_path():
    """Path of the bundled demo model's `.keras` file.

    Returns:
        A `pathlib.Path`-like object to `digits_on_photos.keras`.
    """
    return importlib.resources.files("keras_rise.saved_models") / f"{DEMO_MODEL}.keras"


def load_demo_model():
    """Loads the bundled demo model.

    It maps float32 RGB images `(batch, 64, 64, 3)` with pixels in [0, 1]
    to softmax scores over the ten digits `(batch, 10)`.

    Returns:
        A `keras.Model`.

    Example:

    >>> model = keras_rise.load_demo_model()
    >>> model.output_shape
    (None, 10)
    """
    return keras.saving.load_model(demo_model_path())


def demo_model_metrics():
    """The demo model's recorded test metrics and input description (a dict)."""
    path = importlib.resources.files("keras_rise.saved_models") / f"{DEMO_MODEL}.json"
    return json.loads(path.read_text())
