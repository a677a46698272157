"""Pictures of saliency maps: heatmap overlays, with no matplotlib needed."""

import numpy as np
from PIL import Image

# Where the red, green and blue ramps of "jet" peak; the SavedModel export
# draws its heatmaps with the same ramp.
JET_CENTRES = (0.75, 0.5, 0.25)


def _jet(values):
    """The classic blue–cyan–yellow–red ramp, for values in [0, 1]."""
    centres = np.array(JET_CENTRES)
    return np.clip(1.5 - np.abs(4.0 * (values[..., None] - centres)), 0.0, 1.0)


def _gray(values):
    return np.repeat(values[..., None], 3, axis=-1)


def _hot(values):
    values = values[..., None]
    return np.clip(
        np.concatenate([3 * values, 3 * values - 1, 3 * values - 2], axis=-1), 0.0, 1.0
    )


_COLORMAPS = {"jet": _jet, "gray": _gray, "hot": _hot}


def colorize(saliency, colormap="jet"):
    """Maps a saliency map to RGB colours, scaled to its own min and max.

    Args:
        saliency: array `(height, width)`.
        colormap: `"jet"`, `"hot"` or `"gray"`, or the name of any
            matplotlib colormap when matplotlib is installed.
            Defaults to `"jet"`.

    Returns:
        float32 array `(height, width, 3)` in [0, 1].
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise ValueError(
            f"`saliency` must be one map (height, width). Received shape {saliency.shape}."
        )
    if not np.all(np.isfinite(saliency)):
        raise ValueError("`saliency` must be finite; it contains NaN or inf.")
    low, high = saliency.min(), saliency.max()
    scaled = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    if colormap in _COLORMAPS:
        return _COLORMAPS[colormap](scaled).astype(np.float32)
    try:
        from matplotlib import colormaps
    except ImportError:
        raise ValueError(
            f"Unknown colormap {colormap!r}: expected one of {sorted(_COLORMAPS)}, "
            "or install matplotlib for its colormaps."
        ) from None
    if colormap not in colormaps:
        raise ValueError(f"Unknown colormap {colormap!r}.")
    return colormaps[colormap](scaled)[..., :3].astype(np.float32)


def _image_array(image):
    """An RGB float array in [0, 1] from a PIL image or an array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), np.float32) / 255.0
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            "`image` must be (height, width), (height, width, 1), (height, width, 3) "
            f"or RGBA. Received shape {array.shape}."
        )
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if array.min() < 0.0 or array.max() > 1.0:
        # Float images outside [0, 1] (e.g. 0..255) are rescaled for display.
        array = (array - array.min()) / max(float(array.max() - array.min()), 1e-12)
    return array


def overlay(image, saliency, alpha=0.5, colormap="jet"):
    """Blends a colour-mapped saliency map over its image.

    Args:
        image: the explained image: a `PIL.Image`, or an array
            `(height, width[, channels])`, uint8 in [0, 255] or float in [0, 1].
        saliency: array `(h, w)`; resized bilinearly to the image if needed.
        alpha: float in [0, 1], weight of the heatmap. Defaults to `0.5`.
        colormap: see `colorize`. Defaults to `"jet"`.

    Returns:
        An RGB `PIL.Image` the size of `image`.

    Example:

    >>> picture = keras_rise.visualize.overlay(np.zeros((32, 32, 3)), np.eye(32))
    >>> picture.size
    (32, 32)
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}.")
    pixels = _image_array(image)
    heat = colorize(saliency, colormap)
    height, width = pixels.shape[:2]
    if heat.shape[:2] != (height, width):
        channels = [
            np.asarray(
                Image.fromarray(heat[..., c], mode="F").resize(
                    (width, height), Image.BILINEAR
                )
            )
            for c in range(3)
        ]
        heat = np.clip(np.stack(channels, axis=-1), 0.0, 1.0)
    blended = (1.0 - alpha) * pixels + alpha * heat
    return Image.fromarray((blended * 255).round().astype(np.uint8), mode="RGB")
