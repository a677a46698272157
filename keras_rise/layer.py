"""`RiseLayer`: RISE as a Keras layer that saves with the model it explains."""

import keras

from keras_rise import _checks, distribute
from keras_rise.engine import RiseEngine


@keras.saving.register_keras_serializable(package="keras_rise")
class RiseLayer(keras.layers.Layer):
    """A Keras layer that returns RISE saliency maps of a wrapped model.

    It runs the same compiled engine as `RiseExplainer`, so for equal
    arguments the maps are the same. The wrapped model is part of the layer:
    a `keras.Model` holding a `RiseLayer` saves to a `.keras` file with the
    model's weights and `keras.saving.load_model` restores it.

    Args:
        model: the `keras.Model` to explain, mapping `(batch, height, width,
            channels)` images to `(batch, num_classes)` scores.
        num_masks: int, masks per explanation. Defaults to `4000`.
        grid_size: int, cells per side of the random grid. Defaults to `7`.
        keep_prob: float in (0, 1), probability that a cell is kept.
            Defaults to `0.5`.
        batch_size: int, masked images per forward pass. Defaults to `100`.
        seed: int, selects the mask stream. Defaults to `0`.
        fill_value: float, or array broadcastable to `(height, width,
            channels)`, for masked-out pixels. Defaults to `0.0`.
        mask_sampling, complementary_masks, centered_scores,
            score_regression, jit_compile, dtype_policy, strategy: as for
            `RiseExplainer` (with a `strategy`, the batch size must be
            static; the strategy is not part of `get_config()`).
        **kwargs: base `keras.layers.Layer` arguments such as `name`.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`.
        class_ids: optional int tensor `(batch,)`; each image's top class
            when omitted.

    Returns:
        float32 saliency `(batch, height, width)`.

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
        num_masks=4000,
        grid_size=7,
        keep_prob=0.5,
        batch_size=100,
        seed=0,
        fill_value=0.0,
        mask_sampling="independent",
        complementary_masks=False,
        centered_scores=False,
        score_regression=True,
        jit_compile=False,
        dtype_policy=None,
        strategy=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, keras.layers.Layer):
            raise TypeError(
                "`model` must be a keras.Model (so that it can be saved with the "
                f"layer). Received: model={model!r} (of type {type(model).__name__})."
            )
        self.model = model
        self._arguments = _checks.rise_arguments(
            num_masks=num_masks,
            grid_size=grid_size,
            keep_prob=keep_prob,
            batch_size=batch_size,
            seed=seed,
            fill_value=fill_value,
            mask_sampling=mask_sampling,
            complementary_masks=complementary_masks,
            centered_scores=centered_scores,
            score_regression=score_regression,
            jit_compile=jit_compile,
            dtype_policy=dtype_policy,
        )
        self._engine = RiseEngine(model, **self._arguments)
        self.strategy = _checks.strategy(strategy)

    @property
    def engine(self):
        """The `RiseEngine` this layer runs."""
        return self._engine

    def call(self, images, class_ids=None):
        if self.strategy is None:
            return self._engine.explain(images, class_ids).saliency
        if images.shape[0] is None:
            # Each image's mask share would have to be all-reduced inside a
            # loop over a dynamic batch; collectives do not nest there.
            raise ValueError(
                "RiseLayer with a `strategy` needs a static batch size: call it "
                "on a tensor, or use keras.Input(..., batch_size=B)."
            )
        try:
            result = distribute.explain_on_replicas(
                self._engine, self.strategy, images, class_ids
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
        return tuple(images_shape[:3])

    def get_config(self):
        """Returns the constructor arguments, with the model serialized."""
        config = super().get_config()
        fill_value = self._arguments["fill_value"]
        config.update(self._arguments)
        config["fill_value"] = getattr(fill_value, "tolist", lambda: fill_value)()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the layer and its model from `get_config()`."""
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
