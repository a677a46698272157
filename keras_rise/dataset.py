"""`explain_dataset`: RISE maps for a whole `tf.data.Dataset`, written as they come.

Maps are numbered by the element's position in the dataset and written
through a temporary file and a rename, and `index.csv` gets a line only
after its map is in place, so a crash loses no finished map and leaves no
half-written one; a rerun skips what is done. Only `images_per_call` images
are held at a time, however long the dataset.
"""

import csv
import pathlib
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_rise import _checks, loading, scores

INDEX_HEADER = ("index", "class_id", "score")


class DatasetSummary(NamedTuple):
    """What `explain_dataset` did.

    Attributes:
        written: int, maps written by this call.
        skipped: int, maps already present from an earlier run.
    """

    written: int
    skipped: int


def _finished(output_dir):
    """Rows of `index.csv` whose map exists; rewrites the index to them."""
    index_path = output_dir / "index.csv"
    rows = {}
    if index_path.exists():
        with open(index_path, newline="") as file:
            for row in csv.reader(file):
                if len(row) != 3 or row[0] == "index":
                    continue  # the header, or a line cut short by a crash
                try:
                    index, class_id, score = int(row[0]), int(row[1]), float(row[2])
                except ValueError:
                    continue
                if (output_dir / f"{index:06d}.npy").exists():
                    rows[index] = (class_id, score)
    loading.write_csv(
        index_path, INDEX_HEADER, [(index, *rows[index]) for index in sorted(rows)]
    )
    return rows


def _split_element(element, position, has_targets):
    """`(image, target or None)` of one dataset element, as NumPy."""
    if has_targets:
        image, target = element
        target = np.asarray(target)
        if target.ndim != 0 or not np.issubdtype(target.dtype, np.integer):
            raise ValueError(
                f"Dataset element {position}: the target must be one integer class "
                f"index. Received shape {target.shape} and dtype {target.dtype}."
            )
        target = int(target)
    else:
        image, target = element, None
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(
            f"Dataset element {position}: expected one image (height, width, "
            f"channels); received shape {image.shape}. Unbatch the dataset, or give "
            "(image, target) pairs."
        )
    if not (
        np.issubdtype(image.dtype, np.floating)
        or np.issubdtype(image.dtype, np.integer)
    ):
        raise TypeError(
            f"Dataset element {position}: images must hold numbers; received dtype "
            f"{image.dtype}."
        )
    return image, target


def _element_kind(dataset):
    """Whether elements are `(image, target)` pairs; checks their structure."""
    spec = dataset.element_spec
    if isinstance(spec, tf.TensorSpec):
        return False
    if isinstance(spec, tuple) and len(spec) == 2:
        if all(isinstance(part, tf.TensorSpec) for part in spec):
            return True
    raise ValueError(
        "`dataset` must yield images (height, width, channels) or (image, target) "
        f"pairs. Received elements of structure {spec}."
    )


def explain_dataset(explainer, dataset, output_dir, targets=None, images_per_call=8):
    """Explains every image of a dataset; writes one `.npy` map per image.

    Writes `output_dir/000000.npy`, `000001.npy`, … (float32 maps, numbered
    by position in the dataset) and `output_dir/index.csv` with columns
    `index,class_id,score` (the class explained, -1 for scores of other
    tasks, and the score of the unmasked image). Rerunning with the same
    arguments skips every map already written.

    Args:
        explainer: a `keras_rise.RiseExplainer`.
        dataset: a `tf.data.Dataset` of images `(height, width, channels)`,
            or of `(image, class_id)` pairs to explain those classes. Its
            order must be the same from run to run for resuming to be right.
        output_dir: str or path, created if missing.
        targets: `None` (each image's top class, or the pair's class), an
            int, the class to explain for every image, or a
            `keras_rise.scores.Score` with one target per image (a
            regression output, a region, a detection, ...).
        images_per_call: int, images explained together (they share every
            mask batch). Defaults to `8`.

    Returns:
        A `DatasetSummary(written, skipped)`.

    Example:

    >>> dataset = tf.data.Dataset.from_tensor_slices(images)
    >>> keras_rise.explain_dataset(explainer, dataset, "maps")
    DatasetSummary(written=100, skipped=0)
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`dataset` must be a tf.data.Dataset. Received: {type(dataset).__name__}."
        )
    has_targets = _element_kind(dataset)
    if targets is not None:
        if has_targets:
            raise ValueError(
                "`targets` must be None when the dataset yields (image, target) pairs."
            )
        if not isinstance(targets, scores.Score):
            targets = _checks.integer("targets", targets, minimum=0)
    images_per_call = _checks.integer("images_per_call", images_per_call, minimum=1)
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    done = _finished(output_dir)

    cardinality = int(dataset.cardinality())
    total = cardinality if cardinality >= 0 else None
    progress = keras.utils.Progbar(total, unit_name="image")
    written = 0
    pending = []

    def flush():
        nonlocal written
        images = np.stack([image for _, image, _ in pending])
        if has_targets:
            classes = [target for _, _, target in pending]
        else:
            classes = targets
        try:
            result = explainer.explain_result(images, classes)
        except (ValueError, TypeError) as error:
            positions = [position for position, _, _ in pending]
            raise type(error)(f"Dataset elements {positions}: {error}") from error
        if np.ndim(result.scores) != 1:
            raise ValueError(
                "explain_dataset writes one score per image; the score gives "
                f"{np.shape(result.scores)[1]} per image. Pass a score with one target."
            )
        # Class scores' targets are class ids; other scores' are not classes.
        class_ids = result.targets
        if not (isinstance(class_ids, np.ndarray) and class_ids.ndim == 1):
            class_ids = np.full(len(pending), -1)
        with open(output_dir / "index.csv", "a", newline="") as index_file:
            writer = csv.writer(index_file, lineterminator="\n")
            for row, (position, _, _) in enumerate(pending):
                loading.save_map(output_dir / f"{position:06d}.npy", result.saliency[row])
                writer.writerow(
                    (position, int(class_ids[row]), float(result.scores[row]))
                )
                index_file.flush()
                written += 1
        progress.add(len(pending))
        pending.clear()

    shape = None
    for position, element in enumerate(dataset.as_numpy_iterator()):
        if position in done:
            progress.add(1)
            continue
        image, target = _split_element(element, position, has_targets)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise ValueError(
                f"Dataset element {position}: image of shape {image.shape}, but the "
                f"earlier images are {shape}. All images must have the model's size."
            )
        pending.append((position, image, target))
        if len(pending) == images_per_call:
            flush()
    if pending:
        flush()
    return DatasetSummary(written, len(done))
