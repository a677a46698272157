"""How an image file's pixels become what a model takes.

Image files hold pixels in [0, 255]; models take them scaled to [0, 1], to
[-1, 1], or normalised as `keras.applications` models expect. RISE's map is
only right when the model sees its own kind of input, so every front end
that reads image files (the command line, the Beam pipeline, the exported
`explain_image` signature) turns pixels into model inputs through one
`Preprocessing`, and draws its overlays on the original photo.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_rise._checks import PREPROCESSING_MODES

# The modes of `keras.applications.imagenet_utils.preprocess_input`.
# "caffe": RGB to BGR, then each channel less its ImageNet mean (BGR order).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# "torch": [0, 1], then each channel less its ImageNet mean, over its std.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _range(value):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(
            "`input_range` must be two numbers (low, high). "
            f"Received: input_range={value!r}."
        ) from None
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
        raise ValueError(
            "`input_range` must be two finite numbers (low, high), low below high "
            "(black, then white). "
            f"Received: input_range={value!r}."
        )
    return low, high


# Layers that move, flip or resize pixels but keep their scale: passed over
# when looking for a model's own rescaling of its pixels.
_SCALE_KEEPING = (
    keras.layers.InputLayer, keras.layers.RandomFlip, keras.layers.RandomRotation,
    keras.layers.RandomZoom, keras.layers.RandomTranslation, keras.layers.RandomCrop,
    keras.layers.CenterCrop, keras.layers.Resizing,
)


def _is_layer_graph(model):
    """Whether `model` is a Sequential or functional model, whose `layers`
    are in the order they are applied (a subclassed model's are not)."""
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def _layers_in_order(model):
    """A Sequential or functional model's layers, nested ones (a data
    augmentation block) opened, in the order they are applied."""
    for layer in model.layers:
        if _is_layer_graph(layer):
            yield from _layers_in_order(layer)
        else:
            yield layer


def rescales_pixels_itself(model):
    """Whether `model` takes pixels in [0, 255]: a Sequential or functional
    model of one input whose first layer, after any that only move or resize
    pixels (`RandomFlip`, `Resizing`, ...), is `keras.layers.Rescaling` by
    1/255 or 2/255 that takes them to [0, 1] or, with `offset=-1`, [-1, 1]
    (a scale of 2/255 without the offset does not), as Keras'
    image classification guides build them (and `keras.applications`'
    EfficientNet and MobileNetV3), or a `keras.layers.Normalization` whose
    means are those of pixels in [0, 255] (all above 2: ConvNeXt's ImageNet
    means, or a layer adapted to such pixels).

    Args:
        model: a `keras.Model`.

    Returns:
        bool.

    Example:

    >>> model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
    ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
    >>> keras_rise.preprocessing.rescales_pixels_itself(model)
    True
    """
    if not _is_layer_graph(model):
        return False
    if len(getattr(model, "inputs", None) or ()) > 1:
        return False
    for layer in _layers_in_order(model):
        if isinstance(layer, _SCALE_KEEPING):
            continue
        if isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64)
            return bool(np.all(mean > 2.0))
        if not isinstance(layer, keras.layers.Rescaling):
            return False
        scale = np.asarray(keras.ops.convert_to_numpy(layer.scale), np.float64) * 255.0
        offset = np.asarray(keras.ops.convert_to_numpy(layer.offset), np.float64)
        # [0, 255] must land in [0, 1] or [-1, 1]: a scale of 1/128 without
        # the offset of -1 (caffe-style inputs, say) is not pixels' rescaling.
        lands = np.all(offset >= -1.02) and np.all(offset + scale <= 1.02)
        return bool(
            lands and (np.all(np.abs(scale - 1.0) < 0.01) or np.all(np.abs(scale - 2.0) < 0.02))
        )
    return False


@keras.saving.register_keras_serializable(package="keras_rise")
class Preprocessing:
    """Maps image-file pixels in [0, 255] to a model's inputs.

    Either a linear range, `pixel / 255 · (high - low) + low`, or one of the
    `keras.applications` modes:

    - `"tf"`: [-1, 1] (MobileNet, MobileNetV2, Inception, Xception, ...);
    - `"torch"`: [0, 1], less the ImageNet mean, over its standard deviation
      (DenseNet);
    - `"caffe"`: RGB to BGR, less the ImageNet mean per channel (VGG16,
      ResNet50).

    `RiseExplainer.explain` takes model inputs: preprocess the images
    before explaining them, and give `fill_value` in the same units (for
    `"tf"`, `-1.0` is black and `0.0` grey).

    Args:
        input_range: `(low, high)`, the range that [0, 255] maps to
            linearly (`low > high` inverts the pixels). Defaults to
            `(0.0, 1.0)`.
        mode: `None`, `"caffe"`, `"torch"` or `"tf"`; replaces
            `input_range`. Defaults to `None`.

    Example:

    >>> pixels = np.full((2, 2, 3), 255.0)
    >>> keras_rise.Preprocessing(input_range=(-1, 1))(pixels)[0, 0]
    array([1., 1., 1.], dtype=float32)
    >>> keras_rise.Preprocessing(mode="caffe")(pixels)[0, 0]
    array([151.061  , 138.22101, 131.32   ], dtype=float32)
    """

    def __init__(self, input_range=(0.0, 1.0), mode=None):
        if mode is not None and mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"`mode` must be None or one of {', '.join(map(repr, PREPROCESSING_MODES))}. "
                f"Received: mode={mode!r}."
            )
        self.mode = mode
        self.input_range = _range(input_range)
        if mode is not None and self.input_range != (0.0, 1.0):
            raise ValueError(
                f"Pass `mode` or `input_range`, not both: mode={mode!r} fixes the "
                f"range itself. Received: input_range={input_range!r}."
            )

    def __call__(self, pixels):
        """Model inputs from pixels in [0, 255], float32, channels last.

        Args:
            pixels: a NumPy array or a tensor `(..., channels)`.

        Returns:
            The same type and shape, float32.
        """
        if tf.is_tensor(pixels):
            pixels = tf.cast(pixels, tf.float32)
        else:
            pixels = np.asarray(pixels, np.float32)
        channels = pixels.shape[-1]
        if self.mode in ("caffe", "torch") and channels != 3:
            raise ValueError(
                f'preprocess mode "{self.mode}" needs RGB images (3 channels); the '
                f"model takes {channels}. Use an input range instead."
            )
        if self.mode == "caffe":
            return pixels[..., ::-1] - np.asarray(_CAFFE_MEAN_BGR, np.float32)
        if self.mode == "torch":
            mean = np.asarray(_TORCH_MEAN, np.float32)
            std = np.asarray(_TORCH_STD, np.float32)
            return (pixels / np.float32(255.0) - mean) / std
        low, high = (-1.0, 1.0) if self.mode == "tf" else self.input_range
        return pixels * np.float32((high - low) / 255.0) + np.float32(low)

    @classmethod
    def for_model(cls, model, image_input=None):
        """The preprocessing of image files for `model` when none is given:
        [0, 1], or the pixels as they are, [0, 255], for a model that scales
        its pixels itself: one that declares integer images
        (`keras.Input((224, 224, 3), dtype="uint8")`) or whose first layer
        is `keras.layers.Rescaling(1 / 255)` or `(1 / 127.5, offset=-1)`,
        or a `Normalization` by the means of such pixels
        (`rescales_pixels_itself`).

        Args:
            model: the model, as given to `RiseExplainer`.
            image_input: its image input, as `RiseExplainer`'s `image_input`.

        Returns:
            A `Preprocessing`.

        Example:

        >>> keras_rise.Preprocessing.for_model(model).describe()
        '[0, 1]'
        """
        from keras_rise import inputs as inputs_lib

        raw = inputs_lib.ModelInputs(model, image_input).takes_integer_images()
        raw = raw or rescales_pixels_itself(model)
        return cls(input_range=(0.0, 255.0) if raw else (0.0, 1.0))

    @property
    def is_default(self):
        """Whether this is the plain [0, 1] scaling."""
        return self.mode is None and self.input_range == (0.0, 1.0)

    def describe(self):
        """A short text: `"[0, 1]"`, `"[-1, 1]"` or `"caffe"` ..."""
        if self.mode is not None:
            return self.mode
        low, high = self.input_range
        return f"[{low:g}, {high:g}]"

    def get_config(self):
        return {"input_range": list(self.input_range), "mode": self.mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        if self.mode is not None:
            return f"Preprocessing(mode={self.mode!r})"
        return f"Preprocessing(input_range={self.input_range})"
