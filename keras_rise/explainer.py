"""`RiseExplainer`: explain a Keras model's predictions in one call."""

import collections
import copy
import dataclasses
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks, _progress, _startup, distribute, estimators
from keras_rise import inputs as inputs_lib
from keras_rise import scores as scores_lib
from keras_rise import text as text_lib
from keras_rise.config import RiseConfig
from keras_rise._tracing import instance_function
from keras_rise.engine import RiseEngine, RiseResult

# The scores `targets` stand for, made once so that the compiled loops see
# the same objects, from call to call and explainer to explainer, and do not
# retrace.
_CLASS_SCORE = scores_lib.ClassScore()
_ALL_CLASSES = scores_lib.ClassScore("all")
_OUTPUT_SCORE = scores_lib.OutputScore()
_BINARY_BOTH = scores_lib.BinaryScore("all")


def _not_callable_hint(model):
    """What to pass instead of `model`, which is not callable, where it is
    known: a SavedModel's signature, the model of `load_model`'s pair, an
    ONNX Runtime session's `run`."""
    if getattr(model, "signatures", None) is not None:
        return (
            " It is a SavedModel loaded with tf.saved_model.load: pass its "
            ".signatures['serving_default'], or keras_rise.loading.load_model(EXPORT_DIR)[0]."
        )
    if isinstance(model, tuple) and len(model) == 2 and callable(model[0]):
        return " keras_rise.loading.load_model returns (model, input_shape): pass its [0]."
    if type(model).__name__ == "InferenceSession":
        return (
            " An ONNX Runtime session is explained through a function of its inputs: "
            "lambda x: session.run(None, {NAME: np.moveaxis(np.asarray(x, 'float32'), "
            "-1, 1)})[0] for an NCHW model (keras_rise gives images channels last)."
        )
    return ""


class RiseExplainer:
    """Explains any Keras model's predictions with RISE (Petsiuk et al., 2018).

    RISE probes the model with `num_masks` randomly masked copies of each
    image and averages the masks weighted by a score of the model's output
    — by default the score of the class being explained, or any
    `keras_rise.scores.Score` (a regression output, a segment, a detection,
    an embedding's similarity); the map estimates
    `E[score · mask] / keep_prob`, which the paper estimates as
    `Σ_n score_n · mask_n / (num_masks · keep_prob)` (`score_regression=
    False`) and the default with the score regression's lower noise.
    The whole loop runs as one compiled `tf.function`; masks are generated
    on the device from `seed`, a batch at a time, so memory does not grow
    with `num_masks`.

    Inputs other than images are read from the model's declared input
    (`keras_rise.inputs.layout`): signals `(batch, length, channels)` and
    vectors `(batch, length)` are masked along the length, volumes and
    videos `(batch, depth, height, width, channels)` on their three axes,
    and integer token ids `(batch, length)` token by token, masked tokens
    taking `fill_value` as their id (the pad or mask token). A model of
    strings (`keras.Input((1,), dtype="string")` and a `TextVectorization`
    layer, or Python code of texts) is given texts and masked word by word
    (`keras_rise.text`). Maps have one value per masked position. A plain
    callable declares nothing: it is taken to take images (or token ids, or
    texts, as it is given them).

    Args:
        model: a `keras.Model` (or any callable, e.g. a `tf.function`) whose
            image input is `(batch, height, width, channels)`, or a Keras
            model of signals, token ids, volumes or videos. Python code
            that returns NumPy arrays (a scikit-learn pipeline, an ONNX
            Runtime session, a client of a served model) works too: it is
            called with NumPy arrays through `tf.numpy_function`, so not
            with `jit_compile=True`, and its outputs must keep their shape
            from batch to batch. Its output
            is read by the score passed as `targets` to `explain`: by
            default class scores `(batch, num_classes)`, ideally
            probabilities, or a scalar output `(batch,)`.
        num_masks: int, masks per explanation. The paper uses 4000 for
            ResNet50 and 6000 for VGG16. Defaults to `4000`.
        grid_size: cells of the random grid per masked axis: an int, a
            tuple with one per axis (e.g. `(4, 7, 7)` for short videos), or
            `None` (default): 7 per axis, one per token for token ids. Two
            entries for a model of `(height, width)` inputs, e.g. `(7, 7)`
            on `keras.Input((28, 28))`, read them as grayscale images
            without a channel axis and mask both axes (otherwise they are
            signals of `height` steps).
        keep_prob: float in (0, 1), probability that a cell is kept.
            Defaults to `0.5`.
        batch_size: int, masked images per forward pass of the model, or
            `None` (default): 100, fewer for large images so that a pass
            holds about 5.2 million pixels (20 at 512×512), which keeps
            memory in bounds (`RiseConfig.batch_size_for`).
        seed: int, selects the mask stream; equal seeds give equal maps.
            `None` draws one at random, kept as `self.seed` (and in
            `get_config`) so the maps can be made again. Explainers of one
            model that differ only in `seed` or `fill_value` share one
            compiled loop. Defaults to `0`.
        fill_value: what masked-out pixels take, `masked = image · mask +
            fill_value · (1 - mask)`, in the units the model takes (for a
            model that takes pixels in [-1, 1], `-1.0` is black and `0.0`
            grey): a float; an array broadcastable to `(height, width,
            channels)` (e.g. a per-channel mean); one array per image,
            `(batch, height, width, channels)`, for the batch given to
            `explain`; `"mean"`, each image's own mean colour; or `"blur"`,
            a Gaussian blur of each image (11 pixels, sigma 5, the insertion
            metric's substrate): the map then says which pixels' detail
            matters rather than which pixels' presence. The fill is the
            question RISE asks: "what if this region were black (or
            average, or blurred)?". For texts (a model of strings) masked
            words are dropped, or, given a word such as `"[UNK]"` or
            `"[MASK]"`, each is replaced by it, which keeps the other words
            in their places. Defaults to `0.0`.
        mask_sampling: `"independent"` (each grid cell an independent coin
            flip, as in the paper), `"stratified"` (Latin-hypercube draws:
            over every 64 masks each cell is kept equally often),
            `"orthogonal"` (`keep_prob=0.5` only: each run of 128 masks is
            an orthogonal array of strength 3 — every cell, pair and triple
            of cells takes each on/off pattern equally often, and masks come
            in complementary pairs — while every mask is still the paper's;
            see `keras_rise.masks.orthogonal_words`), or `"auto"`
            (default): `"orthogonal"` with `score_regression` at
            `keep_prob=0.5` on grids of up to 64 cells (the 7×7 image grid),
            where it halves the regression's remaining noise, and
            `"independent"` otherwise — so `score_regression=False` is the
            paper's recipe exactly.
        complementary_masks: bool, use each mask together with its
            complement `1 - mask` (antithetic pairs; needs `keep_prob=0.5`).
            Defaults to `False`.
        centered_scores: bool, subtract the mean score from the scores
            before weighting the masks, and add it back as a constant: the
            same expected map with less noise. Defaults to `False`.
        score_regression: bool, fit the scores linearly on a coarse copy
            of each mask and add the fit's exact expectation, leaving only
            the residual to chance (a regression control variate that
            includes centring; see `keras_rise.regression`): the same
            expected map as the paper's `Σ score · mask / (N · keep_prob)`
            from about a fifth of the masks, a sixth to a ninth with the
            default orthogonal runs (`mask_sampling`). `False` gives the
            paper's estimator on the paper's masks exactly. Defaults to
            `True`.
        jit_compile: bool, compile each step into two XLA programs — the
            masks and the forward pass, which need nothing from the steps
            before, so up to 4 steps are launched ahead (as many masked
            batches in memory); and the estimator's state and sums —; on a
            GPU a step is then two launches instead of a few hundred. The
            masks are the same as without XLA and the maps equal to float
            rounding. Defaults to `False`.
        dtype_policy: `None` (default: run the model as it is), or
            `"mixed_float16"`, `"mixed_bfloat16"`, `"float16"`,
            `"bfloat16"` or `"float32"`: run a copy of the model under that
            Keras dtype policy (functional and Sequential models; `"float32"`
            runs a model built in lower precision in full), kept in step with
            the model's weights at every call. Maps are accumulated in float32.
        binary_masks: bool or `None`, for inputs masked along one axis
            (vectors, signals): every cell kept whole or replaced by
            `fill_value`, without the paper's blending of neighbouring
            cells, and by default one cell per position (`grid_size=n`:
            runs of `length / n`). For tabular features `(features,)`, whose
            neighbours are unrelated columns, so that each feature's map is
            its own. Token ids always get such masks. `None` (default)
            decides by the model: on for a real-valued `(features,)` input
            that its `Dense` layers read while it stays a vector (through
            `Normalization`, `Dropout`, `Concatenate`, activations or any
            other layer of the same rank), as tabular models do; off (the
            paper's blended grid) for every other input, signals and Python
            code included. Or one bool per masked axis: `(False, True)` on
            a model of multivariate series `(steps, channels)` masks both
            axes, the steps blended in a grid and each channel kept or
            replaced whole, for a map `(steps, channels)` (`grid_size=(s,
            channels)` sets the steps' cells). Defaults to `None`.
        strategy: `None`, or a `tf.distribute.Strategy` (e.g.
            `MirroredStrategy`, `MultiWorkerMirroredStrategy`): every
            replica sums its share of the mask stream, by mask index, and
            one all-reduce adds the shares, so the map equals the
            single-device map for the same seed. Build or load the model
            under `strategy.scope()` so that each device holds its weights.
            `explain`'s `tolerance` is refused with a strategy; its standard
            errors are estimated from each replica's share (with
            `score_regression`, from fits of that share's earlier masks), so
            they are another estimate of the same error than one device's.
            Not part of `get_config()`.
        image_input: for a model with several inputs, which one RISE masks:
            a key of the dict, or an index or input name of the list, that
            `explain` is given; the other inputs are held fixed for each
            example. A string input is masked word by word, as texts are
            (see `explain`). `None` (default) for a model with one input.

    Example:

    >>> inputs = keras.Input((32, 32, 3))
    >>> x = keras.layers.GlobalAveragePooling2D()(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(4, "softmax")(x))
    >>> explainer = keras_rise.RiseExplainer(model, num_masks=200)
    >>> explainer.explain(np.random.rand(2, 32, 32, 3)).shape
    (2, 32, 32)
    >>> explainer.explain(np.random.rand(32, 32, 3), targets="all").shape
    (32, 32, 4)
    >>> score = keras_rise.scores.ClassScore([0, 2])  # two classes at once
    >>> explainer.explain(np.random.rand(2, 32, 32, 3), targets=score).shape
    (2, 32, 32, 2)
    """

    def __init__(
        self,
        model,
        num_masks=4000,
        grid_size=None,
        keep_prob=0.5,
        batch_size=None,
        seed=0,
        fill_value=0.0,
        mask_sampling="auto",
        complementary_masks=False,
        centered_scores=False,
        score_regression=True,
        jit_compile=False,
        dtype_policy=None,
        binary_masks=None,
        strategy=None,
        image_input=None,
    ):
        if not callable(model):
            raise TypeError(
                "`model` must be a keras.Model or a callable mapping images to "
                f"outputs. Received: model={model!r} "
                f"(of type {type(model).__name__})." + _not_callable_hint(model)
            )
        self.model = model
        self.config = RiseConfig.from_arguments(locals())
        for name, value in self.config.arguments().items():
            setattr(self, name, value)
        self.image_input = image_input
        if not text_lib.takes_text(model, image_input):
            _checks.image_fill(self.fill_value)  # a word fills texts only
        self.strategy = _checks.strategy(strategy)
        self._loop = _CompiledLoop.shared(model, self.config, image_input, self.strategy)
        self._engine = self._loop.engine
        self._engine.inputs.check_fill(self.fill_value, self.binary_masks)
        self._explain_fn = self._loop.function
        self._probes = {}
        self._checked = {}
        self._text_explainers = {}
        self.last_num_masks = None

    @property
    def _seed(self):
        return tf.constant(self.seed, tf.int64)

    @property
    def engine(self):
        """The `RiseEngine` this explainer compiles."""
        return self._engine

    def explain(
        self, images, targets=None, tolerance=None, return_stderr=False, verbose="auto"
    ):
        """Computes RISE saliency maps.

        Args:
            images: array-like `(batch, height, width, channels)`, or one
                image `(height, width, channels)`, of any float dtype the
                model accepts (integer images are converted to float32;
                pixels in [0, 255] for a Keras model that does not scale
                them itself, with a first `Rescaling` or `Normalization`
                layer, are warned of: `keras_rise.inputs.PixelRangeWarning`).
                For a model with several inputs, the dict or list of arrays
                the model takes (see `image_input`). For a model of other
                inputs, its inputs with or without the batch axis, e.g.
                `(batch, length, channels)`, or token ids `(batch, length)`
                (kept as integers). A model of strings takes texts — one
                string, or `(batch,)` or `(batch, 1)` of them — masked word by
                word (`keras_rise.text`): a masked word is dropped (or
                replaced by a `fill_value` word), texts of
                one word count share their masks, and each map has one value
                per word, NaN past a shorter text's end. So is a string
                input named by `image_input` among several, the others held
                fixed (one example per text). The images of a
                call share its mask batches, so the loop is compiled once
                per number of images per call (up to `batch_size`), the
                first time it is met.
            targets: what to explain. `None` (default) explains each
                image's top predicted class (or one value per image,
                `(batch,)` or a linear unit's `(batch, 1)`, itself); an int
                explains that class for every image; a
                sequence of `batch` ints gives one class per image, and so
                do one-hot or probability vectors, floats `(batch,
                num_classes)` (their argmax); `"all"` explains every class
                at once. A binary classifier's one
                sigmoid unit (`Dense(1, "sigmoid")`) has two classes, 0
                (`1 - p`) and 1 (`p`), as `keras_rise.scores.BinaryScore`
                reads them. Any other task takes a
                `keras_rise.scores.Score` (`OutputScore`, `RegionScore`,
                `DetectionScore`, `SimilarityScore`, ...) or a callable
                mapping the model's outputs to `(batch,)` or `(batch, T)`
                float scores, written with TensorFlow ops.
            tolerance: `None` (default: always use `num_masks` masks), or a
                float > 0: stop adding mask batches once every map's
                estimated relative standard error — the root-mean-square
                standard error of its pixels over the standard deviation of
                the map across pixels — is below it (checked in the compiled
                loop after each independent batch, from the 4th on: a batch
                is a forward pass of masks, or with the default orthogonal
                sampling a whole run of 128 masks, so that it stops after
                512 masks at the earliest; with other samplings after the
                4th forward pass or stratified run, e.g. after 400
                independent masks at 100 a pass). It is a standard
                error, not a bound: one map's actual error scatters around
                it, and the first checks estimate it from a few runs (see
                `benchmarks/tolerance.py`: at 0.2, a third of the maps
                stopped beyond it and a fifth beyond 1.5 times it); for a
                firmer bound ask for half the error you can accept.
                `num_masks` stays the ceiling; `last_num_masks` says how
                many were used. When all
                `num_masks` masks leave a map's error at or above the
                tolerance, a `UserWarning` says so and how far it got. Not
                with a `strategy`.
            return_stderr: bool, also return each pixel's estimated
                standard error (from the spread between independent mask
                batches, as for `tolerance`; NaN with fewer than two, or
                three with `score_regression`, and a `UserWarning` says
                so). Defaults to `False`.
            verbose: progress over the masks, as Keras' `verbose`: `0`
                silent, `1` a `keras.utils.Progbar`, `2` one line at the
                end, `"auto"` the bar only once the call has run for 2
                seconds, so that short calls print nothing (where standard
                output is not a terminal or a notebook, such as a log
                file, the one line of `2` instead). The bar counts
                the masks of every chunk of `batch_size` images
                (`num_masks` each), moved from inside the compiled loop
                after each mask batch; with a `tolerance` it ends at the
                masks used; with a `strategy` it moves once per chunk. The
                maps do not depend on it. Defaults to `"auto"`.

        Returns:
            float32 `np.ndarray` of shape `(batch, height, width)`, or
            `(batch, height, width, T)` for a score with `T` targets
            (`targets="all"`: one per class); the batch axis is dropped
            when a single image was given. Other inputs get one value per
            masked position: `(batch, length)`, `(batch, depth, height,
            width)`, and `T` last. With
            `return_stderr`, a tuple `(saliency, stderr)` of equal shapes.

        Example:

        >>> explainer = keras_rise.RiseExplainer(model, num_masks=4000)
        >>> saliency = explainer.explain(image, verbose=1)  # a bar over 4000 masks
        >>> saliency.shape  # image: (224, 224, 3)
        (224, 224)
        >>> saliency = explainer.explain(image, tolerance=0.1)  # warns if not reached
        """
        _checks.boolean("return_stderr", return_stderr)
        result = self._explain_result(
            images, targets, tolerance, verbose, stderr_wanted=return_stderr
        )
        if return_stderr:
            return result.saliency, result.stderr
        return result.saliency

    def explain_result(self, images, targets=None, tolerance=None, verbose="auto"):
        """Like `explain`, with the class, score and error of every map.

        Args:
            images, targets, tolerance: as for `explain`.
            verbose: `0`, `1`, `2` or `"auto"`, as for `explain`. Defaults
                to `"auto"`.

        Returns:
            A `keras_rise.RiseResult` of NumPy arrays: `saliency`,
            `targets` (for class scores the class explained, int32
            `(batch,)`, also available as `class_ids`; for other scores
            what their `targets_of` makes, e.g. a `RegionScore`'s weights
            over the output's positions; `()` for scores without per-image
            targets), `scores` (the score of the unmasked
            image, `(batch,)` or `(batch, T)`),
            `stderr` (like `saliency`) and `num_masks` (masks used per
            image, `(batch,)`); without the batch axis for a single image.

        Example:

        >>> result = explainer.explain_result(image)
        >>> result.class_ids, result.scores
        """
        return self._explain_result(images, targets, tolerance, verbose)

    def _explain_result(self, images, targets, tolerance, verbose, stderr_wanted=False):
        """`explain_result`, for `explain` and `explain_result` alike; with
        `stderr_wanted` (`explain(return_stderr=True)`), standard errors that
        could not be estimated at all are warned of."""
        if not tf.executing_eagerly():
            # Its arguments are read as NumPy values and it runs its own
            # compiled loop: inside a tf.function it would fail deep inside.
            raise RuntimeError(
                "RiseExplainer.explain runs eagerly (it compiles its own loop); it was "
                "called inside a tf.function or a graph. Call it outside, or put "
                "keras_rise.RiseLayer(model, ...) in the graph instead."
            )
        if self._reads_text(images):
            return self._explain_texts(images, targets, tolerance, verbose, stderr_wanted)
        verbose = _progress.check_verbose(verbose)
        model_inputs = self._engine.inputs
        inputs, single = model_inputs.check(images)
        image = model_inputs.image(inputs)
        spatial, tokens = inputs_lib.layout(image)
        model_inputs.check_grid_size(
            self.grid_size, spatial, tokens, inputs, self.binary_masks
        )
        fill = self._fill_of(image, tokens)
        if tokens:
            self._check_token_fill(inputs, fill)
            self._check_token_ids(inputs)
        score, score_targets, given = self._score_of(targets, inputs)
        threshold = _checks.tolerance(tolerance)
        if tolerance is not None and self.strategy is not None:
            raise ValueError(
                "`tolerance` (early stopping) is not supported with a `strategy`: "
                "replicas would have to agree after every step. Pass one or the "
                "other."
            )

        starts = range(0, len(image), self.config.batch_size_for(spatial))
        progress = _progress.MaskProgress(verbose, len(starts) * self.num_masks)
        # Only a bar that moves during the loop needs a callback in it: 0 and
        # 2 run the loop traced without one.
        call_id = None
        if verbose in (1, "auto") and self.strategy is None:
            call_id = _progress.register(progress)
        try:
            results = self._run_chunks(
                inputs, starts, score, score_targets, threshold, fill, progress, call_id
            )
        finally:
            if call_id is not None:
                _progress.unregister(call_id)
        progress.close()
        fields = [
            tf.nest.map_structure(
                lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
                *[result[index] for result in results],
            )
            for index in range(len(RiseResult._fields))
        ]
        saliency, stderr, result_masks = fields[0], fields[3], fields[4]
        if not np.all(np.isfinite(saliency)):
            raise ValueError(
                f"The maps hold NaN or inf: the score {score!r} gave NaN or inf on "
                "some masked inputs (e.g. the log of an output that masking drives "
                "to 0); make it finite for any input."
            )
        message = given.unmasked_warning(fields[2])
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=3)
        run_length = self._engine.masks((spatial, tokens)).run_length
        if tolerance is not None:
            message = _tolerance_missed(
                saliency,
                stderr,
                len(spatial),
                tolerance,
                int(np.max(result_masks)),
                run_length,
            )
            if message is not None:
                # Two frames up is the user's call of explain or explain_result.
                warnings.warn(message, UserWarning, stacklevel=3)
        elif stderr_wanted and np.isnan(stderr).all():
            warnings.warn(
                f"`return_stderr`: the standard errors are all NaN: after "
                f"{int(np.max(result_masks))} masks they could not be estimated; "
                f"{_stderr_needs(run_length)}",
                UserWarning,
                stacklevel=_checks.outside_stacklevel(),
            )
        if single:
            fields = [tf.nest.map_structure(lambda x: x[0], field) for field in fields]
        result = RiseResult(*fields)
        self.last_num_masks = result.num_masks
        return result

    def _explain_texts(self, texts, targets, tolerance, verbose, stderr_wanted=False):
        """`_explain_result` for a model of strings: word by word
        (`keras_rise.text`). Texts of one word count are explained together;
        the maps of shorter texts are NaN past their last word."""
        fill = text_lib.masked_word(self.fill_value, "fill_value", 0.0)
        if self.jit_compile:
            raise ValueError(
                "`jit_compile=True` cannot compile a model of strings (XLA has no "
                "string ops); pass jit_compile=False."
            )
        given, others, key, keys = self._text_parts(texts)
        name = "texts" if key is None else f"inputs[{key!r}]"
        texts, single = text_lib.as_texts(given, name)
        others = _others_per_text(others, len(texts), single)
        split = [text.split() for text in texts]
        longest = max(len(words) for words in split)
        merged = {}
        for _, rows in text_lib.word_count_groups(texts):
            rows_of_others = {other: value[rows] for other, value in others.items()}
            result = self._words_explainer(key, keys)._explain_result(
                text_lib.word_inputs([split[i] for i in rows], fill, rows_of_others),
                text_lib.targets_of_rows(targets, rows, len(texts)),
                tolerance,
                verbose,
                stderr_wanted,
            )
            for name, value in result._asdict().items():
                per_word = longest if name in ("saliency", "stderr") else None
                merged[name] = _place(merged.get(name), value, rows, len(texts), per_word)
        fields = [merged[name] for name in RiseResult._fields]
        if single:
            fields = [tf.nest.map_structure(lambda x: x[0], field) for field in fields]
        result = RiseResult(*fields)
        self.last_num_masks = result.num_masks
        return result

    def _reads_text(self, inputs):
        """Whether `inputs` are texts for a model of strings, or hold texts
        as the input `image_input` names."""
        if self.image_input is None:
            return text_lib.is_text(inputs) and text_lib.takes_text(self.model)
        key = self._text_key(inputs)
        return (
            key is not None
            and text_lib.is_text(inputs[key])
            and text_lib.takes_text(self.model, self.image_input)
        )

    def _text_key(self, inputs):
        """The key (dict) or index (list) of `image_input` in `inputs`, as
        the engine locates the masked input; `None` for a single array."""
        if not isinstance(inputs, (dict, list, tuple)):
            return None
        return self._engine.inputs.locate(inputs)

    def _text_parts(self, inputs):
        """`(texts, others, key, keys)`: the texts; for a model of several
        inputs also the other inputs by key (NumPy arrays), the texts' key
        and the inputs' keys in order (`None` and `()` for texts alone)."""
        if self.image_input is None:
            return inputs, {}, None, ()
        key = self._text_key(inputs)
        keys = tuple(inputs) if isinstance(inputs, dict) else tuple(range(len(inputs)))
        others = {
            other: np.asarray(inputs[other].numpy() if tf.is_tensor(inputs[other])
                              else inputs[other])
            for other in keys
            if other != key
        }
        return inputs[key], others, key, keys

    def _words_explainer(self, key=None, keys=()):
        """The explainer of this one's options on `text_lib.TextModel`: word
        positions masked as token ids, the texts' words (and the model's
        other inputs, `keys` but `key`) held fixed."""
        if (key, keys) not in self._text_explainers:
            arguments = dict(self.config.arguments(), fill_value=0.0)
            shape = text_lib.text_shape(self.model, self.image_input)
            model = text_lib.TextModel(self.model, shape, key, keys)
            self._text_explainers[key, keys] = RiseExplainer(
                model, **arguments, strategy=self.strategy, image_input="positions"
            )
        return self._text_explainers[key, keys]

    def _run_chunks(
        self, inputs, starts, score, score_targets, threshold, fill, progress, call_id
    ):
        """Runs the compiled loop on each chunk of `batch_size` images.

        Returns:
            A list of `RiseResult`s of tensors, one per chunk.
        """
        image = self._engine.inputs.image(inputs)
        results = []
        chunk_size = starts.step
        for first in starts:
            last = first + chunk_size
            chunk = inputs_lib.to_tensors(inputs_lib.slice_batch(inputs, first, last))
            chunk_targets = None
            if score_targets is not None:
                chunk_targets = tf.nest.map_structure(
                    lambda t: tf.constant(t[first:last]), score_targets
                )
            chunk_fill = None
            if fill is not None:
                chunk_fill = tf.constant(fill[first:last] if fill.ndim == image.ndim else fill)
            # The tolerance, seed and progress id are tensors, so changing
            # them does not retrace.
            result = self._run(
                chunk, score, chunk_targets, threshold, chunk_fill, self._seed, call_id
            )
            # A chunk's images share its masks.
            progress.end_chunk(result.num_masks.numpy()[0])
            results.append(result)
        return results

    def _fill_of(self, image, tokens=False):
        """The `fill_value` as float32 data for the compiled loop, or `None`.

        A number or an array is passed to the loop as a tensor (so that
        explainers that differ only in their fill share one loop); a
        per-image array as `(batch, H, W, C)`, sliced along with the images.
        `None` for `"blur"` and `"mean"`, which the loop makes from the
        images. For token sequences the fill is a token id.
        """
        fill = inputs_lib.fill_with_channel(self.fill_value, image.shape)
        if tokens:
            _checks.token_fill(fill)
        _checks.image_fill(fill)
        if isinstance(fill, str):
            return None
        # Token ids travel in their own dtype, so large ids stay exact.
        dtype = image.dtype if tokens else np.float32
        if not isinstance(fill, np.ndarray) or fill.ndim < image.ndim:
            _checks.fill_broadcasts(fill, image.shape[1:])
            return np.asarray(fill, dtype)
        _checks.fill_broadcasts(fill, image.shape)
        return np.broadcast_to(fill, image.shape).astype(dtype)

    def _check_token_fill(self, inputs, fill):
        """Runs the model once on a sequence of nothing but the fill id, so
        that an id the model cannot take (e.g. outside an embedding's
        vocabulary) fails here, naming `fill_value`, not inside the loop."""
        model_inputs = self._engine.inputs
        first = inputs_lib.slice_batch(inputs, 0, 1)
        image = model_inputs.image(first)
        key = ("token fill", image.shape, image.dtype.str, np.asarray(fill).tobytes())
        if key in self._checked:
            return
        own = fill[:1] if fill.ndim == image.ndim else fill
        filled = np.broadcast_to(own, image.shape).astype(image.dtype)
        try:
            model_inputs.probe_first_with(first, filled)
        except ValueError as error:
            raise ValueError(
                f"`fill_value={self.fill_value!r}` is not a token id the model takes "
                f"(masked tokens become it): {error}"
            ) from None
        self._checked[key] = True

    def _check_token_ids(self, inputs):
        """Runs the model on every unmasked sequence (one pass each, against
        `num_masks` for its map), so that an id it cannot take (outside an
        embedding's vocabulary, say) in any of them fails here, naming the
        input, not as a graph error inside the loop."""
        model_inputs = self._engine.inputs
        batch = model_inputs.image(inputs).shape[0]
        step = self.batch_size or 100  # sequences are small: no memory to plan
        for start in range(0, batch, step):
            stop = min(start + step, batch)
            try:
                model_inputs.probe(inputs_lib.slice_batch(inputs, start, stop))
            except ValueError as error:
                cause = error.__cause__ or error
                where = (
                    "" if batch == 1 else
                    f" at index {start}" if stop == start + 1 else
                    f" at index {start} to {stop - 1} (of {batch})"
                )
                raise ValueError(
                    f"`images`: the model could not be called on the token ids{where}; "
                    f"is an id outside its vocabulary? {type(cause).__name__}: "
                    f"{_checks.error_summary(cause)}"
                ) from None

    def _run(self, *arguments):
        """Calls the compiled explainer, naming the devices if they fail.

        Args:
            *arguments: those of `_CompiledLoop.function`, the progress id
                last (`None` with a strategy).
        """
        if self.strategy is None:
            return self._engine.inputs.run(self._loop.function, *arguments)
        try:
            return self._engine.inputs.run(self._loop.function, *arguments[:-1])
        except (tf.errors.OpError, RuntimeError) as error:
            devices = list(self.strategy.extended.worker_devices)
            message = _checks.error_summary(error)
            raise ValueError(
                f"RISE could not run the model on the strategy's devices {devices}: "
                f"{type(error).__name__}: {message}"
            ) from error

    def _probe(self, inputs):
        """The model's outputs on the first example (cached by input shapes).

        Returns:
            `(outputs, key)`, `key` naming the inputs' shapes and dtypes.
        """
        if self._reads_text(inputs):
            given, others, key, keys = self._text_parts(inputs)
            texts, single = text_lib.as_texts(given)
            first = {other: value[:1] for other, value in
                     _others_per_text(others, len(texts), single).items()}
            return self._words_explainer(key, keys)._probe(
                text_lib.word_inputs([texts[0].split()], others=first)
            )
        # Two copies of the first example: a score that ignores the batch
        # axis fails here rather than inside the compiled loop.
        first = inputs_lib.slice_batch(inputs, 0, 1)
        key = str(tf.nest.map_structure(lambda x: (x.shape[1:], x.dtype.str), first))
        if key not in self._probes:
            twice = tf.nest.map_structure(lambda x: np.concatenate([x, x]), first)
            self._probes[key] = self._engine.inputs.probe(twice)
        return self._probes[key], key

    def _score_of(self, targets, inputs):
        """The score `targets` stands for, and its per-image targets or `None`.

        Checks the score once, eagerly, on the model's outputs for the first
        example, so that a wrong score fails here with a one-line message
        rather than inside the compiled loop.

        Returns:
            `(score, targets, given)`: the score to compile — for a score
            with a `trace_key`, the one compiled for every score with that
            key (`scores.canonical`) —, the per-image targets as NumPy
            arrays (class ids, or the score's own data from `targets_of`),
            or `None` for targets made in the loop from the model's outputs,
            and the score `targets` stands for itself (whose data the
            targets hold; `Score.unmasked_warning` names them).
        """
        outputs, key = self._probe(inputs)
        batch = len(self._engine.inputs.image(inputs))
        score_targets = None
        if isinstance(targets, scores_lib.Score) or (
            callable(targets) and not isinstance(targets, str)
        ):
            score = scores_lib.as_score(targets, "targets", self.model)
        elif targets is None:
            if scores_lib.holds_detections(outputs):
                raise ValueError(
                    'The model returns detections (a dict with "boxes"): pass '
                    "targets=keras_rise.scores.DetectionScore(box, class_id); "
                    "keras_rise.scores.detections(model(images)) lists them."
                )
            score = scores_lib.default_score(outputs, _CLASS_SCORE, _OUTPUT_SCORE, self.model)
        elif scores_lib.is_sigmoid_unit(self.model):  # its classes 0 (1 - p) and 1 (p)
            score_targets, all_classes = _checks.targets(targets, batch, 2)
            score = _BINARY_BOTH if all_classes else scores_lib.BINARY_SCORE
        else:
            _checks.targets(targets, batch, None)
            selected = _CLASS_SCORE.select(outputs)
            if getattr(selected, "shape", None) is None or selected.shape.rank != 2:
                shape = getattr(selected, "shape", None)
                raise ValueError(
                    "Class `targets` need a model that returns class scores "
                    "(batch, num_classes); it returns "
                    + (
                        "shape (batch" + "".join(f", {d}" for d in shape[1:])
                        + (",)" if shape.rank == 1 else ")")
                        if shape is not None else type(selected).__name__
                    )
                    + ". Pass a keras_rise.scores.Score as `targets` for other outputs."
                )
            score_targets, all_classes = _checks.targets(targets, batch, int(selected.shape[1]))
            score = _ALL_CLASSES if all_classes else _CLASS_SCORE
        if score.trace_key() is not None:
            # The score's own data, the same for every example: one row of it.
            own = tf.nest.map_structure(
                lambda t: np.asarray(t)[:1], score.targets_of(outputs)
            )
            score_targets = tf.nest.map_structure(
                lambda t: np.repeat(t, batch, axis=0), own
            )
        # Scores with equal keys, and equal keras_rise scores made anew per
        # call, share one compiled graph.
        graph_score = scores_lib.canonical(score)
        if (id(score), key) in self._checked:
            return graph_score, score_targets, score
        try:
            value = score(outputs)
        except (ValueError, TypeError):
            # The scores say what is wrong themselves; a score function's
            # failure is already a `ScoreFailed` naming it.
            raise
        except Exception as error:  # e.g. a TensorFlow error in a Score subclass
            raise ValueError(
                f"The score {score!r} failed on the model's outputs: "
                f"{type(error).__name__}: {_checks.error_summary(error)}"
            ) from error
        scores_lib.check_result(value, 2, score)
        # Checked once per score object and input shape; the object is kept
        # alive so that its id is not reused by another score.
        if len(self._checked) >= 256:  # scores made per call (one per detection)
            self._checked.clear()
        self._checked[(id(score), key)] = score
        return graph_score, score_targets, score

    def __repr__(self):
        """`<RiseExplainer model='name' num_masks=...>`: the model's name and
        the options given other than their defaults."""
        defaults = RiseConfig.defaults()
        given = [
            f"{name}="
            + (np.array2string(value, separator=", ") if isinstance(value, np.ndarray)
               else repr(value))
            for name, value in self.config.arguments().items()
            if not _same(value, defaults[name])
        ]
        if self.image_input is not None:
            given.append(f"image_input={self.image_input!r}")
        name = getattr(self.model, "name", type(self.model).__name__)
        return " ".join([f"<RiseExplainer model={name!r}", *given]) + ">"

    def get_config(self):
        """Returns the constructor arguments, with the model serialized."""
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            **self.config.to_dict(),
            "image_input": self.image_input,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds an explainer, and its model, from `get_config()`.

        As with any Keras config, the model is rebuilt from its architecture
        only: load its weights separately, e.g. with
        `explainer.model.set_weights(...)`.
        """
        config = copy.deepcopy(config)  # Keras empties what it deserializes
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def _others_per_text(others, count, single):
    """The other inputs beside texts, one row per text (a batch axis added
    for one text)."""
    if single:
        others = {key: value[None] for key, value in others.items()}
    for key, value in others.items():
        if value.ndim == 0 or len(value) != count:
            raise ValueError(
                f"The input {key!r} must hold one example per text: {count} texts, "
                f"received shape {value.shape}."
            )
    return others


def _place(merged, value, rows, count, longest=None):
    """Puts one group's result field into the whole batch's, `(count, ...)`.

    With `longest`, `value` holds per-word maps `(rows, words, ...)`, padded
    with NaN to the `longest` text. A field without a batch axis (the `()`
    targets of a score without per-image ones) is kept as it is.
    """
    array = np.asarray(value)
    if array.ndim == 0 or array.shape[0] != len(rows):
        return value if merged is None else merged
    value = array
    if merged is None:
        shape = (count, *value.shape[1:])
        if longest is not None:
            shape = (count, longest, *value.shape[2:])
            merged = np.full(shape, np.nan, value.dtype)
        else:
            merged = np.zeros(shape, value.dtype)
    if longest is None:
        merged[rows] = value
    else:
        merged[rows, : value.shape[1]] = value
    return merged


def _stderr_needs(run_length):
    """What a standard error needs, and how to get it, for masks in balanced
    runs of `run_length` (1: independent masks)."""
    if run_length > 1:
        return (
            f"it needs at least two whole runs of {run_length} masks (the mask "
            "sampling's balanced runs; with `score_regression`, two after the first). "
            "Raise `num_masks`."
        )
    return (
        "it needs at least two mask batches (with `score_regression`, two after the "
        "first). Raise `num_masks` or lower `batch_size`."
    )


def _tolerance_missed(saliency, stderr, num_axes, tolerance, num_masks, run_length=1):
    """The warning for maps whose error is not below `tolerance`, or `None`.

    The error is the loop's stopping rule, `estimators.relative_stderr`: per
    map, the root-mean-square standard error of its pixels over the map's
    standard deviation across pixels.

    Args:
        saliency, stderr: float32 `(batch, *spatial)`, e.g. `(batch, H, W)`,
            or `(batch, *spatial, T)` for `T` targets.
        num_axes: the number of masked axes, `len(spatial)`.
        tolerance: float, as given to `explain`.
        num_masks: int, the masks each map had.
        run_length: int, masks per balanced run (`GridMasks.run_length`).
    """
    shown = f"{float(tolerance):.6g}"  # np.float32(0.2) as 0.2
    if saliency.ndim == num_axes + 2:  # one row per (image, target)
        saliency, stderr = np.moveaxis(saliency, -1, 1), np.moveaxis(stderr, -1, 1)
    pixels = int(np.prod(saliency.shape[-num_axes:]))
    relative = estimators.relative_stderr(
        saliency.reshape(-1, pixels), stderr.reshape(-1, pixels)
    ).numpy()
    missed = ~(relative < tolerance)
    if not missed.any():
        return None
    if len(missed) == 1:
        count = "the map"
    elif missed.all():
        count = f"all {len(missed)} maps"
    else:
        count = f"{missed.sum()} of {len(missed)} maps"
    if np.isnan(relative).any():
        return (
            f"`tolerance={shown}` was not reached: after all {num_masks} masks the "
            f"standard error of {count} could not be estimated; {_stderr_needs(run_length)}"
        )
    worst = float(relative.max())
    if worst > _FLAT:
        return (
            f"`tolerance={shown}` was not reached: after all {num_masks} masks "
            f"{'the map' if len(missed) == 1 else 'the worst map'} is nearly flat, its "
            f"standard error {worst:.3g} times its spread across positions: the score "
            "hardly changes whatever is masked (a "
            "saturated or constant output?), so more masks would not give the map "
            "a shape. Explain another score or output."
        )
    needed = int(np.ceil(num_masks * (worst / tolerance) ** 2))
    return (
        f"`tolerance={shown}` was not reached: after all {num_masks} masks "
        f"{count} still had a relative standard error above it (the worst: {worst:.3g}). "
        f"Raise `num_masks` (the error falls as 1/sqrt(num_masks): about {needed:,} "
        f"masks for {shown}) or the tolerance."
    )


# A map whose standard error is this many times its spread over positions is
# flat: noise around a constant (`_tolerance_missed`).
_FLAT = 30.0


# TensorFlow's "retracing" warning is dropped for the compiled loop: it is
# traced once per number of images per call (mask batches are shared by a
# call's images, so the batch is static) and per kind of call, by design; the
# warning's advice does not apply. The same holds for the metrics' curve loop
# (`metrics._CurveRunner`), traced per input shape, e.g. per word count of texts.
tf.get_logger().addFilter(_startup.DropRetracingNotices(("_CompiledLoop.", "_CurveRunner.")))


class _CompiledLoop:
    """An engine and its compiled `explain`, shared by equal explainers.

    Explainers of the same model, image input and options (but the seed and
    a numeric fill, which the function takes as tensors) share one compiled
    loop, so that a new explainer per image does not trace and compile it
    again. A loop lives as long as an explainer holds it, and the
    `RECENT` loops made last are kept besides (with their models), for
    explainers made and dropped one after another.
    """

    RECENT = 4
    _shared = weakref.WeakValueDictionary()
    _recent = collections.OrderedDict()

    def __init__(self, model, config, image_input, strategy):
        self.engine = RiseEngine(model, config, image_input)
        engine = self.engine
        if strategy is None:

            def explain(inputs, score, targets, tolerance, fill, seed, progress=None):
                # `progress`: `None`, or the id of the call's progress bar,
                # for which the loop is traced with a callback in it.
                report = None if progress is None else _progress.graph_hook(progress)
                return engine.explain(
                    inputs, score, targets, tolerance, fill=fill, seed=seed, progress=report
                )

        else:

            def explain(inputs, score, targets, tolerance, fill, seed):
                del tolerance  # refused by the explainer
                return distribute.explain_on_replicas(
                    engine, strategy, inputs, score, targets, fill=fill, seed=seed
                )

        # Counted apart: loops of different explainers, each traced once per
        # input shape, would add up under the one `explain` above.
        self.function = instance_function(explain)

    @classmethod
    def shared(cls, model, config, image_input, strategy):
        """The loop for these arguments: an existing one, or a new one."""
        fill = config.fill_value
        key = (
            id(model),
            dataclasses.replace(config, seed=0, fill_value=fill if isinstance(fill, str) else 0.0),
            repr(image_input),
            id(strategy),
        )
        # The key holds the model's id: the loop holds the model, so the id
        # is not reused while the loop lives.
        loop = cls._shared.get(key)
        if loop is None:
            loop = cls(model, config, image_input, strategy)
            cls._shared[key] = loop
        cls._recent[key] = loop
        cls._recent.move_to_end(key)
        while len(cls._recent) > cls.RECENT:
            cls._recent.popitem(last=False)
        return loop


def _same(value, default):
    """Whether an option's checked value is its default."""
    if isinstance(value, np.ndarray):  # a fill per channel: never a default
        return False
    return type(value) is type(default) and value == default
