import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_rise
from keras_rise import visualize


def test_jet_runs_from_blue_to_red():
    colours = visualize.colorize(np.array([[0.0, 0.5, 1.0]]))[0]
    low, middle, high = colours
    assert low.argmax() == 2 and high.argmax() == 0  # blue at the bottom, red on top
    assert middle[1] == 1.0  # green in the middle
    assert colours.min() >= 0 and colours.max() <= 1


def test_colorize_scales_to_the_map_range():
    base = np.random.default_rng(0).random((8, 8))
    np.testing.assert_allclose(
        visualize.colorize(base), visualize.colorize(3 * base + 7), atol=1e-6
    )
    assert np.all(visualize.colorize(np.ones((4, 4)), "gray") == 0)


def test_colorize_draws_rounding_noise_flat():
    noise = np.random.default_rng(0).random((8, 8))
    # A flat map up to float32 rounding (an untrained model's scores do not
    # move) is not stretched into a pattern; a 1% spread is drawn in full.
    flat = np.float32(0.3) * (1 + 1e-7 * noise).astype(np.float32)
    assert np.all(visualize.colorize(flat, "gray") == 0)
    spread = visualize.colorize(0.3 * (1 + 1e-2 * noise), "gray")
    assert spread.min() == 0 and spread.max() == 1


def test_overlay_blends_by_alpha():
    image = np.full((16, 24, 3), 0.5, np.float32)
    saliency = np.zeros((16, 24))
    saliency[4, 5] = 1.0
    plain = np.asarray(visualize.overlay(image, saliency, alpha=0.0))
    assert plain.shape == (16, 24, 3)
    assert np.all(plain == 128)
    heat = np.asarray(visualize.overlay(image, saliency, alpha=1.0), np.float32) / 255
    np.testing.assert_allclose(heat, visualize.colorize(saliency), atol=1 / 255)
    hottest = np.unravel_index(heat[..., 0].argmax(), heat.shape[:2])
    assert hottest == (4, 5)


def test_overlay_resizes_the_map_and_accepts_pil_and_uint8():
    picture = Image.new("RGB", (40, 20), (10, 200, 30))
    result = visualize.overlay(picture, np.random.rand(5, 10))
    assert result.size == (40, 20) and result.mode == "RGB"
    gray = (np.random.rand(20, 40) * 255).astype(np.uint8)
    assert visualize.overlay(gray, np.random.rand(20, 40)).size == (40, 20)


def test_overlay_reads_16_bit_images_and_files_as_8_bit_ones(tmp_path):
    gray = np.random.default_rng(2).integers(0, 256, (12, 20)).astype(np.uint8)
    saliency = np.random.default_rng(3).random((12, 20))
    expected = np.asarray(visualize.overlay(gray, saliency), np.int16)
    wide = gray.astype(np.uint16) * 257  # the same picture in 16 bits
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    for image in (wide, Image.open(tmp_path / "wide.png"), tmp_path / "wide.png",
                  str(tmp_path / "gray.png"), wide.astype(np.int32)):
        got = np.asarray(visualize.overlay(image, saliency), np.int16)
        assert np.abs(got - expected).max() <= 1
    # Other PIL modes are converted to RGB (HSV red is red); an int16 image of
    # 8-bit values is 8-bit.
    hsv = Image.new("HSV", (4, 4), (0, 255, 255))
    assert np.asarray(visualize.overlay(hsv, np.zeros((4, 4)), alpha=0.0))[0, 0].tolist() == [
        255, 0, 0]
    np.testing.assert_array_equal(
        np.asarray(visualize.overlay(gray.astype(np.int16), saliency)), expected
    )
    mask = gray > 127  # a boolean image: white where True
    np.testing.assert_array_equal(
        np.asarray(visualize.overlay(mask, saliency, alpha=0.0))[..., 0], mask * 255
    )


def test_a_value_range_puts_maps_on_one_scale(images):
    strong = np.random.default_rng(4).random((8, 8))
    weak = 0.1 * strong
    shared = (0.0, 1.0)
    # Alone, each map spans the colormap; on one scale the weak one stays low.
    np.testing.assert_allclose(visualize.colorize(weak), visualize.colorize(strong), atol=1e-6)
    gray_weak = visualize.colorize(weak, "gray", value_range=shared)
    np.testing.assert_allclose(gray_weak[..., 0], weak, atol=1e-6)
    beyond = visualize.colorize(np.array([[-1.0, 0.5, 2.0]]), "gray", value_range=shared)
    np.testing.assert_allclose(beyond[0, :, 0], [0.0, 0.5, 1.0], atol=1e-6)
    low, high = np.asarray(visualize.overlay(images[0], weak, alpha=1.0, colormap="gray",
                                             value_range=shared)).max(), 255
    assert low <= 0.1 * high + 1
    for bad in ((1.0, 0.0), (0.0, np.inf), 3, "shared"):
        with pytest.raises(ValueError, match="`value_range` must be None"):
            visualize.colorize(strong, value_range=bad)


def test_bad_sizes_and_images_are_named():
    for bad in (64, (True, True), (8.5, 6)):
        with pytest.raises(ValueError, match=r"`size` must be \(height, width\), two positive"):
            visualize.resize_map(np.eye(4), bad)
    for size in ((8.0, 6.0), np.array([8, 6]), tf.shape(tf.zeros((8, 6)))):
        assert visualize.resize_map(np.eye(4), size).shape == (8, 6)
    with pytest.raises(TypeError, match="`image` must be a PIL image, an image file's path"):
        visualize.overlay({"image": 1}, np.eye(4))
    with pytest.raises(ValueError, match="'no-such.png' is not a readable image file"):
        visualize.overlay("no-such.png", np.eye(4))
    with pytest.raises(ValueError, match=r"integers in \[0, 255\] \(8-bit\) or \[0, 65535\]"):
        visualize.overlay(np.full((4, 4), 70000), np.eye(4))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"saliency": np.zeros((2, 8, 8))}, "saliency"),
        ({"saliency": np.full((8, 8), np.nan)}, "finite"),
        ({"image": np.zeros((8, 8, 2))}, "image"),
        ({"colormap": "no-such-map"}, "colormap"),
    ],
)
def test_overlay_rejects_bad_input(kwargs, match):
    arguments = {"image": np.zeros((8, 8, 3)), "saliency": np.zeros((8, 8)), **kwargs}
    with pytest.raises(ValueError, match=match):
        visualize.overlay(**arguments)


def test_plot_curves_draws_the_mean_curve_per_method(cnn, images):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    saliency = np.random.default_rng(0).random((3, 32, 32))
    results = {
        "random": keras_rise.metrics.deletion(cnn, images, saliency),
        "reversed": keras_rise.metrics.deletion(cnn, images, -saliency),
    }
    ax = keras_rise.visualize.plot_curves(results, title="Deletion")
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, result in zip(lines, results.values()):
        np.testing.assert_allclose(line.get_ydata(), result.curves.mean(axis=0))
        np.testing.assert_allclose(line.get_xdata(), result.fractions)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0] == f"random (AUC {results['random'].auc.mean():.3f})"


def test_plot_grid_rows_hold_image_map_and_overlay(images):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    maps = np.random.default_rng(1).random((2, 32, 32))
    figure = keras_rise.visualize.plot_grid(images[:2], maps, titles=["a", "b"])
    axes = figure.get_axes()
    assert len(axes) == 6
    shown = axes[5].get_images()[0].get_array()
    expected = np.asarray(keras_rise.visualize.overlay(images[1], maps[1]))
    np.testing.assert_array_equal(shown, expected)
    with pytest.raises(ValueError, match="one map per image"):
        keras_rise.visualize.plot_grid(images[:2], maps[:1])
    # One image with its map; rows on one scale.
    assert len(keras_rise.visualize.plot_grid(images[0], maps[0]).get_axes()) == 3
    scaled = maps * [[[1.0]], [[0.1]]]
    shared = keras_rise.visualize.plot_grid(images[:2], scaled, value_range="shared")
    weak = shared.get_axes()[4].get_images()[0].get_array()
    scale = (scaled.min(), scaled.max())
    expected = keras_rise.visualize.colorize(scaled[1], value_range=scale)
    np.testing.assert_allclose(weak, expected, atol=1e-6)
    own = keras_rise.visualize.colorize(scaled[1])  # what it was alone: the whole colormap
    assert np.abs(weak - own).max() > 0.5


def test_resize_map_is_bilinear_within_the_maps_range():
    ramp = np.tile(np.linspace(0.0, 1.0, 8, dtype=np.float32), (4, 1))  # (4, 8)
    resized = visualize.resize_map(ramp, (8, 16))
    assert resized.shape == (8, 16) and resized.dtype == np.float32
    # A horizontal ramp stays a ramp: equal rows, rising columns, same ends.
    np.testing.assert_allclose(resized, resized[:1].repeat(8, 0), atol=1e-6)
    assert np.all(np.diff(resized[0]) >= 0)
    assert resized.min() == pytest.approx(0.0) and resized.max() == pytest.approx(1.0)
    # Every target of a (h, w, T) map is resized alike; the same size is kept.
    stacked = visualize.resize_map(np.stack([ramp, 1 - ramp], -1), (8, 16))
    np.testing.assert_allclose(stacked[..., 1], 1 - resized, atol=1e-6)
    np.testing.assert_array_equal(visualize.resize_map(ramp, (4, 8)), ramp)


def test_plot_signal_colours_each_time_step_by_its_map():
    saliency = np.zeros(50)
    saliency[20:25] = 1.0
    signal = np.stack([np.sin(np.arange(50) / 5), np.zeros(50)], axis=1)
    picture = np.asarray(visualize.plot_signal(signal, saliency, size=(500, 100), alpha=1.0))
    assert picture.shape == (100, 500, 3)
    # Row 1 is above every line: pure band. Steps 20..24 are columns 200..249.
    hot, cold = picture[1, 225], picture[1, 50]
    np.testing.assert_array_equal(hot, (np.asarray(visualize.colorize([[0, 1]])[0, 1]) * 255)
                                  .round().astype(np.uint8))
    assert hot[0] > 100 and cold[2] > 100 and cold[0] < 50  # red peak, blue elsewhere
    with pytest.raises(ValueError, match="saliency"):
        visualize.plot_signal(signal, saliency[:-1])


def test_plot_signal_draws_a_strip_per_channel_for_a_map_per_channel():
    # A map (steps, channels) (binary_masks=(False, True)): strip k, a
    # channel's share of the height, is coloured by column k of the map, all
    # strips on one colour scale.
    saliency = np.zeros((50, 5))
    saliency[20:25, 3] = 1.0
    signal = np.zeros((50, 5))
    picture = np.asarray(visualize.plot_signal(signal, saliency, alpha=1.0))
    assert picture.shape == (250, 640, 3)  # 50 pixels a channel
    hot = (np.asarray(visualize.colorize([[0, 1]])[0, 1]) * 255).round().astype(np.uint8)
    for channel in range(5):
        row = picture[channel * 50 + 2]  # above the strip's (flat) line
        at_peak = row[int(22.5 * 640 / 50)]
        if channel == 3:
            np.testing.assert_array_equal(at_peak, hot)
        else:
            assert at_peak[2] > 100 and at_peak[0] < 50  # blue: the map's low end
        assert row[40][2] > 100 and row[40][0] < 50  # right of the channel's number
    # A (steps, channels, 1) input as the explainer reads such a series.
    np.testing.assert_array_equal(
        np.asarray(visualize.plot_signal(signal[..., None], saliency, alpha=1.0)), picture
    )
    np.testing.assert_array_equal(np.asarray(visualize.picture(signal, saliency, alpha=1.0)),
                                  picture)
    with pytest.raises(ValueError, match="saliency"):
        visualize.plot_signal(signal, saliency[:, :4])


def inked_in(picture, row):
    """Pixels of a bar's colour in a row of `plot_features`' picture (not
    white, not the black axis)."""
    band = picture[row * 18 + 9, 201:]  # right of the labels (width 400)
    return int(np.sum(np.any(band != 255, axis=-1) & np.any(band != 0, axis=-1)))


def test_plot_features_draws_a_bar_per_feature_from_the_maps_median():
    saliency = np.array([0.5, 0.9, 0.5, 0.1])  # median 0.5: none, right, none, left
    picture = np.asarray(visualize.plot_features([1.0, 2.0, 3.0, 4.0], saliency, width=400))
    assert picture.shape == (5 * 18, 400, 3)  # a line for the scale, a line a feature
    picture = picture[18:]
    centre = 200 + (400 - 200) // 2  # labels take the left half, up to 200 px

    def inked(row, columns):  # pixels of a bar's colour (not white, not the axis)
        band = picture[row * 18 + 9, columns]
        return int(np.sum(np.any(band != 255, axis=-1) & np.any(band != 0, axis=-1)))

    right, left = slice(centre + 2, 400), slice(201, centre - 1)
    assert inked(1, right) > 80 and inked(1, left) == 0
    assert inked(3, left) > 80 and inked(3, right) == 0
    assert inked(0, right) == inked(0, left) == inked(2, right) == 0
    # The largest deviations reach the same length either way; colours are the map's.
    assert abs(inked(1, right) - inked(3, left)) <= 1
    assert picture[1 * 18 + 9, 390][0] > 100 and picture[3 * 18 + 9, 210][2] > 100
    # Bars start at the median, not the mean: the features a sparse map
    # gives nothing get no bar (with the mean, all would go right).
    sparse = np.array([1.0, 1.0, 1.0, 1.0, -2.0])
    bars = np.asarray(visualize.plot_features(np.ones(5), sparse, width=400))[18:]
    full = inked_in(bars, 4)  # half the plot's 200 pixels, less a margin
    assert max(inked_in(bars, row) for row in range(4)) <= 1 and 90 <= full <= 100
    shifted = np.asarray(visualize.plot_features(np.ones(5), sparse, width=400, baseline=0.0))
    assert abs(inked_in(shifted[18:], 0) - full / 2) <= 1  # 1 against the largest, -2
    # A long row (a flattened image's 784 pixels) shows its 40 farthest features.
    wide = np.zeros(784)
    wide[[3, 500]] = [1.0, -2.0]
    long = np.asarray(visualize.plot_features(np.ones(784), wide, width=400))
    assert long.shape[0] == 41 * 18
    rows = [inked_in(long[18:], place) for place in range(40)]
    third, second, first = sorted(rows)[-3:]
    assert abs(first - full) <= 1 and abs(second - full / 2) <= 1 and third <= 1
    named = visualize.plot_features(np.ones(2), [0.0, 1.0], names=["age", "income"])
    assert named.size == (640, 54)
    assert visualize.picture(np.ones(4), saliency, kind="features", names=list("abcd")).size == (
        640, 90)
    with pytest.raises(ValueError, match="one name per feature: 2 features"):
        visualize.plot_features(np.ones(2), [0.0, 1.0], names=["age"])
    with pytest.raises(ValueError, match=r"Received shapes \(3,\) and \(2,\)"):
        visualize.plot_features(np.ones(3), [0.0, 1.0])


def test_highlight_tokens_in_html_and_terminal():
    tokens = [3, 1, 4, 0]
    words = {1: "good", 3: "not", 4: "<film>"}
    text = visualize.highlight_tokens(tokens, [0.0, 1.0, 0.5, 0.0], vocabulary=words,
                                      skip=(0,))
    assert text.count("<span") == 3 and "&lt;film&gt;" in text and "[0]" not in text
    assert 'title="1"' in text and "rgb(255, 38, 38)" in text  # the top token, full red
    assert "rgb(255, 255, 255)" in text  # the lowest, unmarked
    characters = visualize.highlight_tokens(list("ab"), [0.0, 1.0], separator="")
    assert "</span><span" in characters
    # One text is its words, as explain maps it (field test: its characters).
    assert visualize.highlight_tokens("a  dull\nfilm", [0.0, 1.0, 0.5]) == (
        visualize.highlight_tokens(["a", "dull", "film"], [0.0, 1.0, 0.5])
    )
    terminal = visualize.highlight_tokens(["a", "b"], [0.0, 1.0], output="terminal")
    assert terminal.startswith("\x1b[48;2;255;255;255m") and "\x1b[48;2;255;38;38m" in terminal
    with pytest.raises(ValueError, match="one value per token"):
        visualize.highlight_tokens(tokens, [1.0])
    # Field test: a shorter text's row of a batch of texts' maps ends in NaN,
    # and was refused; the NaN are cut. A surplus of values is still refused.
    assert visualize.highlight_tokens(["a", "b"], [0.0, 1.0, np.nan, np.nan]) == (
        visualize.highlight_tokens(["a", "b"], [0.0, 1.0])
    )
    with pytest.raises(ValueError, match="one value per token: 2 tokens"):
        visualize.highlight_tokens(["a", "b"], [0.0, 1.0, 0.5])


def test_volume_slices_and_frame_strips():
    saliency = np.zeros((8, 16, 16))
    saliency[5, 2:6, 10:14] = 1.0
    volume = np.full((8, 16, 16, 1), 0.5)
    picture = visualize.volume_slices(volume, saliency, num_slices=8, scale=2)
    # 8 slices and the projection, 32 pixels each, 4-pixel gaps.
    assert picture.size == (9 * 32 + 8 * 4, 32)
    array = np.asarray(picture).astype(int)
    projection = array[:, -32:]
    inside, outside = projection[8, 24], projection[20, 8]  # rows 2..5, cols 10..13 at x2
    assert inside[0] > outside[0] + 50
    strip = visualize.frame_strip(np.zeros((6, 16, 16, 3)), saliency[:6], num_frames=3)
    assert strip.size == (3 * 128 + 2 * 4, 128)
    assert visualize.picture(np.zeros((6, 16, 16, 3)), saliency[:6]).size == (
        6 * 128 + 5 * 4, 128)
    assert visualize.picture(volume, saliency).size[1] == 128
    with pytest.raises(ValueError, match="share their first 3 axes"):
        visualize.volume_slices(volume, saliency[:4])
    # Field test: 6 slices of 8, spread evenly (0, 1, 3, 4, 6, 7), left out
    # slice 5, where the map peaks; it now takes the nearest one's place.
    six = np.asarray(visualize.volume_slices(volume, saliency, num_slices=6, scale=2))
    panels = [six[:, k * 36 : k * 36 + 32].astype(int) for k in range(6)]
    assert [panel[8, 24][0] > panel[20, 8][0] + 50 for panel in panels] == [
        False, False, False, True, False, False]  # slices 0, 1, 3, 5, 6, 7
    frames = np.asarray(visualize.frame_strip(np.zeros((8, 16, 16, 3)), saliency,
                                              num_frames=3, scale=2)).astype(int)
    assert frames[8, 36 + 24][0] > frames[20, 36 + 8][0] + 50  # frames 0, 5, 7


def test_a_texts_picture_shows_whole_words():
    # Field test: cells of 48 pixels cut "dreadful" to "dreadf"; a cell now
    # widens to its word, and the words flow into more rows.
    short = visualize.picture(" ".join(["a"] * 16), np.linspace(0, 1, 16))
    assert short.size == (16 * 48, 24)
    long = visualize.picture(" ".join(["dreadfully"] * 16), np.linspace(0, 1, 16))
    assert long.size == (16 * 48, 48)
    ids = visualize.picture(np.arange(100, 116), np.linspace(0, 1, 16), kind="tokens")
    assert ids.size == (16 * 48, 24)  # ids fit their cells, as before
    huge = visualize.picture("x" * 500, np.ones(1))
    assert huge.size == (16 * 48, 24)  # one word past a row: cut to it, with an ellipsis


def test_picture_picks_the_picture_of_each_input():
    assert visualize.picture(np.zeros((32, 32, 3)), np.eye(32)).size == (32, 32)
    assert visualize.picture(np.zeros((50, 2)), np.arange(50.0)).size == (640, 200)
    tokens = visualize.picture(np.arange(20), np.arange(20.0))
    assert tokens.size == (16 * 48, 2 * 24)
    with pytest.raises(ValueError, match="1, 2 or 3 axes"):
        visualize.picture(np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)))
    # A 3-channel volume is a volume when told so: slices and a projection.
    assert visualize.picture(np.zeros((6, 16, 16, 3)), np.zeros((6, 16, 16)),
                             kind="volume").size == (7 * 128 + 6 * 4, 128)
    with pytest.raises(ValueError, match="kind"):
        visualize.picture(np.zeros((4, 4)), np.zeros((4, 4)), kind="photo")
