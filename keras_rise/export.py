"""`export_explainer`: a SavedModel that TF Serving loads next to the model."""

import functools
import pathlib

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks
from keras_rise import scores as scores_lib
from keras_rise import text as text_lib
from keras_rise.config import RiseConfig
from keras_rise.engine import RiseEngine
from keras_rise.explainer import RiseExplainer
from keras_rise import inputs as inputs_lib
from keras_rise.inputs import ModelInputs
from keras_rise.preprocessing import Preprocessing
from keras_rise import visualize


def _jet(values):
    """TensorFlow twin of `visualize.colorize`'s jet ramp, values in [0, 1]."""
    return tf.clip_by_value(
        1.5 - tf.abs(4.0 * (values[..., None] - visualize.JET_CENTRES)), 0.0, 1.0
    )


class _ExplainerModule:
    """The serving signatures, as functions of the RISE engine."""

    def __init__(self, engine, image_shape, score, preprocessing, input_shape):
        self._engine = engine
        self._image_shape = image_shape
        self._score = score
        self._preprocessing = preprocessing
        self._input_shape = (None, *input_shape)

    def _checked(self, inputs):
        """`inputs`, checked at run time against the signature's shape: a
        loaded signature takes a tensor of any shape, and one without its
        batch axis can abort the serving process inside the model's ops. An
        empty batch fails inside the model's ops too (a shape error)."""
        inputs = tf.ensure_shape(inputs, self._input_shape)
        with tf.control_dependencies([
            tf.debugging.assert_positive(
                tf.shape(inputs)[0], message="the request holds no inputs (a batch of 0)"
            )
        ]):
            return tf.identity(inputs)

    def serving_default(self, images):
        images = self._checked(images)
        saliency, targets, scores = self._engine.explain(images, self._score)[:3]
        outputs = {"saliency": saliency, "score": scores}
        if isinstance(self._score, scores_lib.ClassScore):
            outputs["class_id"] = targets
        return outputs

    def explain_class(self, images, class_ids):
        images = self._checked(images)
        class_ids = tf.ensure_shape(class_ids, (None,))
        with tf.control_dependencies([
            tf.debugging.assert_equal(
                tf.shape(class_ids)[0], tf.shape(images)[0],
                message="class_ids must hold one class id per input",
            )
        ]):
            class_ids = tf.identity(class_ids)
        saliency = self._engine.explain(images, self._score, class_ids).saliency
        return {"saliency": saliency}

    def explain_image(self, image_bytes):
        height, width, channels = self._image_shape

        def heatmap_png(encoded):
            decoded = tf.io.decode_image(
                encoded, channels=channels, expand_animations=False
            )
            pixels = tf.cast(decoded, tf.float32)  # [0, 255], the photo's size
            # Antialiased, as PIL's bilinear resizing of the command line and
            # Beam is (to a grey level): a photo shrunk without it aliases.
            resized = tf.image.resize(pixels, (height, width), antialias=True)
            image = self._preprocessing(resized)
            image.set_shape((height, width, channels))
            saliency = self._engine.explain(image[None], self._score).saliency
            # The heatmap is drawn on the photo itself, at its own size.
            saliency = tf.image.resize(saliency[0][..., None], tf.shape(pixels)[:2])[..., 0]
            low, high = tf.reduce_min(saliency), tf.reduce_max(saliency)
            # Drawn flat within float32 rounding, as `visualize.colorize` does.
            spread = high - low
            flat = spread <= visualize.FLAT_SPREAD * tf.maximum(tf.abs(low), tf.abs(high))
            scaled = tf.math.divide_no_nan(saliency - low, tf.where(flat, 0.0, spread))
            photo = pixels[..., :3] / 255.0
            rgb = photo if channels >= 3 else tf.image.grayscale_to_rgb(photo[..., :1])
            blended = 0.5 * rgb + 0.5 * _jet(scaled)
            return tf.io.encode_png(tf.image.convert_image_dtype(blended, tf.uint8))

        pngs = tf.map_fn(
            tf.autograph.experimental.do_not_convert(heatmap_png),
            image_bytes,
            fn_output_signature=tf.string,
            parallel_iterations=1,
        )
        return {"heatmap_png": pngs}


# How a model of no declared input, or of inputs of any size, is exported.
_FIXED_SIZE_HINT = (
    "Export a functional model around it, at the size to serve: inputs = "
    "keras.Input((64, 64, 3)); export_explainer(keras.Model(inputs, model(inputs)), ...)."
)


def export_explainer(
    model,
    export_dir,
    version=1,
    overwrite=False,
    score=None,
    preprocessing=None,
    **explainer_args,
):
    """Writes a RISE explainer for `model` as a SavedModel for TF Serving.

    The SavedModel lands in `export_dir/<version>/`, the layout TF Serving
    watches. Masks are generated inside the graph from the seed, so the
    export is about the size of the model itself. Signatures, with a
    dynamic batch dimension:

    - `serving_default`: `images` float32 `(None, H, W, C)` → `saliency`
      `(None, H, W)` (`(None, H, W, T)` for a score with `T` targets) and
      `score` float32 `(None,)` (`(None, T)`), the score of the unmasked
      image; for the default class score also `class_id` int32 `(None,)`,
      the top class. Models of other inputs take `inputs` of their own
      shape and dtype — `(None, T, C)` signals, `(None, T)` int32 token
      ids, `(None, D, H, W, C)` volumes — and give one saliency value per
      masked position, e.g. `(None, T)` or `(None, D, H, W)`.
    - `explain_class` (class scores of one class per input only): `images`
      (or `inputs`) and `class_ids` int32 `(None,)` → `saliency`.
    - `explain_image` (image models, scores with one target):
      `image_bytes` string `(None,)` of JPEG or PNG files → `heatmap_png`
      string `(None,)`: the heatmap over the decoded photo, at its own
      size. The model sees the photo resized to its input (bilinear,
      antialiased, as the command line and Beam resize it), with pixels
      mapped by `preprocessing`.

    A request of another shape (no batch axis, another image size) is
    refused with an `InvalidArgumentError` that names both shapes, and so is
    an empty batch.

    Args:
        model: the `keras.Model` to explain, of one input of a fixed
            shape, e.g. `(height, width, channels)`. Or a
            `keras_rise.RiseExplainer`: its model, with its options (then
            pass no `explainer_args`). A model of several inputs is
            exported wrapped: `wrapper = keras.Model(inputs,
            keras_rise.RiseLayer(model, image_input=NAME)(inputs))`, then
            Keras' `wrapper.export(EXPORT_DIR)`, a SavedModel serving maps.
        export_dir: folder for the versioned SavedModel.
        version: int, the version subfolder. Defaults to `1`.
        overwrite: bool, replace an existing version. Defaults to `False`.
        score: a `keras_rise.scores.Score`, what the export explains, or
            `None` (default) for `ClassScore()`, each image's top class
            (`OutputScore()` for a model of one value per image, `(batch,)`
            or a linear unit's `(batch, 1)`;
            `BinaryScore()` for a binary classifier's one sigmoid unit).
        preprocessing: a `keras_rise.Preprocessing`: how `explain_image`
            maps a file's pixels in [0, 255] to model inputs. `None`
            (default) scales them to [0, 1], or leaves them as they are for
            a model of uint8 images or one that starts by rescaling its
            pixels (`Preprocessing.for_model`). The other
            signatures take model inputs.
        **explainer_args: the options of `keras_rise.RiseConfig`
            (`num_masks`, `grid_size`, `seed`, ...), as for `RiseExplainer`.

    Returns:
        `pathlib.Path` of the written version folder.

    Example:

    >>> path = keras_rise.export_explainer(model, "rise_export", num_masks=2000,
    ...                                    overwrite=True)
    >>> sorted(tf.saved_model.load(str(path)).signatures)
    ['explain_class', 'explain_image', 'serving_default']
    """
    if isinstance(model, RiseExplainer):
        if explainer_args:
            raise TypeError(
                "Pass a RiseExplainer (whose options are exported) or a model with "
                f"options, not both. Received the explainer and {sorted(explainer_args)}."
            )
        explainer_args = model.config.to_dict()
        model = model.model
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            "`model` must be a keras.Model or a keras_rise.RiseExplainer. Received: "
            f"{type(model).__name__}."
        )
    text_lib.refuse_strings(model, "export_explainer")
    image_input = explainer_args.pop("image_input", None)
    config = RiseConfig.from_dict(explainer_args)
    version = _checks.integer("version", version, minimum=0)
    # A two-entry grid_size reads (height, width) inputs as grayscale images.
    model_inputs = ModelInputs(
        model,
        masked_axes=inputs_lib.masked_axes_of(config.grid_size, config.binary_masks),
        binary_masks=config.binary_masks,
    )
    declared_inputs = getattr(model, "inputs", None) or ()  # none: a subclassed model
    if len(declared_inputs) > 1:
        names = [getattr(x, "name", None) for x in declared_inputs]
        raise ValueError(
            f"export_explainer takes a model with one image input; this one takes "
            f"{len(names)} inputs {names}. Wrap it, wrapper = keras.Model(inputs, "
            "keras_rise.RiseLayer(model, image_input=NAME)(inputs)), and export the "
            "wrapper with Keras: wrapper.export(EXPORT_DIR), a SavedModel that serves "
            "its maps."
        )
    if image_input is not None:
        raise ValueError(
            "`image_input` picks the masked input of a model of several; this model "
            "has one input, which the export masks: leave `image_input` out. "
            f"Received: image_input={image_input!r}."
        )
    image_shape = model_inputs.image_shape()
    if image_shape is None or None in image_shape:
        raise ValueError(
            "`model` must declare a fixed size on every input axis but the batch's, "
            "e.g. keras.Input((64, 64, 3)) or keras.Input((96, 3)), to be exported. "
            f"Received input shape (batch, {', '.join(map(str, image_shape))}). "
            + _FIXED_SIZE_HINT
            if image_shape is not None else
            "`model` must declare its input, e.g. keras.Input((64, 64, 3)), to be "
            f"exported; {type(model).__name__} declares none. " + _FIXED_SIZE_HINT
        )
    tokens = model_inputs.takes_tokens()
    dtype = model_inputs.image_dtype()  # token ids keep theirs, e.g. int64
    spatial, _ = inputs_lib.layout(tf.TensorSpec((None, *image_shape), dtype))
    model_inputs.check_config(config, spatial, tokens, tuple(image_shape))
    is_image = len(image_shape) == 3 and not tokens and not model_inputs.whole_channels
    target = pathlib.Path(export_dir) / str(version)
    existing = _checks.existing_ancestor(target)
    if existing.exists() and not existing.is_dir():
        raise ValueError(
            f"`export_dir` {export_dir}: {existing} is a file, where the SavedModel's "
            "folder goes. Pass another `export_dir` (or `version`)."
        )
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ValueError(
            f"{target} already holds a SavedModel. Pass overwrite=True or a new "
            "`version`."
        )

    outputs = model_inputs.probe(np.zeros((1, *image_shape), dtype.as_numpy_dtype))
    score = (
        scores_lib.default_score(outputs, model=model)
        if score is None
        else scores_lib.as_score(score, model=model)
    )
    num_targets = scores_lib.check_result(score(outputs), 1, score)
    engine = RiseEngine(model, config)
    if preprocessing is None:
        preprocessing = Preprocessing.for_model(model)
    elif not isinstance(preprocessing, Preprocessing):
        raise TypeError(
            "`preprocessing` must be a keras_rise.Preprocessing. Received: "
            f"preprocessing={preprocessing!r}."
        )
    if is_image:
        preprocessing(np.zeros((1, 1, image_shape[-1]), np.float32))  # fits the channels
    # Clients send what the model takes (no channel axis if it has none).
    input_shape = model_inputs.model_image_shape()
    module = _ExplainerModule(engine, image_shape, score, preprocessing, input_shape)
    # Images keep the name their clients know; other inputs are `inputs`.
    name = "images" if is_image else "inputs"
    images = tf.TensorSpec((None, *input_shape), dtype, name=name)
    # Keras' ExportArchive tracks the model's variables so that both TF2
    # loading and TF Serving's session-based loader restore them.
    archive = keras.export.ExportArchive()
    archive.track(model)

    def add_endpoint(name, function, signature):
        # Traced once, here. The archive traces an endpoint to list its
        # variables and `tf.saved_model.save` traces every saved function
        # anew, so an endpoint of the explanation itself was traced twice
        # (an export took twice as long); the endpoint is a thin function
        # that calls this one trace.
        traced = tf.function(function, autograph=False).get_concrete_function(*signature)

        @functools.wraps(function)  # the signature's argument names
        def call_traced(*args):
            return traced(*args)

        archive.add_endpoint(name, call_traced, signature)

    add_endpoint("serving_default", module.serving_default, [images])
    one_class = isinstance(score, scores_lib.ClassScore) and score.class_ids is None
    if one_class:
        add_endpoint(
            "explain_class",
            module.explain_class,
            [images, tf.TensorSpec((None,), tf.int32, name="class_ids")],
        )
    if num_targets is None and is_image:
        add_endpoint(
            "explain_image",
            module.explain_image,
            [tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )
    archive.write_out(str(target), verbose=False)
    return target
