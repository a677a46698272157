"""The bundled demo models: handwritten digits pasted onto photographs.

`examples/train_demo_model.py` trains the classifier and
`examples/train_detector.py` the detector, reproducibly, from data that
scikit-learn and scikit-image ship; the wheel carries the `.keras` files, so
they work offline from any folder.
"""

import importlib.resources
import json
import pathlib

import keras
import tensorflow as tf

DEMO_MODEL = "digits_on_photos"
DEMO_DETECTOR = "digit_detector"


def _saved_models():
    """The folder of the bundled models: the `keras_rise.saved_models`
    package of an installed wheel, or the checkout's `saved_models/` when
    `keras_rise` is imported from the source tree (e.g. Python started in the
    repository's root, whose `keras_rise/` hides the installed package)."""
    try:
        return importlib.resources.files("keras_rise.saved_models")
    except ModuleNotFoundError:
        return pathlib.Path(__file__).resolve().parent.parent / "saved_models"


def demo_model_path():
    """Path of the bundled demo model's `.keras` file.

    Returns:
        A `pathlib.Path`-like object to `digits_on_photos.keras`.
    """
    return _saved_models() / f"{DEMO_MODEL}.keras"


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
    path = _saved_models() / f"{DEMO_MODEL}.json"
    return json.loads(path.read_text())


@keras.saving.register_keras_serializable(package="keras_rise")
class GridDetections(keras.layers.Layer):
    """Decodes a one-stage detector's grid into D-RISE's proposal dict.

    Every cell of a `(batch, rows, cols, 5 + num_classes)` head proposes one
    box: channel 0 is the objectness logit, 1-2 the box centre's offset in
    the cell (logits), 3-4 the log of its width and height over
    `anchor_size`, the rest class logits.

    Args:
        stride: int, pixels per grid cell.
        anchor_size: float, box side in pixels at a size output of 0.

    Returns:
        A dict: `"boxes"` float32 `(batch, rows · cols, 4)` as `(x1, y1, x2,
        y2)` in input pixels, `"class_probs"` `(batch, rows · cols,
        num_classes)` (softmax) and `"objectness"` `(batch, rows · cols)`
        (sigmoid) — what `keras_rise.scores.DetectionScore` reads.
    """

    def __init__(self, stride, anchor_size, **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.anchor_size = float(anchor_size)

    def call(self, head):
        head = tf.cast(head, tf.float32)
        rows, cols = head.shape[1], head.shape[2]
        grid_y, grid_x = tf.meshgrid(
            tf.range(rows, dtype=tf.float32), tf.range(cols, dtype=tf.float32), indexing="ij"
        )
        center_x = (grid_x + tf.sigmoid(head[..., 1])) * self.stride
        center_y = (grid_y + tf.sigmoid(head[..., 2])) * self.stride
        half_w = 0.5 * self.anchor_size * tf.exp(tf.clip_by_value(head[..., 3], -4.0, 4.0))
        half_h = 0.5 * self.anchor_size * tf.exp(tf.clip_by_value(head[..., 4], -4.0, 4.0))
        boxes = tf.stack(
            [center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h], -1
        )
        count = rows * cols
        return {
            "boxes": tf.reshape(boxes, [-1, count, 4]),
            "class_probs": tf.reshape(
                tf.nn.softmax(head[..., 5:]), [-1, count, head.shape[-1] - 5]
            ),
            "objectness": tf.reshape(tf.sigmoid(head[..., 0]), [-1, count]),
        }

    def compute_output_spec(self, head):
        count = head.shape[1] * head.shape[2]
        return {
            "boxes": keras.KerasTensor((head.shape[0], count, 4)),
            "class_probs": keras.KerasTensor((head.shape[0], count, head.shape[-1] - 5)),
            "objectness": keras.KerasTensor((head.shape[0], count)),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "stride": self.stride,
            "anchor_size": self.anchor_size,
        }


def demo_detector_path():
    """Path of the bundled demo detector's `.keras` file."""
    return _saved_models() / f"{DEMO_DETECTOR}.keras"


def load_demo_detector():
    """Loads the bundled demo detector: several digits on a photograph.

    It maps float32 RGB images `(batch, 96, 96, 3)` with pixels in [0, 1]
    to a dict of proposals, one per cell of a 12×12 grid: `"boxes"`
    `(batch, 144, 4)` as `(x1, y1, x2, y2)` pixels, `"class_probs"`
    `(batch, 144, 10)` over the ten digits and `"objectness"` `(batch,
    144)` — the form `keras_rise.scores.DetectionScore` reads;
    `keras_rise.detections` keeps the confident ones.

    Returns:
        A `keras.Model`.

    Example:

    >>> detector = keras_rise.load_demo_detector()
    >>> sorted(detector(np.zeros((1, 96, 96, 3))))
    ['boxes', 'class_probs', 'objectness']
    """
    return keras.saving.load_model(demo_detector_path())


def demo_detector_metrics():
    """The demo detector's recorded test metrics and input description (a dict)."""
    path = _saved_models() / f"{DEMO_DETECTOR}.json"
    return json.loads(path.read_text())
