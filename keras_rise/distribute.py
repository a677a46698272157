"""One explanation on many devices: the mask stream split across replicas.

Masks are addressed by index, so replica `r` of `R` generates and sums only
masks `r · ceil(N / R)` to `(r + 1) · ceil(N / R) - 1` (those past `N` count
for nothing), and one all-reduce adds the replicas' `RiseSums`. The result
is the single-device map, up to the order of float additions.
"""

import tensorflow as tf

from keras_rise.engine import ReplicaSlice, RiseResult, RiseSums


def explain_on_replicas(engine, strategy, images, class_ids=None, all_classes=False):
    """Runs `engine.explain` on every replica of `strategy`, mask-split.

    Meant to be wrapped in a `tf.function`. Every replica receives all the
    images; each sums its share of the masks.

    Args:
        engine: a `RiseEngine`.
        strategy: a `tf.distribute.Strategy`.
        images: `(B, H, W, C)` tensor with a static batch size.
        class_ids: int32 `(B,)` tensor, or `None`.
        all_classes: bool.

    Returns:
        The `RiseResult` of the first local replica (all replicas hold the
        same result after the all-reduce).
    """

    def on_replica(images, class_ids):
        context = tf.distribute.get_replica_context()

        def all_reduce(sums):
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, list(sums))
            return RiseSums(*total)

        replica = ReplicaSlice(
            context.replica_id_in_sync_group, context.num_replicas_in_sync, all_reduce
        )
        return tuple(engine.explain(images, class_ids, all_classes, replica=replica))

    results = strategy.run(on_replica, args=(images, class_ids))
    return RiseResult(
        *(strategy.experimental_local_results(value)[0] for value in results)
    )
