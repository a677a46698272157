"""Keras callbacks that explain, and score explanations, while a model trains.

Both callbacks explain a fixed set of images with the model being trained,
through one `RiseExplainer` built on first use and reused at every epoch: the
compiled loop reads the model's weights as they are, so training does not
make it retrace.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_rise import _checks, loading, metrics, visualize
from keras_rise import inputs as inputs_lib
from keras_rise import text as text_lib
from keras_rise.config import RiseConfig
from keras_rise.explainer import RiseExplainer


def write_image_summary(name, images, step, description=""):
    """Writes uint8 RGB images as a TensorBoard image summary.

    The same record as `tf.summary.image` (PNG-encoded images after their
    width and height, tagged for TensorBoard's images plugin), written with
    TensorFlow's own `tf.summary.write`, so the `tensorboard` package (which
    TensorFlow 2.21 no longer installs) is needed only to view the logs.

    Args:
        name: str, the summary tag.
        images: uint8 array `(batch, height, width, 3)`.
        step: int, e.g. the epoch.
        description: str, shown in TensorBoard.

    Returns:
        Whether a default summary writer took the summary.
    """
    images = np.asarray(images, np.uint8)
    encoded = [tf.io.encode_png(image) for image in images]
    dimensions = [str(images.shape[2]).encode(), str(images.shape[1]).encode()]
    metadata = summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"),
    )
    return tf.summary.write(
        name, tf.stack(dimensions + encoded), step=step, metadata=metadata
    )


def _padded(pictures):
    """RGB pictures as one batch, the smaller ones padded with white (the
    coloured words of texts of different lengths)."""
    height = max(picture.shape[0] for picture in pictures)
    width = max(picture.shape[1] for picture in pictures)
    batch = np.full((len(pictures), height, width, 3), 255, np.uint8)
    for index, picture in enumerate(pictures):
        batch[index, : picture.shape[0], : picture.shape[1]] = picture
    return batch


def _one_array(images):
    """Whether a list or tuple `images` is one array's nested lists (numbers,
    or images of one shape) rather than several inputs or ragged images."""
    if isinstance(images, dict):
        return False
    try:
        shapes = {np.shape(part) for part in images}
    except ValueError:  # ragged
        return False
    return len(shapes) <= 1


def _several_inputs(inputs, image_input):
    """The inputs of a model of several, a dict or list of arrays, the one
    `image_input` names of numbers (texts are explained alone)."""
    if not isinstance(inputs, (dict, list, tuple)):
        raise TypeError(
            f"With `image_input={image_input!r}`, `images` must be the model's inputs, "
            f"a dict or list of arrays. Received: {type(inputs).__name__}."
        )
    entry = text_lib.masked_entry(inputs, image_input)
    if entry is not None and text_lib.is_text(entry):
        raise TypeError(
            "The callbacks take texts alone (a model of one string input); texts beside "
            "other inputs are explained with RiseExplainer(model, image_input=...)."
            f"explain(inputs). Received texts as images[{image_input!r}]."
        )
    keys = list(inputs) if isinstance(inputs, dict) else range(len(inputs))
    arrays = {key: inputs_lib.numeric_array(f"images[{key!r}]", inputs[key], strings=True)
              for key in keys}
    if isinstance(inputs, dict):
        return arrays
    return [arrays[key] for key in keys]


class _ExplainingCallback(keras.callbacks.Callback):
    """Holds the images, targets and one explainer of the training model."""

    def __init__(self, images, targets, every_n_epochs, explainer_args, image_input=None):
        super().__init__()
        if isinstance(images, (keras.Model, RiseExplainer)):
            raise TypeError(
                f"{type(self).__name__} explains the model being trained (the one "
                "`fit` is called on): its first argument is the images to explain, "
                f"and its options are RiseExplainer's. Received a {type(images).__name__}."
            )
        # Texts, for a model of strings, are explained word by word.
        self._texts = None
        self.image_input = image_input
        if image_input is not None:
            self._given = _several_inputs(images, image_input)
        elif text_lib.is_text(images):
            self._texts, _ = text_lib.as_texts(images, "images")
        elif isinstance(images, (dict, list, tuple)) and not _one_array(images):
            kind = (
                f"a dict of inputs {sorted(images)}" if isinstance(images, dict)
                else f"a {type(images).__name__} of {len(images)} parts of different "
                "shapes"
            )
            raise ValueError(
                f"{type(self).__name__} was given {kind}: for a model of several "
                "inputs pass `image_input=` (a name or an index) to say which one "
                "RISE masks, the others held fixed; images must be of one shape."
            )
        else:
            self._given = inputs_lib.numeric_array("images", images)
        self._checked = None
        self.targets = targets
        self.every_n_epochs = _checks.integer(
            "every_n_epochs", every_n_epochs, minimum=1
        )
        self.explainer_args = RiseConfig.from_dict(explainer_args).arguments()
        self._explainer = None

    def set_model(self, model):
        """Keras' hook before training; the inputs and targets are checked
        against the model here, so that bad ones fail before the first
        epoch rather than after it."""
        super().set_model(model)
        images = self.images
        if self._texts is None:
            # The explainer's own check (of the default target too, which a
            # model of values refuses): one forward pass of one input.
            self.explainer._score_of(self.targets, images)

    @property
    def images(self):
        """The inputs explained, as a batch, checked against the model's input
        (images, signals, token ids, volumes: whatever the model takes; or
        texts, a list of strings, for a model of strings)."""
        if self._texts is not None:
            if self.model is not None and not text_lib.takes_text(self.model):
                raise TypeError(
                    f"{type(self).__name__} was given texts as `images`, but the model "
                    "does not take strings; give it the inputs the model takes."
                )
            return self._texts
        if self._checked is None or self._checked[0] is not self.model:
            model = self.model
            axes = inputs_lib.masked_axes_of(
                self.explainer_args.get("grid_size"), self.explainer_args.get("binary_masks")
            )
            model_inputs = inputs_lib.ModelInputs(
                model, image_input=self.image_input, masked_axes=axes,
                binary_masks=self.explainer_args.get("binary_masks"),
            )
            checked, _ = model_inputs.check(self._given)
            if model is None:
                return checked
            self._checked = (model, checked)
        return self._checked[1]

    @property
    def explainer(self):
        """The `RiseExplainer` of the model being trained (built on first use)."""
        if self._explainer is None or self._explainer.model is not self.model:
            self._explainer = RiseExplainer(
                self.model, image_input=self.image_input, **self.explainer_args
            )
        return self._explainer

    @property
    def masked(self):
        """The input the maps are of: the images, or for a model of several
        inputs the one `image_input` names."""
        images = self.images
        if self.image_input is None:
            return images
        return images[self.explainer.engine.inputs.locate(images)]

    def _due(self, epoch):
        """Whether to run after `epoch` (0-based), as `validation_freq` does."""
        return (epoch + 1) % self.every_n_epochs == 0


class SaliencyCallback(_ExplainingCallback):
    """Explains fixed images at the end of epochs; logs the heatmaps.

    Overlays (heatmap over image, as `keras_rise.visualize.overlay`) go to
    TensorBoard as `tf.summary.image` under `log_dir/rise` (open `log_dir`
    in TensorBoard next to the `keras.callbacks.TensorBoard` logs), and/or to
    PNG files `png_dir/epoch_003_image_00.png`. The latest maps are kept in
    `saliency`.

    Args:
        images: array `(batch, height, width, channels)` the model takes,
            e.g. a few validation images; or texts (a list of strings) for
            a model of strings, drawn as coloured words.
        targets: what to explain, as for `RiseExplainer.explain`: `None`
            (default) for each image's current top prediction, an int, one
            int per image, or a `keras_rise.scores.Score` with one target.
        log_dir: str or path, TensorBoard log folder, or `None`.
        every_n_epochs: int, explain after every n-th epoch. Defaults to `1`.
        png_dir: str or path, folder for PNG overlays, or `None`.
        alpha: float, heatmap opacity of the overlays. Defaults to `0.5`.
        colormap: colormap of the overlays. Defaults to `"jet"`.
        image_input: for a model of several inputs, which one is masked
            (as `RiseExplainer` takes it); `images` are then all the
            model's inputs, a dict or list of arrays. Defaults to `None`.
        **explainer_args: `RiseExplainer` arguments (`num_masks`, `seed`, …).

    Example:

    >>> callback = keras_rise.callbacks.SaliencyCallback(
    ...     x_val[:4], log_dir="logs", num_masks=1000)
    >>> model.fit(x, y, epochs=10, callbacks=[callback])
    """

    def __init__(
        self,
        images,
        targets=None,
        log_dir=None,
        every_n_epochs=1,
        png_dir=None,
        alpha=0.5,
        colormap="jet",
        image_input=None,
        **explainer_args,
    ):
        super().__init__(images, targets, every_n_epochs, explainer_args, image_input)
        if log_dir is None and png_dir is None:
            raise ValueError(
                "SaliencyCallback needs somewhere to write: give `log_dir` (for "
                "TensorBoard) and/or `png_dir` (for PNG files)."
            )
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}.")
        visualize.colorize(np.zeros((1, 1)), colormap)  # fails early if unknown
        self.log_dir = None if log_dir is None else pathlib.Path(log_dir)
        self.png_dir = None if png_dir is None else pathlib.Path(png_dir)
        self.alpha = float(alpha)
        self.colormap = colormap
        self.saliency = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        # Silent: the epoch's own progress bar is on screen.
        self.saliency = self.explainer.explain(self.images, self.targets, verbose=0)
        kind = self.explainer.engine.inputs.picture_kind(self.explainer.binary_masks)
        overlays = [
            np.asarray(
                visualize.picture(image, saliency, self.alpha, self.colormap, kind=kind)
            )
            for image, saliency in zip(self.masked, self.saliency)
        ]
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir / "rise"))
            with self._writer.as_default():
                write_image_summary("rise_overlays", _padded(overlays), step=epoch)
            self._writer.flush()
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
            for index, picture in enumerate(overlays):
                name = f"epoch_{epoch + 1:03d}_image_{index:02d}.png"
                loading.save_png(self.png_dir / name, picture)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class DeletionInsertionCallback(_ExplainingCallback):
    """Adds `deletion_auc` and `insertion_auc` to the epoch logs.

    After every `every_n_epochs`-th epoch it explains the images with RISE
    and scores the maps with `keras_rise.metrics.deletion` (lower is better)
    and `insertion` (higher is better); the means over the images go into
    `logs`, where `History`, `CSVLogger`, `TensorBoard`, `ReduceLROnPlateau`
    and `EarlyStopping(monitor="insertion_auc", mode="max")` see them. List
    this callback *before* those that read the logs. With `every_n_epochs`
    above 1 it also runs after the first epoch, so that loggers which fix
    their columns then (`CSVLogger`) keep the keys; on the epochs between,
    the keys are absent (`CSVLogger` writes "NA"), as validation metrics
    are with `validation_freq`. The latest per-image values are kept in
    `deletion` and `insertion` (`CausalCurves`).

    Args:
        images: array `(batch, height, width, channels)` the model takes, or
            texts (a list of strings) for a model of strings.
        targets: what to explain and score: `None` (default) for each
            image's current top prediction, an int, one int per image, or a
            `keras_rise.scores.Score` with one target (the maps are judged
            by the same score).
        every_n_epochs: int: after every n-th epoch, and after the first.
            Defaults to `1`.
        step: pixels per step of the curves; see `metrics.deletion`.
        substrate: what insertion starts from (`metrics.insertion`):
            `None` (default) for a blurred copy of each image, for tokens
            and texts the `fill_value`, for a table's features the
            `fill_value` given as a row, else the mean its Normalization
            layer holds (else the `fill_value`);
            `"blur"`, or a value such as `0.0` for a black image.
        image_input: for a model of several inputs, which one is masked
            and altered by the curves; `images` are then all the model's
            inputs, a dict or list of arrays. Defaults to `None`.
        **explainer_args: `RiseExplainer` arguments (`num_masks`, `seed`,
            `batch_size`, `fill_value`, …); deletion fills removed pixels
            with the same `fill_value`.

    Example:

    >>> callback = keras_rise.callbacks.DeletionInsertionCallback(
    ...     x_val[:8], num_masks=500)
    >>> history = model.fit(x, y, epochs=5, callbacks=[callback])
    >>> history.history["insertion_auc"]
    """

    def __init__(
        self,
        images,
        targets=None,
        every_n_epochs=1,
        step=None,
        image_input=None,
        substrate=None,
        **explainer_args,
    ):
        super().__init__(images, targets, every_n_epochs, explainer_args, image_input)
        if step is not None:
            step = _checks.integer("step", step, minimum=1)
        self.step = step
        if isinstance(substrate, str) and substrate != "blur" and self._texts is None:
            raise ValueError(
                '`substrate` must be None, "blur", a float or an array broadcastable '
                f"to the images. Received: substrate={substrate!r}."
            )
        self.substrate = substrate
        self.deletion = None
        self.insertion = None
        self._told_flat = set()

    def _due(self, epoch):
        """After every n-th epoch and after the first (see the class)."""
        return epoch == 0 or super()._due(epoch)

    def _default_substrate(self):
        """Token ids start from the explainer's fill (an id); a table's
        features from the explainer's fill where it is a row (a baseline),
        else from the mean the model's own Normalization layer holds, as
        `metrics.insertion` does (`ModelInputs.baseline_row`), else from the
        fill; other inputs from a blur."""
        explainer = self.explainer
        fill = explainer.fill_value
        if inputs_lib.layout(self.masked)[1]:
            return fill
        table = explainer.engine.inputs
        if table.reads_features():
            row = None if np.ndim(fill) else table.baseline_row()
            return fill if row is None else row
        return "blur"

    def set_model(self, model):
        """As the base class; and a table's fill and substrate are checked
        before training (`metrics` refuses a blur across its columns)."""
        super().set_model(model)
        if self._texts is None:
            table = self.explainer.engine.inputs
            table.check_table_fill(self.explainer.fill_value)
            substrate = self._default_substrate() if self.substrate is None else self.substrate
            table.check_table_fill(substrate, "substrate")

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        explainer = self.explainer
        saliency = explainer.explain(self.images, self.targets, verbose=0)
        common = {
            "targets": self.targets,
            "step": self.step,
            "batch_size": explainer.batch_size,
            "image_input": self.image_input,
            "binary_masks": explainer.binary_masks,
        }
        # Token ids are inserted into a sequence of the fill id, not a blur;
        # words into a text of the fill word (or into no words).
        substrate = self.substrate
        if substrate is None and self._texts is not None:
            word = isinstance(explainer.fill_value, str)
            substrate = explainer.fill_value if word else "blur"
        elif substrate is None:
            substrate = self._default_substrate()
        # A flat curve (an untrained model's, often) is told once per metric,
        # not after every epoch.
        with metrics.flat_curves_told_once(self._told_flat):
            self.deletion = metrics.deletion(
                self.model,
                self.images,
                saliency,
                fill_value=explainer.fill_value,
                **common,
            )
            self.insertion = metrics.insertion(
                self.model, self.images, saliency, substrate=substrate, **common
            )
        if logs is not None:
            logs["deletion_auc"] = float(np.mean(self.deletion.auc))
            logs["insertion_auc"] = float(np.mean(self.insertion.auc))
