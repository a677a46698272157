"""Models bundled with keras_rise, installed as `keras_rise.saved_models`."""
