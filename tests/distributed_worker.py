"""Explains fixed images under a tf.distribute strategy; saves the maps.

Run as a subprocess by test_distribute.py, since the logical devices or the
cluster must be set before TensorFlow starts:

    python distributed_worker.py mirrored OUT.npz
    python distributed_worker.py multi_worker OUT.npz   (with TF_CONFIG set)
"""

import sys

import numpy as np
import tensorflow as tf

OPTIONS = [
    {},
    {
        "centered_scores": True,
        "complementary_masks": True,
        "mask_sampling": "stratified",
    },
    {"score_regression": True, "mask_sampling": "stratified"},
]
NUM_MASKS = 131  # not divisible by 2 replicas


# Each estimator's sums once, and each kind of score once (their merge
# across replicas is the estimator's): every class and a similarity on the
# default estimator, the top class and a pair of classes on the others.
TARGETS = {
    0: ["all", "similar"],
    1: ["top"],
    2: ["pair"],
}


def explain_all(strategy=None):
    """The maps of every case, under `strategy` (`None`: one device)."""
    from conftest import small_cnn

    import keras_rise

    targets = {
        "top": None,
        "all": "all",
        "pair": keras_rise.scores.ClassScore([1, 3]),
        "similar": keras_rise.scores.SimilarityScore(np.eye(4)[:2]),
    }
    with (strategy or tf.distribute.get_strategy()).scope():
        model = small_cnn()
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    maps = {}
    for index, options in enumerate(OPTIONS):
        explainer = keras_rise.RiseExplainer(
            model, num_masks=NUM_MASKS, batch_size=32, strategy=strategy, **options
        )
        for name in TARGETS[index]:
            maps[f"{name}_{index}"] = explainer.explain(images, targets=targets[name])
    layer = keras_rise.RiseLayer(model, num_masks=NUM_MASKS, strategy=strategy)
    maps["layer"] = layer(tf.constant(images)).numpy()
    if strategy is not None:
        maps["replicas"] = np.array(strategy.num_replicas_in_sync)
    return maps


def main():
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    np.savez(out, **explain_all(strategy))


if __name__ == "__main__":
    main()
