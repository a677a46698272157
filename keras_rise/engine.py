"""The RISE loop: masks → masked batch → model → scores → `scores^T @ masks`.

`RiseEngine` is the one implementation of RISE in keras_rise; every public
way to explain (today `RiseExplainer`) calls it rather than repeat it. Its
methods are plain TensorFlow code meant to run inside a `tf.function`: the
loop over mask batches is a `tf.while_loop` in the graph, every step makes its
masks on the device from the seed, and only running sums of size
`(images · targets, height · width)` are carried from step to step.

The sums over a range of mask indices (`RiseSums`) can be added together, so a
map can be split across steps, replicas or workers by mask index and merged
exactly.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_rise import masks as masks_lib


@tf.function(jit_compile=True)
def _apply_masks(masks, images, fill):
    """`fill + (image - fill) · mask` for every mask and image, mask-major.

    Compiled with XLA, which fuses the broadcast over channels into one pass
    that writes only the masked batch; plain TensorFlow kernels take about
    twice as long for this memory-bound step.

    Args:
        masks: float32 `(size, H, W)`.
        images: `(B, H, W, C)`.
        fill: scalar or array broadcastable to `(H, W, C)`, images' dtype.

    Returns:
        `(size · B, H, W, C)` in the images' dtype.
    """
    keep = tf.cast(masks, images.dtype)[:, None, :, :, None]
    masked = fill + (images[None] - fill) * keep
    return tf.reshape(masked, tf.concat([[-1], tf.shape(images)[1:]], 0))


class RiseSums(NamedTuple):
    """Running sums of one or more mask ranges; add two to merge them.

    Attributes:
        weighted: float32 `(images · targets, height · width)`,
            Σ_n score_n · mask_n.
        count: float32 scalar, number of masks summed.
    """

    weighted: tf.Tensor
    count: tf.Tensor

    def merge(self, other):
        """Returns the sums over the union of two disjoint mask ranges."""
        return RiseSums(self.weighted + other.weighted, self.count + other.count)


class RiseEngine:
    """Compiled-loop RISE over a fixed model and mask stream.

    Args:
        model: callable mapping `(batch, height, width, channels)` images to
            `(batch, num_classes)` scores, usually a `keras.Model`.
        num_masks: int, masks per explanation.
        grid_size: int, cells per side of the mask grid.
        keep_prob: float in (0, 1), probability of keeping a cell.
        batch_size: int, masked images per forward pass of the model.
        seed: int, selects the mask stream.
        fill_value: float or array broadcastable to `(height, width,
            channels)`, what masked-out pixels become.

    The arguments are assumed to be valid: public entry points such as
    `RiseExplainer` check them at their edge.
    """

    def __init__(
        self,
        model,
        num_masks,
        grid_size,
        keep_prob,
        batch_size,
        seed,
        fill_value,
    ):
        self.model = model
        self.num_masks = num_masks
        self.grid_size = grid_size
        self.keep_prob = keep_prob
        self.batch_size = batch_size
        self.seed = seed
        self.fill_value = fill_value

    def masks_per_step(self, num_images):
        """Masks per loop step so one forward pass holds `batch_size` images."""
        return max(1, self.batch_size // num_images)

    def _masked_batch(self, images, start, size):
        """Masks `start .. start + size - 1` and the images they mask.

        Returns:
            Tuple of float32 masks `(size, H · W)` and the masked batch
            `(size · B, H, W, C)`, mask-major.
        """
        height, width = images.shape[1:3]
        draws = masks_lib.uniform_words(self.seed, start, size, self.grid_size)
        masks = masks_lib.masks_from_words(
            draws, (height, width), self.grid_size, self.keep_prob
        )
        masked = _apply_masks(masks, images, tf.cast(self.fill_value, images.dtype))
        return tf.reshape(masks, [size, height * width]), masked

    def _weighted_masks(self, masks, masked, class_ids):
        """Runs the model on a masked batch; returns Σ score · mask.

        Args:
            masks: float32 `(size, H · W)`.
            masked: `(size · B, H, W, C)` from `_masked_batch`.
            class_ids: int32 `(B,)` tensor, or `None` for every class.

        Returns:
            float32 `(B · T, H · W)`, with `T = 1` for `class_ids` and
            `T = num_classes` for `None`.
        """
        size = masks.shape[0]
        outputs = tf.cast(self.model(masked, training=False), tf.float32)
        scores = tf.reshape(outputs, [size, masked.shape[0] // size, -1])
        scores = tf.transpose(scores, [1, 2, 0])  # (B, K, size)
        if class_ids is not None:
            scores = tf.gather(scores, class_ids[:, None], axis=1, batch_dims=1)
        return tf.matmul(tf.reshape(scores, [-1, size]), masks)

    def sums(self, images, class_ids, start, count, num_targets):
        """Sums over masks `start .. start + count - 1`, looped in the graph.

        Args:
            images: `(B, H, W, C)` tensor with a static shape.
            class_ids: int32 `(B,)` tensor, or `None` for every class.
            start: int or scalar int tensor, first mask index.
            count: static int, number of masks.
            num_targets: int or scalar tensor, `T` of the result.

        Returns:
            `RiseSums` with `weighted` of shape `(B · T, H · W)`.
        """
        batch, height, width, _ = images.shape
        per_step = self.masks_per_step(batch)
        full_steps, tail = divmod(count, per_step)
        start = tf.cast(start, tf.int64)
        weighted = tf.zeros(tf.stack([batch * num_targets, height * width]))

        def body(step, weighted):
            masks, masked = self._masked_batch(
                images, start + step * per_step, per_step
            )
            weighted += self._weighted_masks(masks, masked, class_ids)
            return step + 1, weighted

        # One step at a time: letting steps overlap measured no faster on
        # two cores and made peak memory depend on thread timing.
        _, weighted = tf.while_loop(
            lambda step, _: step < full_steps,
            body,
            (tf.constant(0, tf.int64), weighted),
            parallel_iterations=1,
        )
        if tail:
            masks, masked = self._masked_batch(
                images, start + full_steps * per_step, tail
            )
            weighted += self._weighted_masks(masks, masked, class_ids)
        return RiseSums(weighted, tf.constant(float(count)))

    def saliency_from_sums(self, sums, images_shape):
        """Normalises sums into maps `Σ score · mask / (N · keep_prob)`.

        Returns:
            float32 `(B, H, W, T)`.
        """
        batch, height, width, _ = images_shape
        maps = sums.weighted / (sums.count * self.keep_prob)
        maps = tf.reshape(maps, [batch, -1, height, width])
        return tf.transpose(maps, [0, 2, 3, 1])

    def explain(self, images, class_ids=None, all_classes=False):
        """Explains images; meant to be wrapped in a `tf.function`.

        Args:
            images: `(B, H, W, C)` tensor. With a static batch size all `B`
                images share each mask batch; with a dynamic one (a Keras
                `Input` or a serving signature) they are explained one after
                another, with the same masks and so the same maps.
            class_ids: int32 `(B,)` tensor, or `None` for each image's top
                class. Ignored when `all_classes` is true.
            all_classes: bool, explain every class at once.

        Returns:
            Tuple `(saliency, class_ids, scores)`: float32 saliency
            `(B, H, W)` (`(B, H, W, K)` with `all_classes`), the int32 class
            explained `(B,)` and the model's score for it on the unmasked
            image `(B,)` (both for the top class with `all_classes`).
        """
        predictions = tf.cast(self.model(images, training=False), tf.float32)
        if class_ids is None or all_classes:
            class_ids = tf.argmax(predictions, axis=-1, output_type=tf.int32)
        class_ids = tf.cast(class_ids, tf.int32)
        scores = tf.gather(predictions, class_ids[:, None], batch_dims=1)[:, 0]
        num_targets = predictions.shape[-1] if all_classes else 1
        targets = None if all_classes else class_ids

        if images.shape[0] is not None:
            sums = self.sums(images, targets, 0, self.num_masks, num_targets)
            saliency = self.saliency_from_sums(sums, images.shape)
        else:

            def explain_one(image_and_class):
                image = image_and_class[0][None]
                target = None if all_classes else image_and_class[1][None]
                sums = self.sums(image, target, 0, self.num_masks, num_targets)
                return self.saliency_from_sums(sums, image.shape)[0]

            height, width = images.shape[1:3]
            saliency = tf.map_fn(
                explain_one,
                (images, class_ids),
                fn_output_signature=tf.TensorSpec(
                    [height, width, num_targets], tf.float32
                ),
                parallel_iterations=1,
            )
        if not all_classes:
            saliency = saliency[..., 0]
        return saliency, class_ids, scores
