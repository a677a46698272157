"""Pictures of saliency maps, with no matplotlib needed.

Images get heatmap overlays (`overlay`); signals a plot over a coloured band
(`plot_signal`); a table's rows a bar per feature (`plot_features`); token
sequences highlighted text for a notebook or a terminal (`highlight_tokens`);
volumes slices and a maximum projection (`volume_slices`); videos a strip of
frames (`frame_strip`). `picture` picks the right one for any input the
explainer takes.
"""

import html
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def _reds(values):
    """White to red: for highlighting, where low values should not show."""
    fade = 1.0 - 0.85 * values[..., None]
    return np.concatenate([np.ones_like(fade), fade, fade], axis=-1)


_COLORMAPS = {"jet": _jet, "gray": _gray, "hot": _hot, "reds": _reds}


# Spread, relative to a map's largest magnitude, below which `colorize` draws
# the map flat: float32 sums over thousands of masks round at about 1e-6.
FLAT_SPREAD = 1e-5


def colorize(saliency, colormap="jet", value_range=None):
    """Maps a saliency map to RGB colours, by default from its own min to max.

    A map whose spread is within float32 rounding of its values (below
    `FLAT_SPREAD` of its largest magnitude: e.g. the map of a model whose
    scores do not move) is drawn in the colormap's lowest colour rather
    than stretched into a pattern of rounding noise.

    Args:
        saliency: array `(height, width)`.
        colormap: `"jet"`, `"hot"`, `"reds"` or `"gray"`, or the name of any
            matplotlib colormap when matplotlib is installed.
            Defaults to `"jet"`.
        value_range: `(low, high)`, the values drawn in the colormap's two
            ends (values beyond are clipped), so that maps drawn apart share
            one scale (e.g. several classes' maps of one image); `None`
            (default): the map's own min and max, so that every map spans
            the whole colormap whatever its values.

    Returns:
        float32 array `(height, width, 3)` in [0, 1].

    Example:

    >>> maps = explainer.explain(image, targets=keras_rise.scores.ClassScore([3, 5]))
    >>> scale = (maps.min(), maps.max())  # maps (64, 64, 2): one scale for both
    >>> pictures = [keras_rise.visualize.colorize(maps[..., k], value_range=scale)
    ...             for k in range(2)]
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise ValueError(
            f"`saliency` must be one map (height, width). Received shape {saliency.shape}."
        )
    if not np.all(np.isfinite(saliency)):
        raise ValueError("`saliency` must be finite; it contains NaN or inf.")
    low, high = (
        (saliency.min(), saliency.max()) if value_range is None
        else _value_range(value_range)
    )
    flat = value_range is None and high - low <= FLAT_SPREAD * max(abs(low), abs(high))
    scaled = (
        np.zeros_like(saliency) if flat
        else np.clip((saliency - low) / (high - low), 0.0, 1.0)
    )
    return _apply_colormap(scaled, colormap)


def _value_range(value_range):
    """`(low, high)` floats from a `value_range` argument."""
    try:
        low, high = (float(v) for v in value_range)
        valid = np.isfinite(low) and np.isfinite(high) and low < high
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`value_range` must be None or two finite numbers (low, high) with "
            f"low < high. Received: value_range={value_range!r}."
        )
    return low, high


def _apply_colormap(scaled, colormap):
    """RGB colours `(..., 3)` in [0, 1] of values already scaled to [0, 1]."""
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
    """An RGB float array in [0, 1] from a PIL image, an image file or an array.

    Integers are read out of 255, or out of 65535 for uint16 (and 16-bit
    PIL images) and for integers beyond 255.
    """
    if isinstance(image, (str, pathlib.Path)):
        try:
            with Image.open(image) as opened:
                image = opened.copy()
        except (OSError, ValueError) as error:
            raise ValueError(
                f"`image` {str(image)!r} is not a readable image file ({error})."
            ) from None
    if isinstance(image, Image.Image):
        if image.mode == "F":
            image = np.asarray(image)  # floats: as float arrays are read
        elif image.mode == "I" or image.mode.startswith("I;16"):
            # 16-bit grayscale (PIL reads 16-bit PNGs as "I;16" or "I").
            image = np.clip(np.asarray(image, np.int64), 0, 65535).astype(np.uint16)
        else:
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    array = np.asarray(image)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            "`image` must be a PIL image, an image file's path or an array of "
            f"numbers. Received: {type(image).__name__}"
            + (f" of dtype {array.dtype}." if isinstance(image, np.ndarray) else ".")
        )
    array = array.astype(np.float32) if array.dtype == bool else array  # 0 and 1
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
        sixteen = array.dtype == np.uint16 or (array.size and array.max() > 255)
        if sixteen and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                "`image` must hold integers in [0, 255] (8-bit) or [0, 65535] "
                f"(16-bit); received {array.dtype} values from {array.min()} to "
                f"{array.max()}."
            )
        return array.astype(np.float32) / (65535.0 if sixteen else 255.0)
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
    try:
        values = np.asarray(size)
        valid = (
            values.shape == (2,) and values.dtype.kind in "iuf"
            and bool(np.all(values > 0)) and bool(np.all(values == np.round(values)))
        )
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(
            "`size` must be (height, width), two positive whole numbers. Received: "
            f"size={size!r}."
        )
    height, width = (int(v) for v in values)
    if saliency.shape[:2] == (height, width):
        return saliency
    if saliency.ndim == 3:
        return np.stack(
            [resize_map(saliency[..., t], size) for t in range(saliency.shape[-1])], -1
        )
    resized = Image.fromarray(saliency, mode="F").resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, np.float32), saliency.min(), saliency.max())


def overlay(image, saliency, alpha=0.5, colormap="jet", value_range=None):
    """Blends a colour-mapped saliency map over its image.

    Args:
        image: the explained image: a `PIL.Image`, an image file's path, or
            an array `(height, width[, channels])`: uint8 in [0, 255], 16-bit
            integers in [0, 65535], or floats in [0, 1] (floats beyond are
            stretched from their min to their max for display).
        saliency: array `(h, w)`; resized bilinearly to the image if needed.
        alpha: float in [0, 1], weight of the heatmap. Defaults to `0.5`.
        colormap: see `colorize`. Defaults to `"jet"`.
        value_range: see `colorize`: `None` (default) scales the map to its
            own min and max; `(low, high)` gives several overlays one scale.

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
    heat = colorize(saliency, colormap, value_range)
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
    return _to_picture((1.0 - alpha) * pixels + alpha * heat)


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
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    # About a twentieth of the picture's height, 10 pixels at least.
    font = ImageFont.load_default(size=max(10, picture.height // 20))
    left, top, right, bottom = draw.textbbox((2, 1), str(text), font=font)
    draw.rectangle([0, 0, right + 2, bottom + 2], fill=(0, 0, 0))
    draw.text((2, 1), str(text), fill=tuple(color), font=font)
    return picture


def _colours(saliency, colormap):
    """RGB colours in [0, 1] of a map of any shape, scaled to its own range."""
    values = np.asarray(saliency, np.float64)
    flat = values.reshape(1, -1)
    return colorize(flat, colormap).reshape(*values.shape, 3)


def _to_picture(rgb):
    return Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8), "RGB")


# Line colours of a signal's channels (dark, distinct on the jet band).
_LINE_COLOURS = ((0, 0, 0), (255, 255, 255), (128, 0, 128), (0, 100, 0), (139, 69, 19))


def plot_signal(signal, saliency, size=None, alpha=0.6, colormap="jet"):
    """Plots a signal over its saliency, drawn as a coloured band.

    Every time step's column of the picture takes the map's colour at that
    step (blended with white by `alpha`), and each channel of the signal is
    a line over it, all channels on one vertical scale. A map of one value
    per step and channel (`binary_masks=(False, True)`) is drawn as one
    strip per channel, each with its own band and its line on its own
    scale, all on one colour scale.

    Args:
        signal: array `(length,)` or `(length, channels)`.
        saliency: array `(length,)`, one value per time step, or `(length,
            channels)`, one per step and channel.
        size: `(width, height)` of the picture in pixels, or `None`
            (default): `(640, 200)`, and for a map per channel 50 pixels of
            height per channel (at least 200).
        alpha: float in [0, 1], strength of the band. Defaults to `0.6`.
        colormap: see `colorize`. Defaults to `"jet"`.

    Returns:
        An RGB `PIL.Image` of `size`.

    Example:

    >>> t = np.linspace(0, 6, 100)
    >>> keras_rise.visualize.plot_signal(np.sin(t), t).size
    (640, 200)
    """
    signal = np.asarray(signal, np.float64)
    given = signal.shape
    if signal.ndim == 3 and signal.shape[-1] == 1:  # read as (steps, channels, 1)
        signal = signal[..., 0]
    if signal.ndim == 1:
        signal = signal[:, None]
    saliency = np.asarray(saliency, np.float64)
    if signal.ndim != 2 or saliency.shape not in (signal.shape[:1], signal.shape):
        raise ValueError(
            "`signal` must be (length,) or (length, channels) and `saliency` "
            f"(length,) or (length, channels). Received shapes {given} and "
            f"{saliency.shape}."
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}.")
    if size is None:
        size = (640, max(200, 50 * signal.shape[1]) if saliency.ndim == 2 else 200)
    width, height = (int(v) for v in size)
    length = len(saliency)
    # Each picture column shows the time step under it.
    steps = np.minimum((np.arange(width) * length) // width, length - 1)
    xs = (np.arange(length) + 0.5) * width / length
    per_channel = saliency.ndim == 2
    strips = signal.shape[1] if per_channel else 1
    # Strip k holds rows bounds[k] .. bounds[k + 1]: the whole picture, or
    # one channel's share of it.
    bounds = np.linspace(0, height, strips + 1).round().astype(int)
    colours = _colours(saliency, colormap)  # one colour scale for all strips
    rgb = np.ones((height, width, 3))
    for strip in range(strips):
        band = (colours[:, strip] if per_channel else colours)[steps]
        top, bottom = bounds[strip], bounds[strip + 1]
        rgb[top:bottom] = (1.0 - alpha) + alpha * band[None]
    picture = _to_picture(rgb)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=11)
    for channel in range(signal.shape[1]):
        strip = channel if per_channel else 0
        top, bottom = bounds[strip], bounds[strip + 1]
        values = signal[:, channel] if per_channel else signal
        low, high = float(values.min()), float(values.max())
        span = high - low if high > low else 1.0
        margin = 0.08 * (bottom - top)
        ys = bottom - margin - (signal[:, channel] - low) / span * (bottom - top - 2 * margin)
        # A strip per channel holds one line: black, the channel's number at its start.
        colour = (0, 0, 0) if per_channel else _LINE_COLOURS[channel % len(_LINE_COLOURS)]
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colour, width=2)
        if per_channel:
            if strip:
                draw.line([(0, top), (width, top)], fill=(255, 255, 255), width=1)
            draw.text((3, top + 2), str(channel), fill=(0, 0, 0), font=font,
                      stroke_width=2, stroke_fill=(255, 255, 255))
    return picture


def plot_features(features, saliency, names=None, width=640, colormap="jet", baseline=None,
                  max_features=40):
    """Plots a table row's map: one bar per feature, in the row's order.

    Each bar starts at `baseline` and goes right for a feature whose map is
    above it (the score is higher, on average, when the feature is kept)
    and left below it, coloured by the map's value. A feature the score
    does not depend on has a map equal to the mean score over the masks;
    with most features of little weight, the map's median is close to it,
    and is the default baseline. Bars are scaled to the largest deviation,
    written in the first line with the baseline, so that a map of tiny
    differences is seen as such. Each row is labelled with the feature's
    name (or index) and its value in the input.

    Args:
        features: array `(features,)`, the row as the model takes it.
        saliency: array `(features,)`, its map.
        names: optional list of `features` names (e.g. a DataFrame's
            columns). Defaults to the indices.
        width: width of the picture in pixels; rows are 18 pixels high.
            Defaults to `640`.
        colormap: see `colorize`. Defaults to `"jet"`.
        baseline: float, where the bars start. Defaults to `None`: the
            map's median.
        max_features: int, the most bars drawn: for a longer row, those of
            the features farthest from the baseline, in the row's order (the
            first line says how many of how many). Defaults to `40`.

    Returns:
        An RGB `PIL.Image` of `(width, 18 * (bars + 1))`.

    Example:

    >>> keras_rise.visualize.plot_features(np.ones(5), np.arange(5.0)).size
    (640, 108)
    """
    features = np.asarray(features, np.float64)
    saliency = np.asarray(saliency, np.float64)
    if features.ndim != 1 or saliency.shape != features.shape:
        raise ValueError(
            "`features` and `saliency` must both be (features,), one value per "
            f"feature. Received shapes {features.shape} and {saliency.shape}."
        )
    if names is None:
        names = [str(index) for index in range(len(features))]
    names = [str(name) for name in names]
    if len(names) != len(features):
        raise ValueError(
            f"`names` must give one name per feature: {len(features)} features, "
            f"received {len(names)} names."
        )
    baseline = float(np.median(saliency)) if baseline is None else float(baseline)
    deviation = saliency - baseline
    shown = np.arange(len(features))
    if len(features) > max_features:
        shown = np.sort(np.argsort(-np.abs(deviation), kind="stable")[:max_features])
    row, label_width = 18, min(int(width) // 2, 200)
    picture = Image.new("RGB", (int(width), row * (len(shown) + 1)), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=11)
    largest = float(np.abs(deviation).max())
    centre = label_width + (int(width) - label_width) // 2
    half = (int(width) - label_width) // 2 - 4
    some = (
        f"; the {len(shown)} of {len(features)} features farthest from it"
        if len(shown) < len(features) else ""
    )
    draw.text(
        (4, 3), f"map - {baseline:.4g}; a full bar: {largest:.3g}{some}", fill=(0, 0, 0),
        font=font,
    )
    colours = (_colours(saliency, colormap) * 255).round().astype(int)
    for place, index in enumerate(shown):
        name, value = names[index], features[index]
        top = (place + 1) * row
        draw.text((4, top + 3), f"{name[:18]} = {value:.4g}", fill=(0, 0, 0), font=font)
        end = centre + int(round(deviation[index] / (largest or 1.0) * half))
        left, right = sorted((centre, end))
        draw.rectangle([left, top + 3, max(right, left + 1), top + row - 4],
                       fill=tuple(colours[index]))
    draw.line([(centre, row), (centre, picture.height)], fill=(0, 0, 0), width=1)
    return picture


def _token_texts(tokens, vocabulary):
    """The text shown for each token: a string as it is, or an id's word."""
    texts = []
    for token in tokens:
        if isinstance(token, str):
            texts.append(token)
        elif vocabulary is None:
            texts.append(str(int(token)))
        else:
            try:
                texts.append(str(vocabulary[int(token)]))
            except (IndexError, KeyError):
                texts.append(f"[{int(token)}]")
    return texts


def highlight_tokens(tokens, saliency, vocabulary=None, output="html", colormap="reds",
                     skip=(), separator=" "):
    """Token sequences with each token coloured by its saliency.

    Args:
        tokens: a sequence of token ids (ints) or of strings, `(length,)`;
            or one text (a str), shown word by word as `explain` maps it
            (`keras_rise.text.words`).
        saliency: array `(length,)`, one value per token; a longer one
            whose surplus is NaN (a shorter text's row of a batch of texts'
            maps) is cut to the tokens.
        vocabulary: optional, the words of the ids: a list (index = id) or
            a dict `{id: word}`. Without it ids are shown as numbers.
        output: `"html"` (default): an HTML fragment of `<span>`s with the
            colour as background and the value as tooltip, for a notebook
            (`IPython.display.HTML`) or a web page; `"terminal"`: the text
            with 24-bit ANSI background colours, for `print`.
        colormap: see `colorize`. Defaults to `"reds"` (white to red: the
            least salient tokens unmarked).
        skip: ids not shown, e.g. the pad id. Defaults to none.
        separator: str between tokens: `" "` (default) for words, `""` for
            characters or sub-word pieces that carry their own spaces.

    Returns:
        str.

    Example:

    >>> keras_rise.visualize.highlight_tokens(["a", "fine"], [0.0, 1.0])[:50]
    '<span title="0" style="background: rgb(255, 255, 2'
    """
    if isinstance(tokens, str):  # a text, not its characters
        from keras_rise import text as text_lib

        tokens = text_lib.words(tokens)
    tokens = list(tokens)
    saliency = np.asarray(saliency, np.float64)
    if saliency.ndim == 1 and np.all(np.isnan(saliency[len(tokens):])):
        saliency = saliency[: len(tokens)]  # a shorter text's row of a batch
    if saliency.shape != (len(tokens),):
        raise ValueError(
            "`saliency` must give one value per token: "
            f"{len(tokens)} tokens, saliency of shape {saliency.shape}."
        )
    if output not in ("html", "terminal"):
        raise ValueError(
            f'`output` must be "html" or "terminal". Received: output={output!r}.'
        )
    colours = (_colours(saliency, colormap) * 255).round().astype(int)
    brightness = colours @ np.array([0.299, 0.587, 0.114])
    pieces = []
    for token, text, (red, green, blue), light, value in zip(
        tokens, _token_texts(tokens, vocabulary), colours, brightness, saliency
    ):
        if not isinstance(token, str) and int(token) in skip:
            continue
        ink = (0, 0, 0) if light > 140 else (255, 255, 255)
        if output == "html":
            pieces.append(
                f'<span title="{value:.4g}" style="background: rgb({red}, {green}, '
                f"{blue}); color: rgb{ink}; padding: 0 2px; border-radius: 2px\">"
                f"{html.escape(text)}</span>"
            )
        else:
            pieces.append(
                f"\x1b[48;2;{red};{green};{blue}m\x1b[38;2;{ink[0]};{ink[1]};{ink[2]}m"
                f"{text}\x1b[0m"
            )
    return separator.join(pieces)


def _token_strip(tokens, saliency, vocabulary=None, colormap="reds", cell=(48, 24)):
    """A picture of a token sequence: one coloured cell per token, its text in
    it, in rows 16 cells wide; a cell widens to its whole word (field test:
    "dreadful" showed as "dreadf"), to at most a row."""
    texts = _token_texts(tokens, vocabulary)
    colours = _colours(np.asarray(saliency, np.float64), colormap)
    width, height = cell
    row_width = 16 * width
    font = ImageFont.load_default(size=max(10, height // 2))
    # Each cell's text and width, then where it goes: a new row when full.
    cells = []
    for text in texts:
        while len(text) > 1 and font.getlength(text) + 8 > row_width:
            text = text[:-2] + "…"
        cells.append((text, max(width, int(np.ceil(font.getlength(text))) + 8)))
    places, x, y = [], 0, 0
    for _, size in cells:
        if x and x + size > row_width:
            x, y = 0, y + height
        places.append((x, y))
        x += size
    picture = Image.new("RGB", (row_width, y + height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    for (text, size), (x, y), colour in zip(cells, places, colours):
        fill = tuple(int(v) for v in (colour * 255).round())
        draw.rectangle([x, y, x + size - 2, y + height - 2], fill=fill)
        ink = (0, 0, 0) if np.dot(fill, (0.299, 0.587, 0.114)) > 140 else (255, 255, 255)
        draw.text((x + 3, y + 4), text, fill=ink, font=font)
    return picture


def _text_strip(text, saliency):
    """`_token_strip` of a text's words, its map cut to their count."""
    words = (text.decode("utf-8") if isinstance(text, bytes) else text).split()
    if saliency.ndim != 1 or len(saliency) < len(words) or not words:
        raise ValueError(
            f"The map of a text must have one value per word: {len(words)} words in "
            f"{text[:40]!r}, a map of shape {saliency.shape}."
        )
    return _token_strip(words, saliency[: len(words)])


def _evenly(count, wanted, peak=None):
    """`wanted` indices spread evenly over `0 .. count - 1` (all if fewer),
    the one nearest `peak` (the map's peak slice or frame) moved onto it."""
    chosen = np.unique(np.linspace(0, count - 1, min(count, wanted)).round().astype(int))
    if peak is not None and peak not in chosen:
        chosen[np.abs(chosen - peak).argmin()] = peak
    return np.unique(chosen)


def _side_by_side(pictures, gap=4):
    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    height = max(p.height for p in pictures)
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for p in pictures:
        strip.paste(p, (x, 0))
        x += p.width + gap
    return strip


def _panel(image, saliency, alpha, colormap, low, high, label, scale):
    """One slice or frame overlaid with its map, in the colours of the whole
    volume's range `low .. high`."""
    pixels = _image_array(image)
    values = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    heat = _apply_colormap(np.clip(values, 0.0, 1.0), colormap)
    picture = _to_picture((1.0 - alpha) * pixels + alpha * heat)
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.NEAREST)
    return caption(picture, label) if label else picture


def volume_slices(volume, saliency, num_slices=6, axis=0, alpha=0.5, colormap="jet",
                  scale=None):
    """Slices of a volume with their maps, and the maps' maximum projection.

    The slices are spread evenly along `axis`, one of them the slice where
    the map peaks; every slice's map uses the colours of the whole volume's
    range, so slices compare. The last panel is the maximum of the map
    along `axis` over the mean of the volume.

    Args:
        volume: array `(depth, height, width)` or `(depth, height, width,
            channels)`.
        saliency: array `(depth, height, width)`.
        num_slices: int, slices shown. Defaults to `6`.
        axis: int, the axis sliced (0, 1 or 2). Defaults to `0`.
        alpha: heatmap opacity. Defaults to `0.5`.
        colormap: see `colorize`. Defaults to `"jet"`.
        scale: int, pixels per voxel, or `None` (default): enough for
            panels about 128 pixels high.

    Returns:
        An RGB `PIL.Image`: the slices side by side, then the projection.

    Example:

    >>> volume = np.zeros((8, 16, 16, 1))
    >>> keras_rise.visualize.volume_slices(volume, np.zeros((8, 16, 16))).size
    (920, 128)
    """
    volume, saliency = _with_map(volume, saliency, 3, "volume")
    if axis not in (0, 1, 2):
        raise ValueError(f"`axis` must be 0, 1 or 2. Received: axis={axis}.")
    volume, saliency = np.moveaxis(volume, axis, 0), np.moveaxis(saliency, axis, 0)
    scale = scale or max(1, 128 // saliency.shape[1])
    low, high = float(saliency.min()), float(saliency.max())
    panels = [
        _panel(volume[i], saliency[i], alpha, colormap, low, high, f"{i}", scale)
        for i in _evenly(len(saliency), num_slices, _peak(saliency))
    ]
    projection = saliency.max(axis=0)
    panels.append(
        _panel(volume.mean(axis=0), projection, alpha, colormap, low, high, "max", scale)
    )
    return _side_by_side(panels)


def frame_strip(video, saliency, num_frames=8, alpha=0.5, colormap="jet", scale=None):
    """Frames of a video with their maps, side by side.

    Args:
        video: array `(frames, height, width[, channels])`.
        saliency: array `(frames, height, width)`.
        num_frames: int, frames shown, spread evenly, one of them the
            frame where the map peaks. Defaults to `8`.
        alpha: heatmap opacity. Defaults to `0.5`.
        colormap: see `colorize`. Defaults to `"jet"`.
        scale: int, pixels per video pixel, or `None` (default): enough for
            frames about 128 pixels high.

    Returns:
        An RGB `PIL.Image`; every frame's map uses the colours of the
        whole clip's range, and its caption is the frame's index.

    Example:

    >>> clip = np.zeros((4, 32, 32, 3))
    >>> keras_rise.visualize.frame_strip(clip, np.zeros((4, 32, 32))).size
    (524, 128)
    """
    video, saliency = _with_map(video, saliency, 3, "video")
    scale = scale or max(1, 128 // saliency.shape[1])
    low, high = float(saliency.min()), float(saliency.max())
    return _side_by_side([
        _panel(video[i], saliency[i], alpha, colormap, low, high, f"{i}", scale)
        for i in _evenly(len(saliency), num_frames, _peak(saliency))
    ])


def _peak(saliency):
    """The index along the first axis where a map holds its maximum."""
    return int(np.unravel_index(np.argmax(saliency), saliency.shape)[0])


def _with_map(inputs, saliency, axes, name):
    """Checks an input and its map of `axes` axes; returns both as arrays."""
    inputs, saliency = np.asarray(inputs), np.asarray(saliency, np.float64)
    if saliency.ndim != axes or inputs.shape[:axes] != saliency.shape:
        raise ValueError(
            f"`{name}` and `saliency` must share their first {axes} axes, with "
            f"`saliency` having no other. Received shapes {inputs.shape} and "
            f"{saliency.shape}."
        )
    return inputs, saliency


def picture(inputs, saliency, alpha=0.5, colormap="jet", vocabulary=None, kind=None,
            names=None):
    """A picture of one input's map, whatever the input.

    - a map `(height, width)`: `overlay` on the image;
    - a map `(length,)` of token ids (integers): coloured cells, one per
      token (see `highlight_tokens` for text);
    - a map `(words,)` of a text (a string): coloured cells, one per word
      (`keras_rise.text.words`); values past the text's last word (the NaN
      of a batch's shorter texts) are left out;
    - a map `(length,)` of a signal `(length[, channels])`: `plot_signal`;
      also a map `(length, channels)` of one, a strip per channel, with
      `kind="signal"` or where the series is long and narrow (at least 4
      steps per channel, at most 32 channels; else it is an image);
    - a map `(features,)` of a table's row, with `kind="features"`:
      `plot_features`;
    - a map `(frames, height, width)` of 3-channel inputs: `frame_strip`;
    - a map `(depth, height, width)` of other inputs: `volume_slices`.

    Args:
        inputs: one input, as the model takes it (without the batch axis).
        saliency: its map, one value per masked position.
        alpha: heatmap opacity. Defaults to `0.5`.
        colormap: see `colorize`. Defaults to `"jet"`.
        vocabulary: words of token ids (see `highlight_tokens`).
        names: a table's feature names (see `plot_features`).
        kind: `None` (default) to pick by the shapes and dtype as above, or
            one of `"image"`, `"signal"`, `"features"`, `"tokens"`,
            `"volume"`, `"video"` (e.g. `"volume"` for a 3-channel volume;
            `"features"` for a table's row, which is a vector like a
            signal's).

    Returns:
        An RGB `PIL.Image`.

    Example:

    >>> keras_rise.visualize.picture(np.zeros((50, 2)), np.arange(50.0)).size
    (640, 200)
    """
    saliency = np.asarray(saliency)
    if isinstance(inputs, (str, bytes)):
        return _text_strip(inputs, saliency)
    array = np.asarray(inputs)
    kinds = ("image", "signal", "features", "tokens", "volume", "video")
    if kind is not None and kind not in kinds:
        raise ValueError(f"`kind` must be None or one of {kinds}. Received: kind={kind!r}.")
    if kind is None:
        if saliency.ndim == 2:
            kind = "signal" if _is_series(array, saliency) else "image"
        elif saliency.ndim == 1:
            tokens = np.issubdtype(array.dtype, np.integer) and array.ndim == 1
            kind = "tokens" if tokens else "signal"
        elif saliency.ndim == 3:
            kind = "video" if array.ndim == 4 and array.shape[-1] == 3 else "volume"
    if kind == "image":
        return overlay(inputs, saliency, alpha, colormap)
    if kind == "tokens":
        return _token_strip(array, saliency, vocabulary)
    if kind == "signal":
        return plot_signal(array, saliency, alpha=alpha, colormap=colormap)
    if kind == "features":
        return plot_features(array, saliency, names=names, colormap=colormap)
    if kind == "video":
        return frame_strip(array, saliency, alpha=alpha, colormap=colormap)
    if kind == "volume":
        return volume_slices(array, saliency, alpha=alpha, colormap=colormap)
    raise ValueError(
        "`saliency` must be one map of 1, 2 or 3 axes (without a batch or "
        f"targets axis). Received shape {saliency.shape}."
    )


def _is_series(inputs, saliency):
    """Whether a map of two axes is one value per step and channel of a
    series (long and narrow), not an image's."""
    shape = inputs.shape[:-1] if inputs.ndim == 3 and inputs.shape[-1] == 1 else inputs.shape
    steps, channels = saliency.shape
    return tuple(shape) == saliency.shape and channels <= 32 and steps >= 4 * channels


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


def plot_grid(images, saliency, titles=None, alpha=0.5, colormap="jet", value_range=None):
    """Draws one row per image: the image, its map, and the overlay.

    Args:
        images: array `(batch, height, width, channels)` or a list of images
            (as `overlay` takes them); one image with one map `(h, w)`.
        saliency: maps `(batch, h, w)`, or one `(h, w)`.
        titles: one str per row (e.g. "class 3, score 0.98"), or `None`.
        alpha: heatmap opacity of the overlays. Defaults to `0.5`.
        colormap: colormap of the maps and overlays. Defaults to `"jet"`.
        value_range: `None` (default): each map scaled to its own min and
            max; `"shared"`: all to the maps' common min and max, so that
            rows compare (e.g. one image's maps of several classes); or
            `(low, high)`.

    Returns:
        The matplotlib `Figure`.

    Example:

    >>> figure = keras_rise.visualize.plot_grid(images, maps)
    >>> figure.savefig("maps.png")
    """
    pyplot = _pyplot()
    maps = np.asarray(saliency)
    if maps.ndim == 2:
        maps = maps[None]
        if isinstance(images, (str, pathlib.Path, Image.Image)) or (
            not isinstance(images, (list, tuple)) and np.ndim(images) in (2, 3)
        ):
            images = [images]  # one image and its map
    images = list(images)
    if len(maps) != len(images):
        raise ValueError(
            f"`saliency` must hold one map per image: {len(images)} images, "
            f"{len(maps)} maps (for one image, pass its map (height, width) or a "
            "batch of one of each)."
        )
    if isinstance(value_range, str):
        if value_range != "shared":
            raise ValueError(
                '`value_range` must be None, "shared" or (low, high). Received: '
                f"value_range={value_range!r}."
            )
        value_range = (float(maps.min()), float(maps.max()))
        if not value_range[0] < value_range[1]:
            value_range = None  # all flat: each drawn as flat
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"`titles` must give one title per image ({len(images)}).")
    figure, axes = pyplot.subplots(
        len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False
    )
    for row, (image, saliency_map) in enumerate(zip(images, maps)):
        pictures = (
            _image_array(image),
            colorize(saliency_map, colormap, value_range),
            np.asarray(overlay(image, saliency_map, alpha, colormap, value_range)),
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
