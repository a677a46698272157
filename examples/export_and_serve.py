"""Export the demo model's explainer for TF Serving, and the clients to call it.

Writes `EXPORT_DIR/1/` (a SavedModel) and prints the command that serves it
with Docker, a REST request and a gRPC request. The TF Serving binary is not
needed here: the script checks the export by running its signatures in-process
with the very requests a client would send.

Usage:
    python examples/export_and_serve.py [--export-dir DIR] [--num-masks N]

Then, on a machine with Docker:
    docker run -p 8501:8501 -p 8500:8500 \\
        -v "$PWD/DIR:/models/rise" -e MODEL_NAME=rise tensorflow/serving
"""

import argparse
import base64
import json
import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

import keras_rise

IMAGES = pathlib.Path(__file__).resolve().parent / "images"


def rest_body(image):
    """The JSON body for POST /v1/models/rise:predict (row "instances" format)."""
    return json.dumps({"instances": [image.tolist()]})


def grpc_request(image):
    """A `PredictRequest` for the gRPC port (8500), as `tensorflow-serving-api` builds it."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rise"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(image[None]))
    return request


def grpc_predict(request, target="localhost:8500", timeout=30.0):
    """Sends a request to a running TF Serving over gRPC; returns the outputs.

    Not called below, since no server runs here; with one, use
    `grpc_predict(grpc_request(image))["saliency"]`.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--export-dir", type=pathlib.Path, default=pathlib.Path("rise_export")
    )
    parser.add_argument("--num-masks", type=int, default=2000)
    args = parser.parse_args()

    model = keras_rise.load_demo_model()
    path = keras_rise.export_explainer(
        model, args.export_dir, num_masks=args.num_masks, overwrite=True
    )
    print(f"exported to {path}\n")
    print("Serve it (REST on 8501, gRPC on 8500):")
    print(
        f'  docker run -p 8501:8501 -p 8500:8500 -v "{args.export_dir.resolve()}:/models/rise" '
        "-e MODEL_NAME=rise tensorflow/serving\n"
    )

    image = (
        np.asarray(Image.open(IMAGES / "digit_00.png").convert("RGB"), np.float32) / 255
    )
    body = rest_body(image)
    print("REST, saliency for the top class:")
    print("  curl -d @body.json http://localhost:8501/v1/models/rise:predict")
    print(f"  (body.json: {len(body)} bytes of {body[:40]}...)")
    png = base64.b64encode((IMAGES / "digit_00.png").read_bytes()).decode()
    print("REST, a heatmap picture back from a photo:")
    print(
        '  curl -d \'{"signature_name": "explain_image", "instances": '
        '[{"b64": "<base64 PNG or JPEG>"}]}\' http://localhost:8501/v1/models/rise:predict'
    )
    print(f"  (this image is {len(png)} base64 characters)\n")

    # What the server would run, run here on the request's own tensors.
    request = grpc_request(image)
    loaded = tf.saved_model.load(str(path))
    images = tf.make_ndarray(request.inputs["images"])
    response = loaded.signatures["serving_default"](images=tf.constant(images))
    print(
        f"gRPC request for signature {request.model_spec.signature_name!r}: "
        f"class_id={int(response['class_id'][0])}, score={float(response['score'][0]):.3f}, "
        f"saliency {tuple(response['saliency'].shape)}"
    )
    heatmap = loaded.signatures["explain_image"](
        image_bytes=tf.constant([(IMAGES / "digit_00.png").read_bytes()])
    )["heatmap_png"]
    out = args.export_dir / "heatmap_from_serving.png"
    out.write_bytes(heatmap[0].numpy())
    print(f"explain_image returned a PNG heatmap: {out}")


if __name__ == "__main__":
    main()
