"""Explain a face detector that is Python code: D-RISE on MTCNN.

MTCNN (the `mtcnn` package, `pip install mtcnn`; its weights ship inside it)
finds faces with three small Keras networks and Python in between: image
pyramids, non-maximum suppression, box refinement. It is not a keras.Model,
and RISE does not need one: any callable that takes a batch of images and
returns NumPy arrays is explained, called through `tf.numpy_function`.

The wrapper below runs MTCNN on every masked image and pads its detections
to a fixed count, in the dict D-RISE reads: `"boxes"` `(batch, P, 4)` as
`(x1, y1, x2, y2)` pixels and `"class_probs"` `(batch, P, 1)`, the one
class's confidence. Each face found on the unmasked photo is then explained
by its own D-RISE score (IoU with the box times the confidence of the best
matching detection), and the script prints where each map peaks: a faithful
map peaks inside its face's box.

The photo is NASA's portrait of Eileen Collins (public domain, as shipped
with scikit-image), at 256×256.

Usage:
    python examples/explain_python_detector.py [--num-masks 500]
        [--out examples/output/python_detector.png]
"""

import argparse
import pathlib

import numpy as np
from PIL import Image

import keras_rise
from keras_rise import scores

PHOTO = pathlib.Path(__file__).resolve().parent / "faces" / "astronaut.jpg"
MAX_FACES = 4  # detections per image, padded


def face_detector():
    """MTCNN as a batch function: images in [0, 1] -> padded detections."""
    from mtcnn import MTCNN

    mtcnn = MTCNN()

    def detect(images):
        pixels = (np.asarray(images) * 255).round().astype(np.uint8)
        boxes = np.zeros((len(pixels), MAX_FACES, 4), np.float32)
        confidence = np.zeros((len(pixels), MAX_FACES, 1), np.float32)
        found = mtcnn.detect_faces(list(pixels), box_format="xyxy")
        for index, faces in enumerate(found):
            for slot, face in enumerate(faces[:MAX_FACES]):
                boxes[index, slot] = face["box"]
                confidence[index, slot, 0] = face["confidence"]
        return {"boxes": boxes, "class_probs": confidence}

    return detect


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=500)
    parser.add_argument("--out", default="examples/output/python_detector.png")
    args = parser.parse_args()

    photo = np.asarray(Image.open(PHOTO).convert("RGB"), np.float32) / 255.0
    detect = face_detector()
    found = scores.detections(detect(photo[None]), min_score=0.5)[0]
    explainer = keras_rise.RiseExplainer(detect, num_masks=args.num_masks, batch_size=50)
    picture = None
    for number, face in enumerate(found):
        saliency = explainer.explain(
            photo, scores.DetectionScore(face.box, face.class_id), verbose=0
        )
        row, column = np.unravel_index(saliency.argmax(), saliency.shape)
        x1, y1, x2, y2 = face.box
        inside = x1 <= column < x2 and y1 <= row < y2
        print(
            f"face {number}: box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}), confidence "
            f"{face.score:.3f}; the map peaks at (x {column}, y {row}), "
            f"{'inside' if inside else 'outside'} the box"
        )
        drawn = keras_rise.visualize.draw_boxes(
            keras_rise.visualize.overlay(photo, saliency), [face.box], [f"face {number}"]
        )
        picture = drawn if picture is None else _beside(picture, drawn)
    if picture is None:
        print("no face found")
        return
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    print(f"wrote {out}")


def _beside(left, right):
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    return both


if __name__ == "__main__":
    main()
