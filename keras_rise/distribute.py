"""One explanation on many devices: the mask stream split across replicas.

Masks are addressed by index, so replica `r` of `R` generates and sums only
masks `r · ceil(N / R)` to `(r + 1) · ceil(N / R) - 1` (those past `N` count
for nothing), and one all-reduce adds the replicas' sums. The result
is the single-device map, up to the order of float additions.
"""

import tensorflow as tf

from keras_rise.engine import ReplicaSlice, RiseResult


def explain_on_replicas(engine, strategy, inputs, score, targets=None, fill=None, seed=None):
    """Runs `engine.explain` on every replica of `strategy`, mask-split.

    Meant to be wrapped in a `tf.function`. Every replica receives all the
    images; each sums its share of the masks.

    Args:
        engine: a `RiseEngine`.
        strategy: a `tf.distribute.Strategy`.
        inputs: the model's inputs (see `RiseEngine.explain`), with a static
            batch size.
        score: the `keras_rise.scores.Score` explained.
        targets: per-image targets, or `None` for the score's own.
        fill, seed: as for `RiseEngine.explain`.

    Returns:
        The `RiseResult` of the first local replica (all replicas hold the
        same result after the all-reduce).
    """

    def on_replica(inputs, targets):
        context = tf.distribute.get_replica_context()

        def all_reduce(sums):
            total = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.nest.flatten(sums))
            return tf.nest.pack_sequence_as(sums, total)

        replica = ReplicaSlice(
            context.replica_id_in_sync_group, context.num_replicas_in_sync, all_reduce
        )
        return tuple(
            engine.explain(inputs, score, targets, replica=replica, fill=fill, seed=seed)
        )

    results = strategy.run(on_replica, args=(inputs, targets))
    return RiseResult(
        *(
            tf.nest.map_structure(
                lambda x: strategy.experimental_local_results(x)[0], value
            )
            for value in results
        )
    )
