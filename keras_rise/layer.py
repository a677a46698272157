"""`RiseLayer`: RISE as a Keras layer that saves with the model it explains."""

import copy

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks, distribute
from keras_rise import inputs as inputs_lib
from keras_rise import scores as scores_lib
from keras_rise import text as text_lib
from keras_rise.config import RiseConfig
from keras_rise.engine import RiseEngine


@keras.saving.register_keras_serializable(package="keras_rise")
class RiseLayer(keras.layers.Layer):
    """A Keras layer that returns RISE saliency maps of a wrapped model.

    It runs the same compiled engine as `RiseExplainer`, so for equal
    arguments the maps are the same. The wrapped model is part of the layer:
    a `keras.Model` holding a `RiseLayer` saves to a `.keras` file with the
    model's weights and `keras.saving.load_model` restores it.

    Args:
        model: the `keras.Model` to explain, taking `(batch, height, width,
            channels)` images, or any input `keras_rise.RiseExplainer` takes
            (signals, token ids, volumes, videos).
        score: what to explain: a `keras_rise.scores.Score` (serializable,
            so it saves with the layer), or `None` (default) for
            `ClassScore()`, each image's top class (`OutputScore()` for a
            model of one value per image, `(batch,)` or a linear unit's
            `(batch, 1)`; `BinaryScore()` for a
            binary classifier's one sigmoid unit).
        num_masks: int, masks per explanation. Defaults to `4000`.
        grid_size: cells of the random grid per masked axis: an int, a
            tuple with one per axis (e.g. `(4, 7, 7)` for short videos), or
            `None` (default): 7 per axis, one per token for token ids.
        keep_prob: float in (0, 1), probability that a cell is kept.
            Defaults to `0.5`.
        batch_size: int, masked images per forward pass, or `None`
            (default): 100, fewer for large images (see `RiseConfig`).
        seed: int, selects the mask stream, or `None` for one drawn at
            random (kept in `get_config`). Defaults to `0`.
        fill_value: float, array broadcastable to `(height, width,
            channels)`, `"mean"` or `"blur"`: what masked-out pixels become
            (see `RiseExplainer`; one fill for every image). Defaults to
            `0.0`.
        mask_sampling, complementary_masks, centered_scores,
            score_regression, jit_compile, dtype_policy, binary_masks,
            strategy, image_input: as for `RiseExplainer` (with a `strategy`, the batch
            size must be static; the strategy is not part of `get_config()`).
        **kwargs: base `keras.layers.Layer` arguments such as `name`.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`, or the dict
            or list of inputs a multi-input model takes (see `image_input`).
        class_ids: optional int tensor `(batch,)`, for the default score:
            each image's top class when omitted.

    Returns:
        float32 saliency `(batch, height, width)`, or `(batch, height,
        width, T)` for a score with `T` targets; for other inputs one value
        per masked position, e.g. `(batch, length)` for signals and token
        ids, `(batch, depth, height, width)` for volumes.

    Example:

    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.GlobalAveragePooling2D()(inputs)
    >>> classifier = keras.Model(inputs, keras.layers.Dense(4, "softmax")(x))
    >>> saliency = keras_rise.RiseLayer(classifier, num_masks=100)(inputs)
    >>> explainer = keras.Model(inputs, saliency)
    >>> explainer.predict(np.random.rand(2, 32, 32, 3), verbose=0).shape
    (2, 32, 32)
    """

    def __init__(
        self,
        model,
        score=None,
        num_masks=4000,
        grid_size=None,
        keep_prob=0.5,
        batch_size=None,
        seed=0,
        fill_value=0.0,
        mask_sampling="auto",
        complementary_masks=False,
        centered_scores=False,
        score_regression=True,
        jit_compile=False,
        dtype_policy=None,
        binary_masks=None,
        strategy=None,
        image_input=None,
        **kwargs,
    ):
        for name in ("targets", "class_id", "class_ids"):
            if name in kwargs:
                raise TypeError(
                    f"RiseLayer takes no `{name}=`: what it explains is its `score` "
                    "(e.g. score=keras_rise.scores.ClassScore(2)), or per call the "
                    "`class_ids` argument, layer(images, class_ids=...). Received: "
                    f"{name}={kwargs[name]!r}."
                )
        super().__init__(**kwargs)
        if not isinstance(model, keras.layers.Layer):
            raise TypeError(
                "`model` must be a keras.Model (so that it can be saved with the "
                f"layer). Received: model={model!r} (of type {type(model).__name__})."
            )
        self.model = model
        self.config = RiseConfig.from_arguments(locals())
        # The default is the top class, or a (batch,) output itself, as in
        # RiseExplainer: decided on the model's outputs (`num_targets`).
        self._given_score = None if score is None else scores_lib.as_score(score, model=model)
        self.score = scores_lib.ClassScore() if score is None else self._given_score
        self.image_input = image_input
        text_lib.refuse_strings(model, "RiseLayer")
        self._engine = RiseEngine(model, self.config, image_input)
        self.strategy = _checks.strategy(strategy)
        self._num_targets = {}

    @property
    def engine(self):
        """The `RiseEngine` this layer runs."""
        return self._engine

    def build(self, images_shape, class_ids_shape=None):
        image_shape = self._image_shape(images_shape)
        declared = self._engine.inputs.image_shape()
        if declared is not None and not inputs_lib.shape_fits(
            tuple(image_shape)[1:], tuple(declared)
        ):
            shown = ", ".join("None" if size is None else str(size) for size in declared)
            raise ValueError(
                f"RiseLayer takes a batch of the model's inputs, (batch, {shown}); "
                f"received inputs of shape {tuple(image_shape)}."
            )
        spatial, tokens = self._layout(image_shape)
        if None in spatial:
            raise ValueError(
                "RiseLayer needs static sizes on the masked axes (masks are made "
                f"for one size); received inputs of shape {tuple(image_shape)}. Give "
                "keras.Input a full shape, or use RiseExplainer, which takes any size."
            )
        self._engine.inputs.check_config(self.config, spatial, tokens, tuple(image_shape[1:]))
        self.num_targets(images_shape)

    def _layout(self, image_shape):
        """`keras_rise.inputs.layout` of inputs of this shape: `(spatial, tokens)`."""
        spec = tf.TensorSpec(image_shape, self._engine.inputs.image_dtype())
        return inputs_lib.layout(spec)

    @staticmethod
    def _several(shapes):
        """Whether `shapes` are those of several inputs (a dict or a list)."""
        return isinstance(shapes, dict) or (
            isinstance(shapes, (list, tuple))
            and len(shapes) > 0
            and isinstance(shapes[0], (list, tuple))
        )

    def _image_shape(self, shapes):
        """The image input's shape among the inputs' shapes (dict, list or one),
        as RISE masks it (grayscale images without a channel axis get one:
        see `keras_rise.inputs.ModelInputs`)."""
        model_inputs = self._engine.inputs
        if self._several(shapes):
            where = model_inputs.locate(shapes)
            shape = tuple(shapes[where])
        else:
            shape = tuple(shapes)
        if model_inputs.adds_channel and len(shape) == 3:
            shape = (*shape, 1)
        return shape

    def num_targets(self, images_shape):
        """`T` of the maps for inputs of these shapes, `None` for one target.

        Found by running the model and the score once on blank inputs, which
        also checks the score against the model's outputs.
        """

        dtype = self._engine.inputs.image_dtype().as_numpy_dtype

        def blank(shape):
            return np.zeros((1, *shape[1:]), dtype)

        if isinstance(images_shape, dict):
            flat = [tuple(shape) for shape in images_shape.values()]
        elif self._several(images_shape):
            flat = [tuple(shape) for shape in images_shape]
        else:
            flat = [tuple(images_shape)]
        if any(None in shape[1:] for shape in flat):
            return None  # a size only known at run time: nothing to probe
        if isinstance(images_shape, dict):
            inputs = {key: blank(shape) for key, shape in images_shape.items()}
        elif self._several(images_shape):
            inputs = [blank(shape) for shape in flat]
        else:
            inputs = blank(flat[0])
        key = str(flat)
        if key not in self._num_targets:
            with tf.init_scope():
                outputs = self._engine.inputs.probe(inputs)
                if self._given_score is None:
                    self.score = scores_lib.default_score(outputs, model=self.model)
                self._num_targets[key] = scores_lib.check_result(
                    self.score(outputs), 1, self.score
                )
        return self._num_targets[key]

    def call(self, images, class_ids=None):
        if class_ids is not None:
            _check_class_ids(class_ids, self._engine.inputs.image(images))
        if self.strategy is None:
            return self._engine.explain(images, self.score, class_ids).saliency
        if images.shape[0] is None:
            # Each image's mask share would have to be all-reduced inside a
            # loop over a dynamic batch; collectives do not nest there.
            raise ValueError(
                "RiseLayer with a `strategy` needs a static batch size: call it "
                "on a tensor, or use keras.Input(..., batch_size=B)."
            )
        try:
            result = distribute.explain_on_replicas(
                self._engine, self.strategy, images, self.score, class_ids
            )
        except RuntimeError as error:
            if "cross-replica context" not in str(error):
                raise
            raise ValueError(
                "RiseLayer with a `strategy` runs its own replicas, so it must be "
                "called directly (e.g. `layer(images)`), not inside another "
                "strategy's replica context such as `model.predict` or `fit`."
            ) from None
        return result.saliency

    def compute_output_shape(self, images_shape, class_ids_shape=None):
        num_targets = self.num_targets(images_shape)
        targets = () if num_targets is None else (num_targets,)
        image_shape = self._image_shape(images_shape)
        return (image_shape[0], *self._layout(image_shape)[0], *targets)

    def get_config(self):
        """Returns the constructor arguments, with the model serialized."""
        config = super().get_config()
        config.update(self.config.to_dict())
        config["model"] = keras.saving.serialize_keras_object(self.model)
        config["score"] = (
            None if self._given_score is None
            else keras.saving.serialize_keras_object(self._given_score)
        )
        config["image_input"] = self.image_input
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the layer and its model from `get_config()`."""
        config = copy.deepcopy(config)  # Keras empties what it deserializes
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        if config.get("score") is not None:
            config["score"] = keras.saving.deserialize_keras_object(config["score"])
        return cls(**config)


def _check_class_ids(class_ids, images):
    """`class_ids` must be ints, one per image: checked on the static shapes
    (a symbolic call, or an eager one), so that a mismatch is a `ValueError`
    naming it rather than an error from inside the compiled loop."""
    class_ids = tf.convert_to_tensor(class_ids)
    shape = class_ids.shape
    if not class_ids.dtype.is_integer:
        raise TypeError(
            f"`class_ids` must be ints, one class per image. Received dtype "
            f"{class_ids.dtype.name}."
        )
    batch = images.shape[0]
    if shape.rank is not None and (
        shape.rank != 1
        or (batch is not None and shape[0] is not None and shape[0] != batch)
    ):
        expected = "(batch,)" if batch is None else f"({batch},) for these {batch} images"
        raise ValueError(
            f"`class_ids` must hold one class per image, shape {expected}. Received "
            f"shape {tuple(shape)}."
        )
