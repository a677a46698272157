"""Loading models and images from disk, with errors a command line can print.

Every failure raises `LoadError` (a `ValueError`) whose message is one line
that names the file and says what is wrong with it.
"""

import contextlib
import csv
import importlib
import importlib.util
import inspect
import io
import json
import os
import pathlib
import re
import warnings
import sys
import weakref
import zipfile

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Keras model files: Keras 3's format and the legacy Keras 2 HDF5 files.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


class LoadError(ValueError):
    """A model or image file that cannot be used, with a one-line reason."""


class UnreadableFileError(LoadError):
    """An input file that cannot be read (a text that is no UTF-8 or holds
    no words, an image below); `path` is the file."""

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


class UnreadableImageError(UnreadableFileError):
    """A file that is no readable image (corrupt, cut short, or of another
    kind); `path` is the file."""


def is_model_path(path):
    """True for a `.keras`, `.h5` or `.hdf5` file or a SavedModel folder (and
    a `.tflite` file, which `load_model` refuses with what to do instead)."""
    path = pathlib.Path(path)
    return (
        path.suffix.lower() in (*MODEL_SUFFIXES, ".tflite")
        or (path / "saved_model.pb").is_file()
    )


class _SavedModelSignature:
    """Calls a SavedModel's `serving_default` signature as a model of one
    input (images, signals, token ids, ...): it returns its one output, the
    output `model_output` names, or, with several outputs and none named,
    the dict of them all."""

    def __init__(self, path, model_output=None):
        self._loaded = tf.saved_model.load(str(path))
        signatures = self._loaded.signatures
        if "serving_default" not in signatures:
            raise LoadError(f"{path}: the SavedModel has no serving_default signature.")
        self._function = signatures["serving_default"]
        inputs = self._function.structured_input_signature[1]
        if len(inputs) != 1:
            raise LoadError(
                f"{path}: serving_default must take one images tensor; it takes "
                f"{sorted(inputs)}."
            )
        ((self._input_name, spec),) = inputs.items()
        self.input_shape = tuple(spec.shape)
        self._dtype = spec.dtype
        # Declared as a tf.function's, so that the explainer reads the kind
        # of input (an image, a signal, token ids) from it.
        self.input_signature = [tf.TensorSpec(spec.shape, spec.dtype, name=self._input_name)]
        names = sorted(self._function.structured_outputs)
        self._output_name = names[0] if len(names) == 1 else None
        if model_output is not None:
            self._output_name = _signature_output(path, names, model_output)

    def __call__(self, images, training=False):
        images = tf.cast(images, self._dtype)
        outputs = self._function(**{self._input_name: images})
        return outputs if self._output_name is None else outputs[self._output_name]

    def as_keras_model(self):
        """A functional `keras.Model` around the signature (its one output,
        or the one `model_output` named), so that what reads a Keras model's
        declared output (the command's `--region`) reads this one's; `None`
        for several outputs."""
        if self._output_name is None:
            return None
        inputs = keras.Input(self.input_shape[1:], dtype=self._dtype, name=self._input_name)
        return keras.Model(inputs, keras.layers.Lambda(self, name="saved_model")(inputs))


def _signature_output(path, names, model_output):
    """The signature's output key that `model_output` names: a key, or an
    index `i` for Keras' key `output_i` (a model of a list of outputs)."""
    index = _as_index(model_output)
    if index is not None and f"output_{index}" in names:
        return f"output_{index}"
    if model_output in names:
        return model_output
    raise LoadError(
        f"{path}: model_output={model_output!r} names no output of serving_default; "
        f"its outputs are {names}."
    )


def _as_index(model_output):
    """`model_output` as a list index (an int, or a string of digits), else None."""
    if isinstance(model_output, bool):
        return None
    if isinstance(model_output, int):
        return model_output
    if isinstance(model_output, str) and model_output.isdigit():
        return int(model_output)
    return None


def one_output(model, model_output, path="the model"):
    """A functional Keras model restricted to one of its outputs.

    Args:
        model: a functional `keras.Model` (what `keras.saving.load_model`
            returns for a functional or Sequential model).
        model_output: which output: a key of a dict of outputs, the name of
            an output layer, or an index into a list of outputs (an int or a
            string of digits, as a command line passes it).
        path: how messages name the model.

    Returns:
        A `keras.Model` of the same input(s) whose one output is that one;
        `model` itself when it has one output and `model_output` names it.

    Raises:
        LoadError: when `model_output` names none of the outputs.
    """
    structure = model.output
    names = list(model.output_names)
    index = _as_index(model_output)
    if isinstance(structure, dict):
        keys = list(structure)
        if model_output in keys:
            chosen = structure[model_output]
        else:
            raise LoadError(
                f"{path}: model_output={model_output!r} is not a key of the model's "
                f"outputs; they are {sorted(keys)}."
            )
    else:
        heads = list(structure) if isinstance(structure, (list, tuple)) else [structure]
        if index is None and model_output in names:
            index = names.index(model_output)
        if index is None or not 0 <= index < len(heads):
            raise LoadError(
                f"{path}: model_output={model_output!r} names none of the model's "
                f"{len(heads)} output(s): give an index below {len(heads)} or one "
                f"of the output layers {names}."
            )
        if len(heads) == 1:
            return model
        chosen = heads[index]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, chosen, name=f"{model.name}_head")


def import_custom_objects(modules):
    """Imports the Python modules that define a model's custom objects.

    A model saved with custom layers, models, losses or activations loads
    only where Python knows their classes: those registered with
    `keras.saving.register_keras_serializable` once their module is
    imported, the others when they are passed to Keras' `custom_objects`.
    This imports each module and returns every class and function it
    defines, ready for `custom_objects`.

    Args:
        modules: a module name (`"my_project.layers"`, looked up from the
            current folder too) or the path of a `.py` file, or a list of
            them.

    Returns:
        A dict `{name: object}` of the classes and functions the modules
        define (not those they import).

    Raises:
        LoadError: when a module cannot be found or fails on import.

    Example:

    >>> custom = import_custom_objects("my_layers.py")  # doctest: +SKIP
    >>> model, shape = load_model("model.keras", custom_objects=custom)  # doctest: +SKIP
    """
    names = [modules] if isinstance(modules, (str, os.PathLike)) else list(modules)
    found = {}
    for name in names:
        module = _import_module(os.fspath(name))
        for key, value in vars(module).items():
            if (
                (inspect.isclass(value) or inspect.isfunction(value))
                and getattr(value, "__module__", None) == module.__name__
                and not key.startswith("_")
            ):
                found[key] = value
    return found


def _import_module(name):
    what = f"custom_objects={name!r}"
    try:
        if name.endswith(".py") or os.sep in name or (os.altsep and os.altsep in name):
            path = pathlib.Path(name)
            if not path.is_file():
                raise LoadError(f"{what}: no such file.")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            # Registered under its name, as an import by name would be, and
            # run as Python runs a script: it imports the files beside it.
            sys.modules[path.stem] = module
            try:
                with _on_python_path(str(path.resolve().parent)):
                    spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[path.stem]  # not left half-imported
                raise
            return module
        with _on_python_path(os.getcwd()):
            return importlib.import_module(name)
    except LoadError:
        raise
    except ModuleNotFoundError as error:
        if error.name and name.split(".")[0] == error.name.split(".")[0]:
            raise LoadError(
                f"{what}: no module of that name (from the current folder or the "
                "Python path); give a module name or the path of a .py file."
            ) from None
        raise LoadError(f"{what}: the module failed on import ({_reason(error)}).") from None
    except Exception as error:
        raise LoadError(f"{what}: the module failed on import ({_reason(error)}).") from None


@contextlib.contextmanager
def _on_python_path(folder):
    """Imports look in `folder` first while in this block."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added:
            sys.path.remove(folder)


# Keras' message for a class or function it cannot find, with the module
# the file names for it: the refusal names the object, then its config, whose
# own module comes first (None for a script's), before those of its parts (a
# layer's dtype policy is of module 'keras').
_MISSING_OBJECT = re.compile(
    r"Could not locate (class|function) '([^']+)'"
    r"(?:.*?Full object config: \{'module': (?:None|'([^']*)'))?",
    re.S,
)


def _load_keras(path, custom_objects):
    """`keras.saving.load_model`, its failures as one-line `LoadError`s.

    A class registered under a package (`"package>Name"`) by some other
    module than the one that defines it is found by its plain name among
    `custom_objects` too (Keras looks classes up by the registered name).
    """
    custom_objects = dict(custom_objects or {})
    while True:
        try:
            # Explaining needs no optimizer or loss; legacy files may name
            # training objects that no longer load.
            with warnings.catch_warnings():
                # The optimizer of a compiled model inside it: nothing trains here.
                warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
                return keras.saving.load_model(
                    path, custom_objects=custom_objects, compile=False
                )
        except Exception as error:
            missing = _MISSING_OBJECT.search(str(error))
            registered = missing and re.search(
                rf"'registered_name': '([^']+>{re.escape(missing.group(2))})'", str(error)
            )
            name = missing and missing.group(2)
            if not registered or name not in custom_objects or (
                registered.group(1) in custom_objects
            ):
                raise _keras_load_failure(path, error) from None
            custom_objects[registered.group(1)] = custom_objects[name]


def _is_keras_operation(name):
    """Whether `name` is one of Keras' own operations (`TrueDivide`, `Add`,
    ...: what `x / 6` is in a functional model), not a layer."""
    def subclasses(cls):
        for subclass in cls.__subclasses__():
            yield subclass
            yield from subclasses(subclass)

    return any(
        operation.__name__ == name and operation.__module__.startswith("keras.")
        and not issubclass(operation, keras.layers.Layer)
        for operation in subclasses(keras.Operation)
    )


def _keras_load_failure(path, error):
    """A one-line `LoadError` for a Keras file that did not load."""
    keras_2 = (
        f"{path}: the model was saved by Keras 2 (tf_keras or tf.keras, as converters "
        "such as onnx2tf write it), which Keras 3 cannot read; give its SavedModel "
        "folder instead (model.export(DIR) or tf.saved_model.save in Keras 2)."
    )
    missing = _MISSING_OBJECT.search(str(error))
    unknown = re.search(r"Unknown (layer|object|function|class)[^:']*: '([^']+)'", str(error))
    if (
        missing and (missing.group(3) or "").startswith(("tf_keras.", "keras.src.engine."))
    ) or (unknown and unknown.group(2) == "TFOpLambda"):  # Keras 2's classes
        return LoadError(keras_2)
    if missing:
        kind, name, module = missing.groups()
        if module == "builtins":  # a Lambda's function, saved without its module
            return LoadError(
                f"{path}: the model uses the function {name!r}, saved without a module "
                "(a Lambda layer's function, as converters write them); pass "
                "custom_objects='MODULE', a module or .py file defining it, or give "
                "the model's SavedModel folder instead."
            )
        if module == "__main__" or not module:  # Keras saves None for __main__
            where, hint = "defined in the script that saved it", "'MODULE'"
        else:
            where, hint = f"of module {module!r}", repr(module)
        return LoadError(
            f"{path}: the model uses the custom {kind} {name!r} ({where}), which is not "
            f"imported; pass custom_objects={hint} (a module or .py file defining it)."
        )
    legacy = pathlib.Path(path).suffix.lower() in (".h5", ".hdf5")
    if unknown and not (legacy and _is_keras_operation(unknown.group(2))):  # legacy .h5 files
        kind, name = unknown.groups()
        name = name.split(">")[-1]  # a registered name: "package>Class"
        return LoadError(
            f"{path}: the model uses the custom {kind} {name!r}, which is not "
            "imported; pass custom_objects='MODULE' (a module or .py file defining it)."
        )
    if "disallowed by default" in str(error) and "TFSMLayer" in str(error):
        return LoadError(
            f"{path}: the model wraps a SavedModel (a TFSMLayer), which Keras loads "
            "only from a file you trust; give the SavedModel folder itself, or pass "
            "custom_objects='trust.py', a .py file that calls "
            "keras.config.enable_unsafe_deserialization()."
        )
    if "disallowed by default" in str(error) and "Lambda" in str(error):
        return LoadError(
            f"{path}: a Lambda layer of the model holds Python code (a lambda), which "
            "Keras loads only from a file you trust; to trust it, pass "
            "custom_objects='trust.py', a .py file that calls "
            "keras.config.enable_unsafe_deserialization()."
        )
    if legacy:
        # Keras 3 cannot rebuild some models from the HDF5 files it writes
        # itself: operations on tensors in the graph (`x / 6`, `x + 3`) are
        # saved as layers it does not know, or with their Python numbers
        # where it takes tensors only (MobileNetV3's hard swish).
        return LoadError(
            f"{path}: Keras could not rebuild the model from this legacy HDF5 file "
            f"({_reason(error)}); save it as .keras (model.save('model.keras')) and give "
            "that file."
        )
    return LoadError(f"{path}: not a loadable Keras model ({_reason(error)}).")


def load_model(
    path, images_only=True, grid_size=None, model_output=None, custom_objects=None
):
    """Loads a Keras model file or a SavedModel folder, without compiling it.

    Args:
        path: path to a `.keras` file, a legacy Keras 2 `.h5`/`.hdf5` file,
            or a SavedModel folder whose `serving_default` signature takes
            one tensor of images.
        images_only: bool, refuse models whose one input is not an image
            `(batch, H, W, C)`; `False` takes any one input (signals, token
            ids, volumes). Defaults to `True`.
        grid_size: the explanation's `grid_size`: with two entries, a model
            of `(batch, H, W)` real inputs takes grayscale images without a
            channel axis (`keras_rise.inputs.ModelInputs`), and the input
            shape returned is `(None, H, W, 1)`, the images it is given.
            Defaults to `None`.
        model_output: for a model of several outputs, the one to explain: a
            key of its dict of outputs, the name of an output layer, or an
            index into its list of outputs (`one_output`); for a SavedModel,
            a key of `serving_default`'s outputs or an index `i` for its key
            `output_i`. Defaults to `None`: every output (a detector's dict).
        custom_objects: the classes and functions of a Keras file's custom
            layers, models or losses: a dict, as Keras takes it, or module
            names or `.py` paths to import them from
            (`import_custom_objects`). Defaults to `None`.

    Returns:
        `(model, input_shape)`: a callable of `(batch, H, W, C)` images
        (any one input with `images_only=False`) returning its outputs, or
        the one `model_output` picks, and its declared input shape
        `(None, H, W, C)` (entries may be `None`).

    Raises:
        LoadError: when the path is missing or is not such a model.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise LoadError(f"{path}: no such file or folder.")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            # TF Serving's layout (export_explainer's): versions in numbered folders.
            versions = sorted(
                (child for child in path.iterdir()
                 if child.name.isdigit() and (child / "saved_model.pb").is_file()),
                key=lambda child: int(child.name),
            )
            hint = f" Its version folder holds one: {versions[-1]}." if versions else ""
            raise LoadError(
                f"{path}: a folder that is not a SavedModel (no saved_model.pb).{hint}"
            )
        try:
            model = _SavedModelSignature(path, model_output)
        except LoadError:
            raise
        except Exception as error:
            raise LoadError(
                f"{path}: not a loadable SavedModel ({_reason(error)}){_keras_2_hint(error)}."
            ) from None
        return model, model.input_shape
    if path.suffix.lower() == ".tflite":
        raise LoadError(
            f"{path}: a TensorFlow Lite model, which is not loaded here; in Python, "
            "explain a function that runs tf.lite.Interpreter on a batch (resizing "
            "its input to the batch) with keras_rise.RiseExplainer, or give the "
            "Keras model or SavedModel it was converted from."
        )
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise LoadError(
            f"{path}: not a Keras model; expected a .keras, .h5 or .hdf5 file or a "
            "SavedModel folder."
        )
    if custom_objects is not None and not isinstance(custom_objects, dict):
        custom_objects = import_custom_objects(custom_objects)
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        # Keras' own message for this case is "File not found".
        raise LoadError(
            f"{path}: not a loadable Keras model (a .keras file is a zip archive; "
            "this one is not)."
        )
    model = _load_keras(path, custom_objects)
    if not getattr(model, "inputs", None):
        model = _declared(model, path)
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) > 1:
        names = ", ".join(repr(getattr(i, "name", str(n))) for n, i in enumerate(inputs))
        raise LoadError(
            f"{path}: the model takes {len(inputs)} inputs ({names}); here models of "
            "one input are explained. In Python, RiseExplainer(model, image_input=...) "
            "masks one of several inputs and holds the others fixed; to serve it, "
            "export a keras.Model around keras_rise.RiseLayer(model, image_input=...) "
            "with Keras' model.export."
        )
    if not inputs:
        what = "(batch, height, width, channels) input" if images_only else "input"
        raise LoadError(f"{path}: the model must take one {what}.")
    if model_output is not None:
        model = one_output(model, model_output, path)
    else:
        _FILE_LOSSES[model] = _file_loss(path)
    if images_only:
        return model, image_input_shape(model, path, grid_size)
    return model, _input_shape(model, grid_size)


# The loss each model loaded here (without compiling) was trained with, as
# its file names it.
_FILE_LOSSES = weakref.WeakKeyDictionary()


def _file_loss(path):
    """The loss a `.keras` or `.h5` file's compile configuration names (a
    name, a serialized loss, or one per output), or `None`."""
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            return (config.get("compile_config") or {}).get("loss")
        import h5py

        with h5py.File(path, "r") as file:
            raw = file.attrs.get("training_config")
        if raw is None:
            return None
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw).get("loss")
    except Exception:  # an unreadable configuration: no loss known
        return None


def training_loss(model):
    """The name of the loss a model was trained with, or `None`: its own
    `loss` where it was compiled in this process, else the one its file
    names where `load_model` loaded it (without compiling).

    Returns:
        A str such as `"mse"` or `"MeanSquaredError"` for one loss, or
        `None` (not compiled, several losses, or not a Keras model).

    Example:

    >>> model.compile("adam", "mse")
    >>> keras_rise.loading.training_loss(model)
    'mse'
    """
    loss = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    if loss is None:
        try:
            loss = _FILE_LOSSES.get(model)
        except TypeError:  # not weakly referable
            return None
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, dict) and "class_name" not in loss and len(loss) == 1:
        loss = next(iter(loss.values()))  # one output's, by name
    if isinstance(loss, dict):  # a serialized loss, or one per output
        if "class_name" not in loss:
            return None
        # A function is serialized by its name, as the config.
        function = loss["class_name"] == "function" and isinstance(loss.get("config"), str)
        loss = loss["config"] if function else loss["class_name"]
    if isinstance(loss, str) or loss is None:
        return loss
    return getattr(loss, "__name__", None) or type(loss).__name__


def _input_shape(model, grid_size):
    """The shape of a model's one input as RISE reads it: `(batch, H, W, 1)`
    for `(batch, H, W)` grayscale images without a channel axis (a grid of
    two axes), else as declared."""
    from keras_rise import inputs as inputs_lib

    model_inputs = inputs_lib.ModelInputs(
        model, masked_axes=inputs_lib.masked_axes_of(grid_size)
    )
    # The batch is None: a Keras model built by a call records that call's.
    if model_inputs.adds_channel:
        return (None, *model_inputs.image_shape())
    return (None, *tuple(_declared_input(model).shape)[1:])


def _declared_input(model):
    """The one input a loaded model declares: its Keras tensor, or a
    SavedModel signature's `tf.TensorSpec`."""
    inputs = getattr(model, "inputs", None)
    return inputs[0] if inputs else model.input_signature[0]


def image_input_shape(model, path, grid_size=None, hint=""):
    """The `(batch, height, width, channels)` shape of the images a loaded
    model of one input takes (`load_model`).

    Args:
        model: the model, as `load_model` returns it.
        path: its file, for messages.
        grid_size: as for `load_model`: two axes read `(batch, H, W)` inputs
            as grayscale images.
        hint: str, a sentence that ends the refusal of a model of numeric
            inputs other than images: what the caller offers for them.

    Raises:
        LoadError: for a model of other inputs (signals, token ids, texts,
            volumes), saying what it takes.
    """
    from keras_rise import inputs as inputs_lib

    shape = _input_shape(model, grid_size)
    if len(shape) != 4:  # the declared input, not an image
        if inputs_lib.is_string_dtype(_declared_input(model).dtype):
            raise LoadError(
                f"{path}: the model takes texts, not images; `keras-rise explain` "
                "explains .txt files with it (evaluate takes image models, export models "
                "of numeric inputs)."
            )
        raise LoadError(
            f"{path}: the model must take one (batch, height, width, channels) "
            f"input.{grayscale_hint(model)}" + (f" {hint}" if hint else "")
        )
    return shape


def _declared(model, path):
    """A subclassed model (no `inputs`) wrapped on `keras.Input`s of the
    shape it was built on, so that it declares what it takes."""
    try:
        shape = model.get_build_config()["input_shape"]
    except Exception:
        shape = None
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) < 2
        or not all(size is None or isinstance(size, int) for size in shape)
    ):
        raise LoadError(
            f"{path}: a subclassed model that does not record the shape of its input; "
            "save it wrapped, as keras.Model(inputs, model(inputs)) for inputs = "
            "keras.Input(shape), or export a SavedModel with model.export(path, "
            "input_signature=[...])."
        )
    # The batch it happened to be built on (often 1) is no limit.
    inputs = keras.Input(shape=tuple(shape[1:]))
    return keras.Model(inputs, model(inputs), name=model.name)


def grayscale_hint(model):
    """What to add to a refusal of a model whose `(height, width)` inputs
    could be grayscale images without a channel axis (read as signals unless
    the grid has two axes); `""` for any other model."""
    from keras_rise import inputs as inputs_lib

    model_inputs = inputs_lib.ModelInputs(model)
    if not model_inputs.could_be_channel_less():
        return ""
    shape = tuple(model_inputs.model_image_shape())
    return (
        f" Its {shape} inputs are read as signals; if they are grayscale images "
        "without a channel axis, pass --grid-size 7,7 (a grid of two axes)."
    )


def takes_images(model_input):
    """Whether a model input is an image `(batch, H, W, C)` (any dtype).

    Args:
        model_input: a `keras.Input` (anything with a `shape`).

    Returns:
        bool; `False` for signals, token ids, volumes and videos.
    """
    return len(model_input.shape) == 4


ARRAY_SUFFIXES = (".npy",)
TEXT_SUFFIXES = (".txt",)


def find_arrays(paths, exclude=None):
    """Expands files and folders into a sorted list of `.npy` files (a folder
    of none: those of its subfolders, but `exclude`'s).

    Raises:
        LoadError: for a path that does not exist, a file that is not `.npy`,
            or a folder with none.
    """
    return _find_files(
        paths, ARRAY_SUFFIXES, ".npy arrays",
        "the model does not take images; give its inputs as .npy arrays (one input or "
        "a batch per file).",
        exclude,
    )


def find_texts(paths, exclude=None):
    """Expands files and folders into a sorted list of `.txt` files, one text
    each (as `keras.utils.text_dataset_from_directory` reads them: a folder
    of none gives those of its class folders, but `exclude`'s).

    Raises:
        LoadError: for a path that does not exist, a file that is not `.txt`,
            or a folder with none.
    """
    return _find_files(
        paths, TEXT_SUFFIXES, ".txt files",
        "the model takes texts; give them as .txt files (one text per file).",
        exclude,
    )


def _files_in_folder(path, suffixes, exclude=None):
    """The files of `suffixes` in folder `path`, sorted; holding none, those
    of every folder below it (one per class, as Keras'
    `*_dataset_from_directory` reads them) but those in `exclude` (the
    command's outputs, so that a rerun does not read them)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
    if files:
        return files
    skipped = None if exclude is None else pathlib.Path(exclude).resolve()
    return sorted(
        (p for p in path.rglob("*")
         if p.suffix.lower() in suffixes and p.is_file()
         and not (skipped and skipped in p.resolve().parents)),
        key=lambda p: p.relative_to(path).parts,
    )


def _find_files(paths, suffixes, kind, other_file, exclude=None):
    """The files of `suffixes` that `paths` name (a folder's: `_files_in_folder`)."""
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            files = _files_in_folder(path, suffixes, exclude)
            if not files:
                below = " nor do its subfolders" if any(p.is_dir() for p in path.iterdir()) else ""
                raise LoadError(f"{path}: the folder holds no {kind}{',' if below else ''}{below}.")
            found.extend(files)
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                raise LoadError(f"{path}: {other_file}")
            found.append(path)
        else:
            raise LoadError(f"{path}: no such file or folder.")
    return found


def load_text(path):
    """Reads one text from a UTF-8 file; refuses one without words."""
    try:
        text = pathlib.Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFileError(
            f"{path}: not a readable UTF-8 text ({_reason(error)}).", path
        ) from None
    if not text.split():
        raise UnreadableFileError(f"{path}: the file holds no words.", path)
    return text


def load_array(path):
    """Reads a `.npy` file of model inputs (no pickled objects); an
    `UnreadableFileError` for one that cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UnreadableFileError(
            f"{path}: not a readable .npy array ({_reason(error)}).", path
        ) from None


def _keras_2_hint(error):
    """What to add to a SavedModel's load failure when it holds Keras 2
    objects (e.g. an optimizer's slots) that TensorFlow restores only with
    the tf_keras package installed; `""` otherwise."""
    if "'_UserObject' object has no attribute" not in str(error):
        return ""
    if importlib.util.find_spec("tf_keras") is not None:
        return ""
    return (
        "; `pip install tf_keras` lets TensorFlow restore the Keras 2 (tf.keras) "
        "objects it holds"
    )


def _reason(error, limit=200):
    """`Type: first line` of an error, cut to `limit` characters at a word."""
    text = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {text[0] if text else ''}".rstrip()
    if len(reason) <= limit:
        return reason
    return reason[:limit].rsplit(" ", 1)[0].rstrip(" .,;:") + " …"


def find_images(paths, exclude=None):
    """Expands files and folders into a sorted list of image files.

    A folder gives its images; a folder that holds none but folders of
    them (one per class, the layout `keras.utils.image_dataset_from_directory`
    reads) gives the images of every folder below it, but those in
    `exclude` (a folder: the command's outputs, so that a rerun does not
    explain its own overlays).

    Raises:
        LoadError: for a path that does not exist, or a folder with no images.
    """
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            images = _files_in_folder(path, IMAGE_SUFFIXES, exclude)
            if not images:
                raise LoadError(
                    f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}), "
                    "nor do its subfolders."
                    if any(p.is_dir() for p in path.iterdir()) else
                    f"{path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})."
                )
            found.extend(images)
        elif path.is_file():
            if path.suffix.lower() in ARRAY_SUFFIXES:
                raise LoadError(
                    f"{path}: the model takes images; give image files "
                    f"({', '.join(IMAGE_SUFFIXES)}). .npy arrays are read for models of "
                    "other inputs (signals, token ids, volumes, videos)."
                )
            found.append(path)
        else:
            raise LoadError(f"{path}: no such file or folder.")
    return found


def load_photo(path, channels):
    """Reads an image file at its own size, in a model's channels.

    Args:
        path: image file.
        channels: the model's channels: 1 (grayscale), 3 (RGB) or 4 (RGBA).

    Returns:
        A `PIL.Image`: the photo that overlays are drawn on.

    Raises:
        LoadError: for an unreadable or corrupt file, or a model input that
            no image can be fitted to.
    """
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise LoadError(
            f"{path}: cannot fit an image to a model input with {channels} channels "
            "(expected 1, 3 or 4)."
        )
    try:
        with Image.open(path) as image:
            image.load()
            return _eight_bit(image).convert(modes[channels])
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise _not_an_image(path, error) from None


def _not_an_image(path, error):
    """The `LoadError` of a file that is no image; a model file among the
    images is told where models go."""
    hint = ""
    if pathlib.Path(path).suffix.lower() in MODEL_SUFFIXES:
        hint = " It is a model file: give the model first, then the images."
    return UnreadableImageError(
        f"{path}: not a readable image ({_reason(error)}).{hint}", path
    )


def _eight_bit(image):
    """A grayscale image of 16-bit (or 32-bit integer) pixels scaled to 8 bits.

    PIL's own conversion of such images to "L" clips every value above 255,
    which turns a 16-bit photo white; other images are returned as they are.
    """
    if not (image.mode.startswith("I;16") or image.mode == "I"):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    # 16-bit data (PNG, TIFF) spans 0..65535; an "I" image holding 8-bit
    # values is left at its scale.
    if image.mode != "I" or pixels.max() > 255:
        pixels = pixels / 257.0
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "L")


def model_input(photo, input_shape, preprocessing=None, path=None):
    """Fits a photo to a model's input.

    The photo is resized bilinearly to the input's height and width when
    those are fixed, and its pixels in [0, 255] are mapped by
    `preprocessing`.

    Args:
        photo: a `PIL.Image` from `load_photo`.
        input_shape: the model's `(None, H, W, C)`.
        preprocessing: a `keras_rise.Preprocessing`; `None` scales to
            [0, 1].
        path: the file, named in errors.

    Returns:
        float32 array `(H, W, C)`.
    """
    from keras_rise.preprocessing import Preprocessing

    _, height, width, channels = input_shape
    if height is not None and width is not None:
        photo = photo.resize((width, height), Image.BILINEAR)
    elif height is not None or width is not None:
        raise LoadError(f"{path}: the model input fixes only one side ({input_shape}).")
    array = np.asarray(photo, np.float32).reshape(photo.height, photo.width, channels)
    try:
        return (preprocessing or Preprocessing())(array)
    except ValueError as error:
        raise LoadError(f"{path}: {error}") from None


def load_image(path, input_shape, preprocessing=None):
    """Reads an image file and fits it to a model's input.

    The image is converted to the model's channels (1: grayscale, 3: RGB),
    resized bilinearly to its height and width when those are fixed, and
    its pixels mapped by `preprocessing` (by default to [0, 1]).

    Args:
        path: image file.
        input_shape: the model's `(None, H, W, C)`.
        preprocessing: a `keras_rise.Preprocessing`, or `None` for [0, 1].

    Returns:
        float32 array `(H, W, C)`.

    Raises:
        LoadError: for an unreadable or corrupt file, or a model input that
            no image can be fitted to.
    """
    photo = load_photo(path, input_shape[-1])
    return model_input(photo, input_shape, preprocessing, path)


def load_labels(path):
    """Reads class names: a text file with one name a line, or JSON.

    JSON may be a list of names, or an object from class ids to names
    (`{"0": "cat", ...}`, as Keras' `imagenet_class_index.json`, whose
    entries `[wordnet_id, name]` give their name).

    Returns:
        A dict from class id to name.

    Raises:
        LoadError: for a missing, empty or malformed file.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LoadError(f"{path}: not a text file of labels ({_reason(error)}).") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise LoadError(f"{path}: not valid JSON ({_reason(error)}).") from None
        if isinstance(entries, list):
            entries = dict(enumerate(entries))
        labels = {}
        for key, name in entries.items():
            if isinstance(name, list) and name:
                name = name[-1]
            if not isinstance(name, str):
                raise LoadError(
                    f"{path}: the label of class {key} must be a name (a string); "
                    f"got {name!r}."
                )
            try:
                labels[int(key)] = str(name)
            except ValueError:
                raise LoadError(
                    f"{path}: label keys must be class ids (integers); got {key!r}."
                ) from None
    else:
        labels = dict(enumerate(line.strip() for line in stripped.splitlines()))
    if not labels:
        raise LoadError(f"{path}: holds no labels.")
    return labels


def load_boxes(path, with_labels=False):
    """Reads a JSON file of object boxes, one per image file name.

    Accepts `{"name.png": [top, left, bottom, right], ...}` or, as
    `examples/images/boxes.json`, `{"name.png": {"box": [...], "label": 8}, ...}`;
    coordinates are pixels of the image file, bottom and right exclusive.

    Args:
        path: the JSON file.
        with_labels: also return each entry's `"label"`, the object's class:
            an int class id, or a class name (a string) for the caller to look up.

    Returns:
        A dict from file name to a `[top, left, bottom, right]` list of ints;
        with `with_labels`, also a dict from file name to its label, for the
        entries that have one.

    Raises:
        LoadError: for a missing or malformed file.
    """
    path = pathlib.Path(path)
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise LoadError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoadError(
            f"{path}: not a JSON file of boxes ({_reason(error)})."
        ) from None
    if not isinstance(entries, dict):
        raise LoadError(f"{path}: expected a JSON object mapping image names to boxes.")
    boxes, labels = {}, {}
    for name, entry in entries.items():
        box = entry.get("box") if isinstance(entry, dict) else entry
        valid = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in box)
            and box[0] < box[2]
            and box[1] < box[3]
        )
        if not valid:
            got = (
                f"an object with keys {sorted(entry)}"
                if isinstance(entry, dict) and "box" not in entry
                else repr(box)
            )
            raise LoadError(
                f"{path}: the box of {name!r} must be 4 ints [top, left, bottom, right] "
                f"with top < bottom and left < right, or {{\"box\": [...]}}; got {got}."
            )
        boxes[name] = box
        label = entry.get("label") if isinstance(entry, dict) else None
        if label is not None:
            if isinstance(label, bool) or not isinstance(label, (int, str)) or (
                isinstance(label, int) and label < 0
            ):
                raise LoadError(
                    f"{path}: the label of {name!r} must be a class id (an int >= 0) "
                    f"or a class name (a string); got {label!r}."
                )
            labels[name] = label
    return (boxes, labels) if with_labels else boxes


def image_size(path):
    """`(height, width)` of an image file, read from its header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise _not_an_image(path, error) from None


def write_atomically(path, write):
    """Writes a file through a temporary name, so no half-written file remains.

    Args:
        path: final file path.
        write: callable taking an open binary file object.
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def save_map(path, saliency):
    """Writes a saliency map as a float32 `.npy` file, atomically."""
    write_atomically(path, lambda f: np.save(f, np.asarray(saliency, np.float32)))


def save_png(path, picture):
    """Writes a `PIL.Image` (or a uint8 array) as a PNG file, atomically."""
    if not isinstance(picture, Image.Image):
        picture = Image.fromarray(np.asarray(picture))
    write_atomically(path, lambda f: picture.save(f, format="PNG"))


def write_csv(path, header, rows):
    """Writes a CSV file of `header` then `rows` (in that order), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomically(path, lambda f: f.write(text.getvalue().encode()))
