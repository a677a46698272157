"""keras_rise: RISE saliency maps for Keras models, compiled with TensorFlow."""

from keras_rise._startup import quiet_beam_notices, quiet_tensorflow_startup

quiet_beam_notices()
with quiet_tensorflow_startup():
    from keras_rise import callbacks, estimators, masks, metrics, scores, text, visualize
    from keras_rise.config import RiseConfig
    from keras_rise.dataset import explain_dataset
    from keras_rise.demo import load_demo_detector, load_demo_model
    from keras_rise.engine import RiseEngine, RiseResult
    from keras_rise.estimators import RiseSums
    from keras_rise.explainer import RiseExplainer
    from keras_rise.export import export_explainer
    from keras_rise.layer import RiseLayer
    from keras_rise.masks import generate_masks
    from keras_rise.preprocessing import Preprocessing

__version__ = "0.1.0"

__all__ = [
    "Preprocessing",
    "RiseConfig",
    "RiseEngine",
    "RiseExplainer",
    "RiseLayer",
    "RiseResult",
    "RiseSums",
    "callbacks",
    "estimators",
    "explain_dataset",
    "export_explainer",
    "generate_masks",
    "load_demo_detector",
    "load_demo_model",
    "masks",
    "metrics",
    "scores",
    "text",
    "visualize",
]
