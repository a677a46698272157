"""Running the explained model in another precision (mixed float16/bfloat16).

A Keras layer's compute dtype is fixed when it is built, so a float32 model
cannot simply be called in float16. `PolicyClone` rebuilds the model with
every layer under the requested dtype policy and keeps it in step with the
original: `sync()` copies the original's weights into the clone inside the
compiled graph, at the start of each explanation, so a model that is still
training is explained with its current weights. Saliency is accumulated in
float32 whatever the policy.
"""

import keras
import tensorflow as tf

POLICIES = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16", "float32")


def check_policy(value):
    """Returns a dtype policy name (or `None`), checking it is supported."""
    if value is None:
        return None
    name = getattr(value, "name", value)
    if name not in POLICIES:
        raise ValueError(
            f"`dtype_policy` must be None or one of {POLICIES}. "
            f"Received: dtype_policy={value!r}."
        )
    return name


class PolicyClone:
    """A copy of a functional or sequential model under another dtype policy.

    Args:
        model: a functional or `Sequential` `keras.Model` (subclassed models
            cannot be rebuilt layer by layer).
        policy: a name from `POLICIES`.

    Example:

    >>> clone = PolicyClone(model, "mixed_bfloat16")
    >>> clone.sync()              # copy the current weights (graph-safe)
    >>> scores = clone.model(images)
    """

    def __init__(self, model, policy):
        self.policy = check_policy(policy)

        def under_policy(layer):
            config = layer.get_config()
            if "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
                config["dtype"] = self.policy
            return layer.__class__.from_config(config)

        try:
            self.model = keras.models.clone_model(
                model, clone_function=under_policy, recursive=True
            )
        except Exception as error:  # any rebuild failure is reported as input
            raise ValueError(
                f"`dtype_policy={self.policy!r}` needs a functional or Sequential "
                "keras.Model whose layers can be rebuilt from their configs; "
                f"rebuilding {type(model).__name__} failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        self._pairs = list(zip(self.model.weights, model.weights))
        if len(self.model.weights) != len(model.weights) or any(
            tuple(mine.shape) != tuple(theirs.shape) for mine, theirs in self._pairs
        ):
            raise ValueError(
                f"The model rebuilt under `dtype_policy={self.policy!r}` does not "
                "have the same weights as the original."
            )
        self.sync()
        # State a layer derives from its weights (an adapted Normalization's
        # mean and variance, as constants) is remade from the copied weights,
        # as Keras does after loading weights.
        for layer in _layers(self.model):
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()

    def sync(self):
        """Copies the original model's weights into the clone."""
        for mine, theirs in self._pairs:
            mine.assign(tf.cast(theirs, mine.dtype))


def _layers(model):
    """Every layer of `model`, those of nested models included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
