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


def resize_map(saliency, size):
    """A saliency map resized bilinearly, e.g. to the photo it explains.

    Args:
        saliency: array `(h, w)` or `(h, w, T)`.
        size: `(height, width)` of the result.

    Returns:
        float32 array `(height, width)` or `(height, width, T)`, within the
        map's own range.

    Example:

    >>> keras_rise.visualize.resize_map(np.eye(32), (64, 48)).shape
    (64, 48)
    """
    saliency = np.asarray(saliency, np.float32)
    height, width = (int(v) for v in size)
    if saliency.shape[:2] == (height, width):
        return saliency
    if saliency.ndim == 3:
        return np.stack(
            [resize_map(saliency[..., t], size) for t in range(saliency.shape[-1])], -1
        )
    resized = Image.fromarray(saliency, mode="F").resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, np.float32), saliency.min(), saliency.max())


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


def draw_boxes(picture, boxes, labels=None, color=(255, 255, 255), width=1):
    """Draws boxes `(x1, y1, x2, y2)` (and optional labels) on a picture.

    Args:
        picture: a `PIL.Image` (e.g. from `overlay`) or an RGB array.
        boxes: boxes `(x1, y1, x2, y2)` in the picture's pixels, ends
            exclusive, e.g. a detection's box.
        labels: optional text per box, written at its top-left corner.
        color: RGB outline colour. Defaults to white.
        width: int, outline width in pixels. Defaults to `1`.

    Returns:
        A new RGB `PIL.Image`.

    Example:

    >>> picture = keras_rise.visualize.overlay(image, saliency)
    >>> keras_rise.visualize.draw_boxes(picture, [(10, 12, 40, 44)], ["7"])
    """
    from PIL import ImageDraw

    if not isinstance(picture, Image.Image):
        picture = Image.fromarray((_image_array(picture) * 255).round().astype(np.uint8))
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    labels = [None] * len(boxes) if labels is None else list(labels)
    if len(labels) != len(boxes):
        raise ValueError(
            f"`labels` must give one text per box: {len(boxes)} boxes, "
            f"{len(labels)} labels."
        )
    for box, label in zip(boxes, labels):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=tuple(color), width=width)
        if label:
            draw.text((x1 + 2, y1 + 1), str(label), fill=tuple(color))
    return picture


def caption(picture, text, color=(255, 255, 255)):
    """Writes a caption in the top-left corner of a picture, on a dark band.

    Args:
        picture: a `PIL.Image` (e.g. from `overlay`).
        text: the caption, e.g. a class name and its score.
        color: RGB text colour. Defaults to white.

    Returns:
        A new RGB `PIL.Image`.
    """
    from PIL import ImageDraw, ImageFont

    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    # About a twentieth of the picture's height, 10 pixels at least.
    font = ImageFont.load_default(size=max(10, picture.height // 20))
    left, top, right, bottom = draw.textbbox((2, 1), str(text), font=font)
    draw.rectangle([0, 0, right + 2, bottom + 2], fill=(0, 0, 0))
    draw.text((2, 1), str(text), fill=tuple(color), font=font)
    return picture


def _pyplot():
    """matplotlib's pyplot, or an ImportError that says how to get it."""
    try:
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise ImportError(
            "plot_curves and plot_grid need matplotlib: "
            'pip install "keras-rise[viz]" (or pip install matplotlib).'
        ) from None
    return pyplot


def plot_curves(results, ax=None, title=None):
    """Plots deletion or insertion curves, the mean over images per method.

    Args:
        results: a `keras_rise.metrics.CausalCurves`, or a dict from a label
            (e.g. a method's name) to one.
        ax: matplotlib `Axes` to draw on; a new figure when `None`.
        title: str, the axes title, or `None`.

    Returns:
        The matplotlib `Axes`; the legend gives each mean AUC.

    Example:

    >>> result = keras_rise.metrics.insertion(model, images, maps)
    >>> keras_rise.visualize.plot_curves({"RISE": result}, title="Insertion")
    """
    pyplot = _pyplot()
    if not isinstance(results, dict):
        results = {"": results}
    if ax is None:
        _, ax = pyplot.subplots(figsize=(4.5, 3.5))
    for label, result in results.items():
        curves = np.asarray(result.curves, np.float32)
        mean_curve = curves if curves.ndim == 1 else curves.mean(axis=0)
        auc = float(np.mean(result.auc))
        name = f"{label} (AUC {auc:.3f})" if label else f"AUC {auc:.3f}"
        ax.plot(result.fractions, mean_curve, label=name)
    ax.set_xlabel("fraction of pixels changed")
    ax.set_ylabel("score of the explained class")
    ax.set_xlim(0, 1)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_grid(images, saliency, titles=None, alpha=0.5, colormap="jet"):
    """Draws one row per image: the image, its map, and the overlay.

    Args:
        images: array `(batch, height, width, channels)` or a list of images
            (as `overlay` takes them).
        saliency: maps `(batch, h, w)`.
        titles: one str per row (e.g. "class 3, score 0.98"), or `None`.
        alpha: heatmap opacity of the overlays. Defaults to `0.5`.
        colormap: colormap of the maps and overlays. Defaults to `"jet"`.

    Returns:
        The matplotlib `Figure`.

    Example:

    >>> figure = keras_rise.visualize.plot_grid(images, maps)
    >>> figure.savefig("maps.png")
    """
    pyplot = _pyplot()
    images = list(images)
    maps = np.asarray(saliency)
    if maps.ndim == 2:
        maps = maps[None]
    if len(maps) != len(images):
        raise ValueError(
            f"`saliency` must hold one map per image: {len(images)} images, "
            f"{len(maps)} maps."
        )
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"`titles` must give one title per image ({len(images)}).")
    figure, axes = pyplot.subplots(
        len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False
    )
    for row, (image, saliency_map) in enumerate(zip(images, maps)):
        pictures = (
            _image_array(image),
            colorize(saliency_map, colormap),
            np.asarray(overlay(image, saliency_map, alpha, colormap)),
        )
        for column, (ax, picture) in enumerate(zip(axes[row], pictures)):
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(("image", "saliency", "overlay")[column])
        if titles is not None:
            axes[row, 0].set_ylabel(titles[row])
    figure.tight_layout()
    return figure
