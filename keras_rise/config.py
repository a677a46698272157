"""`RiseConfig`: the options of RISE, their defaults and checks, in one place.

Every front end — `RiseExplainer`, `RiseLayer`, `export_explainer`, the
callbacks, the Beam handler and the `keras-rise` command — builds a
`RiseConfig` from what it is given and hands it to the engine; the command
line's flags, choices, defaults and help are read from the fields below.
"""

import dataclasses
from typing import Any, Optional

import numpy as np

from keras_rise import _checks

# `batch_size=None`: this many masked inputs per forward pass, fewer for
# inputs so large that a pass would hold more than `PIXELS_PER_PASS` pixels.
# Activations grow with the pixels of a pass: MobileNetV2 at 512×512 peaks
# at 8.8 GB with 100 per pass and 2.4 GiB with 20 (= 5.2 M pixels); at
# 224×224 the cap is 104, so 100 stays. `benchmarks/README.md` has the
# measurements.
DEFAULT_BATCH_SIZE = 100
PIXELS_PER_PASS = 20 * 512 * 512


def default_batch_size(spatial_shape):
    """Masked inputs per forward pass for inputs of a spatial shape (e.g.
    `(H, W)`) when `batch_size` is `None`: `DEFAULT_BATCH_SIZE`, or fewer so
    that a pass holds at most `PIXELS_PER_PASS` pixels. Unknown sizes count
    as 1."""
    pixels = int(np.prod([size or 1 for size in spatial_shape], dtype=np.int64))
    return int(max(1, min(DEFAULT_BATCH_SIZE, PIXELS_PER_PASS // max(pixels, 1))))


def _option(default, help, flag=True, choices=None, shows_default=False):
    """A field with what the command line needs to offer it (`shows_default`:
    its help says the default itself)."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help, "flag": flag, "choices": choices, "shows_default": shows_default
        },
    )


@dataclasses.dataclass(frozen=True)
class RiseConfig:
    """The options of a RISE explanation, checked.

    Construct it with keywords; every value is checked (a `TypeError` or
    `ValueError` names the option, what was received and what is allowed)
    and stored as a plain Python value (`fill_value` as a float or a float32
    array). Equal configs give equal maps for the same model and inputs.

    Args:
        num_masks: int >= 1, masks per explanation (the most, with a
            tolerance). The paper uses 4000 for ResNet50. Defaults to `4000`.
        grid_size: cells of the random grid per masked axis: an int >= 1
            for every axis, a tuple with one per axis (e.g. `(4, 7, 7)` for
            16-frame videos), or `None` (default): 7 per axis, and for token
            sequences one cell per token. Two entries on a model of
            `(height, width)` inputs mask them as grayscale images without a
            channel axis (see `keras_rise.inputs.ModelInputs`).
        keep_prob: float in (0, 1), probability that a cell is kept.
            Defaults to `0.5`.
        batch_size: int >= 1, masked inputs per forward pass of the model,
            or `None` (default): 100, fewer for large inputs so that a pass
            holds at most about 5.2 million pixels (20 at 512×512; see
            `batch_size_for`).
        seed: int, selects the mask stream, or `None`: one drawn at random
            here, kept as `seed` (and in `get_config`) so the maps can be
            made again. Defaults to `0`.
        fill_value: what masked-out pixels take, in the model's input
            units: a float; an array broadcastable to one image
            `(height, width, channels)`, or one per image `(batch, height,
            width, channels)`; `"mean"`, each image's mean colour; or
            `"blur"`, a Gaussian blur of each image (so masking removes
            detail, not colour); for texts, a word that takes each masked
            word's place (`RiseExplainer`). Defaults to `0.0`.
        mask_sampling: `"auto"`, `"independent"`, `"stratified"` or
            `"orthogonal"` (an orthogonal array of strength 3 per run of 128
            masks; needs `keep_prob=0.5`). `"auto"` (default) is
            `"orthogonal"` with the score regression at `keep_prob=0.5` on
            grids of at most 64 cells, and `"independent"` otherwise (see
            `keras_rise.masks.auto_sampling`).
        complementary_masks: bool, use each mask with its complement (needs
            `keep_prob=0.5`). Defaults to `False`.
        centered_scores: bool, subtract the mean score before weighting the
            masks. Defaults to `False`.
        score_regression: bool, the regression control variate (`False`:
            the paper's estimator exactly). Defaults to `True`.
        jit_compile: bool, compile each step into two XLA programs — masks
            and forward pass; the estimator's sums — (pays on GPUs).
            Defaults to `False`.
        dtype_policy: `None` or a mixed Keras dtype policy name for the
            model's forward passes. Defaults to `None`.
        binary_masks: bool or `None`, masks of whole cells kept or
            replaced, without the paper's blending, and one cell per
            position unless `grid_size` says otherwise: each feature of a
            tabular model's `(features,)` input on its own. For inputs
            masked along one axis; token ids always get them. `None`
            (default): on for a vector of features (a real-valued
            `(features,)` input that the model's `Dense` layers read
            directly, see `ModelInputs.reads_features`), off for every
            other input. Or one bool per masked axis: `(False, True)` on a
            model of multivariate series `(steps, channels)` masks both
            axes, the steps blended in a grid of 7 cells and each channel
            kept or replaced whole, for a map per step and channel (a
            two-entry `grid_size` may set the steps' cells, e.g. `(12,
            channels)`). Defaults to `None`.

    Example:

    >>> config = keras_rise.RiseConfig(num_masks=2000, seed=3)
    >>> keras_rise.RiseConfig.from_dict(config.to_dict()) == config
    True
    """

    num_masks: int = _option(4000, "random masks per input")
    grid_size: Any = _option(
        None,
        "mask grid cells per axis, or one per axis as 4,7,7 (default: 7; one per "
        "token for token ids; 7,7 reads a model of (H, W) inputs as grayscale images)",
    )
    keep_prob: float = _option(0.5, "probability that a grid cell is kept")
    batch_size: Optional[int] = _option(
        None,
        "masked inputs per forward pass (default: 100, fewer for inputs over "
        "52 000 pixels, so that a pass holds about 5.2 M pixels)",
    )
    seed: int = _option(0, "mask seed; equal seeds give equal maps")
    fill_value: Any = _option(
        0.0,
        "what masked-out pixels become, in the model's input units: a number, "
        "mean (each image's mean colour), blur (its Gaussian blur) or a .npy file "
        "of an array broadcastable to one input (a table's baseline row); for texts, "
        "a word that replaces each masked word, e.g. [UNK] (default: 0.0; for "
        "texts none, and masked words are dropped)",
        shows_default=True,
    )
    mask_sampling: str = _option(
        "auto",
        "independent coin flips per cell, stratified blocks of 64 masks, or "
        "orthogonal runs of 128 (every cell, pair and triple kept equally often; "
        "keep-prob 0.5); auto: orthogonal with the score regression at keep-prob "
        "0.5 on grids of up to 64 cells, else independent",
        choices=("auto", "independent", "stratified", "orthogonal"),
    )
    complementary_masks: bool = _option(
        False, "use every mask with its complement (needs keep-prob 0.5)"
    )
    centered_scores: bool = _option(
        False, "subtract the mean score before weighting the masks (less noise)"
    )
    score_regression: bool = _option(
        True,
        "fit the scores on coarse copies of the masks and add the fit's exact "
        "expectation (--no-score-regression: the paper's plain average)",
    )
    jit_compile: bool = _option(
        False, "compile each step (masks and model; sums) into two XLA programs; pays on GPUs"
    )
    dtype_policy: Optional[str] = _option(
        None,
        "run the model's forward passes under this Keras mixed policy",
        choices=("mixed_float16", "mixed_bfloat16"),
    )
    binary_masks: Any = _option(
        None,
        "keep or replace whole cells, unblended: one cell per position by default "
        "(for inputs masked along one axis; token ids always are; default: on for "
        "a table's features, a vector that Dense layers read directly, else off)",
        shows_default=True,
    )

    def __post_init__(self):
        from keras_rise.precision import check_policy

        checked = {
            "num_masks": _checks.integer("num_masks", self.num_masks, minimum=1),
            "grid_size": _checks.grid_size(self.grid_size),
            "keep_prob": _checks.keep_prob(self.keep_prob),
            "batch_size": (
                None
                if self.batch_size is None
                else _checks.integer("batch_size", self.batch_size, minimum=1)
            ),
            "seed": _checks.seed(self.seed),
            "fill_value": _checks.fill_value(self.fill_value, max_ndim=5, words=True),
            "mask_sampling": _checks.sampling(
                self.mask_sampling,
                "mask_sampling",
                _checks.keep_prob(self.keep_prob),
                auto=True,
            ),
            "centered_scores": _checks.boolean("centered_scores", self.centered_scores),
            "score_regression": _checks.boolean("score_regression", self.score_regression),
            "jit_compile": _checks.boolean("jit_compile", self.jit_compile),
            "dtype_policy": check_policy(self.dtype_policy),
            "binary_masks": (
                None
                if self.binary_masks is None
                else _checks.binary_axes("binary_masks", self.binary_masks)
            ),
        }
        grid, binary = checked["grid_size"], checked["binary_masks"]
        if isinstance(grid, tuple) and isinstance(binary, tuple) and len(grid) != len(binary):
            raise ValueError(
                "`grid_size` and `binary_masks` must give as many entries, one per masked "
                f"axis. Received: grid_size={grid} and binary_masks={binary}."
            )
        checked["complementary_masks"] = _checks.complementary(
            self.complementary_masks, checked["keep_prob"], "complementary_masks"
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __eq__(self, other):
        if not isinstance(other, RiseConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self):
        # Kept once computed: a compiled loop's weak cache hashes its keys
        # again when it drops them, which may happen while the interpreter
        # shuts down and this module's globals are gone.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(repr(sorted(self.to_dict().items())))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self):
        # String hashes differ between processes: a pickled config (e.g.
        # sent to Beam's workers) hashes itself again where it lands.
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state

    @classmethod
    def names(cls):
        """The option names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def defaults(cls):
        """`{name: default}` of every option."""
        return {field.name: field.default for field in dataclasses.fields(cls)}

    @classmethod
    def fields(cls):
        """The dataclass fields, with `metadata` `help`, `flag` and `choices`."""
        return dataclasses.fields(cls)

    def batch_size_for(self, spatial_shape):
        """Masked inputs per forward pass for inputs of a spatial shape:
        `batch_size`, or for `None` `default_batch_size(spatial_shape)`."""
        if self.batch_size is not None:
            return self.batch_size
        return default_batch_size(spatial_shape)

    def arguments(self):
        """`{name: value}` as checked (an array fill stays an array)."""
        return {name: getattr(self, name) for name in self.names()}

    def to_dict(self):
        """`{name: value}` of plain Python values (an array fill as a list)."""
        arguments = self.arguments()
        if isinstance(arguments["fill_value"], np.ndarray):
            arguments["fill_value"] = arguments["fill_value"].tolist()
        return arguments

    @classmethod
    def from_arguments(cls, arguments):
        """Builds a config from a front end's constructor arguments.

        Args:
            arguments: a dict holding every option by name (e.g. the
                constructor's `locals()`); other keys are ignored.
        """
        return cls(**{name: arguments[name] for name in cls.names()})

    @classmethod
    def from_dict(cls, config):
        """Builds a config from `to_dict()` (or any subset of the options).

        Raises:
            TypeError: for a key that is not an option.
        """
        unknown = set(config) - set(cls.names())
        if unknown:
            raise TypeError(
                f"Unknown explainer arguments {sorted(unknown)}; expected some of "
                f"the RISE options {sorted(cls.names())}."
            )
        return cls(**config)
