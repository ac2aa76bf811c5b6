"""Query a running TF Serving with image files (REST and/or gRPC) and print the embeddings.

  python tools/serving_client.py --model_name=hier img1.png img2.jpg
  python tools/serving_client.py --model_name=hier --protocol=grpc --server=10.0.0.5 a.png
  python tools/serving_client.py --model_name=hier --signature_name=feature_maps a.png

REST: ``POST http://<server>:<rest_port>/v1/models/<name>[/versions/<v>]:predict`` with
``{"signature_name": ..., "instances": [{"images": <H x W x 3 uint8 list>}, ...]}``.
gRPC: ``PredictionService/Predict`` on ``<server>:<grpc_port>`` with a ``PredictRequest`` whose
``inputs["images"]`` is a uint8 ``[N,H,W,3]`` tensor.

Images are decoded with Pillow to RGB uint8 (grayscale/RGBA/palette files are converted); a batch
must be rectangular, so images of different sizes are resized (bilinear) to the first image's
size, or to --image_size when given. The server resizes to the training size itself.

The REST path needs only numpy + Pillow; gRPC imports tensorflow-serving-api (and TensorFlow's
protos) lazily.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

INPUT_KEY = "images"


class ServingError(RuntimeError):
    """The server answered with an error (HTTP status / gRPC status and its message)."""


# ----------------------------------------------------------------------------- images
def load_images(paths: Sequence[str], image_size: Optional[int] = None) -> np.ndarray:
    """Decodes image files to one uint8 batch ``[N,H,W,3]`` (see module docstring for sizes)."""
    from PIL import Image

    if not paths:
        raise ValueError("no image files given")
    arrays: List[np.ndarray] = []
    target = (int(image_size), int(image_size)) if image_size else None  # (W, H) for Pillow
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if target is None:
                    target = img.size
                if img.size != target:
                    img = img.resize(target, Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot decode image {path}: {e}") from e
    return np.stack(arrays)


# ----------------------------------------------------------------------------- REST
def rest_url(server: str, port: int, model_name: str, version: Optional[int] = None) -> str:
    """``http://server:port/v1/models/<name>[/versions/<v>]:predict``."""
    base = server if server.startswith(("http://", "https://")) else f"http://{server}"
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return f"{base.rstrip('/')}:{int(port)}{path}:predict"


def rest_request_body(images: np.ndarray, signature_name: str = "serving_default") -> Dict[str, Any]:
    """The JSON body (row format): one ``{"images": HxWx3 ints}`` instance per image."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N,H,W,3], got {images.dtype} {images.shape}")
    return {"signature_name": signature_name,
            "instances": [{INPUT_KEY: img.tolist()} for img in images]}


def parse_rest_response(payload: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar) → {name: array}."""
    if "error" in payload:
        raise ServingError(str(payload["error"]))
    if "outputs" in payload:
        outputs = payload["outputs"]
        if isinstance(outputs, dict):
            return {k: np.asarray(v) for k, v in outputs.items()}
        return {"output": np.asarray(outputs)}
    if "predictions" not in payload:
        raise ServingError(f"response has neither predictions nor outputs: {sorted(payload)}")
    rows = payload["predictions"]
    if rows and isinstance(rows[0], dict):
        return {k: np.asarray([row[k] for row in rows]) for k in rows[0]}
    return {"output": np.asarray(rows)}


def predict_rest(server: str, port: int, model_name: str, images: np.ndarray,
                 signature_name: str = "serving_default", version: Optional[int] = None,
                 timeout: float = 30.0) -> Dict[str, np.ndarray]:
    """POSTs a predict request; returns {output name: array}. Raises ServingError on errors."""
    body = json.dumps(rest_request_body(images, signature_name)).encode("utf-8")
    request = urllib.request.Request(rest_url(server, port, model_name, version), data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise ServingError(f"HTTP {e.code} from {request.full_url}: {detail}") from e
    except urllib.error.URLError as e:
        raise ServingError(f"cannot reach {request.full_url}: {e.reason}") from e
    return parse_rest_response(payload)


# ----------------------------------------------------------------------------- gRPC
def predict_request(model_name: str, images: np.ndarray, signature_name: str = "serving_default",
                    version: Optional[int] = None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for a uint8 batch."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N,H,W,3], got {images.dtype} {images.shape}")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(images))
    return request


def parse_predict_response(response) -> Dict[str, np.ndarray]:
    """``PredictResponse`` → {output name: array}."""
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def predict_grpc(target: str, request, timeout: float = 30.0,
                 max_message_bytes: int = 64 << 20) -> Dict[str, np.ndarray]:
    """Sends ``request`` to ``target`` (host:port); returns {output name: array}."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"gRPC {e.code().name} from {target}: {e.details()}") from e
    return parse_predict_response(response)


# ----------------------------------------------------------------------------- CLI
def summarize(outputs: Dict[str, np.ndarray], num_values: int = 5) -> str:
    """One line per output: name, shape, dtype and the first values of the first row."""
    lines = []
    for name in sorted(outputs):
        arr = np.asarray(outputs[name])
        first = arr.reshape(arr.shape[0], -1)[0, :num_values] if arr.ndim >= 2 else arr[:num_values]
        values = ", ".join(f"{float(v):.4f}" for v in first)
        lines.append(f"  {name}: shape={list(arr.shape)} dtype={arr.dtype} first=[{values}]")
    return "\n".join(lines)


def run(image_paths: Sequence[str], model_name: str, server: str = "localhost",
        rest_port: int = 8501, grpc_port: int = 8500, protocol: str = "rest",
        signature_name: str = "serving_default", version: Optional[int] = None,
        image_size: Optional[int] = None, timeout: float = 30.0, out=sys.stdout) -> Dict[str, Dict[str, np.ndarray]]:
    """Loads the images, queries the server with each protocol, prints a summary."""
    images = load_images(image_paths, image_size)
    print(f"{len(images)} image(s) {list(images.shape[1:])} -> model {model_name!r} "
          f"signature {signature_name!r}", file=out)
    results: Dict[str, Dict[str, np.ndarray]] = {}
    if protocol in ("rest", "both"):
        results["rest"] = predict_rest(server, rest_port, model_name, images, signature_name,
                                       version, timeout)
        print(f"REST {rest_url(server, rest_port, model_name, version)}\n{summarize(results['rest'])}",
              file=out)
    if protocol in ("grpc", "both"):
        request = predict_request(model_name, images, signature_name, version)
        target = f"{server}:{grpc_port}"
        results["grpc"] = predict_grpc(target, request, timeout)
        print(f"gRPC {target}\n{summarize(results['grpc'])}", file=out)
    return results


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("server", "localhost", "TF Serving host.")
    flags.DEFINE_integer("rest_port", 8501, "REST port.")
    flags.DEFINE_integer("grpc_port", 8500, "gRPC port.")
    flags.DEFINE_enum("protocol", "rest", ["rest", "grpc", "both"], "Which API to call.")
    flags.DEFINE_string("model_name", None, "Model name (as in models.config).")
    flags.DEFINE_string("signature_name", "serving_default", "serving_default | feature_maps.")
    flags.DEFINE_integer("version", None, "Model version; default: the server's latest.")
    flags.DEFINE_integer("image_size", 0, "Resize every image to this side before sending (0 = keep).")
    flags.DEFINE_float("timeout", 30.0, "Request timeout in seconds.")
    flags.DEFINE_multi_string("image", [], "Image file (repeatable); positional arguments also work.")
    flags.mark_flag_as_required("model_name")


def main(argv: List[str]) -> int:
    from absl import flags

    f = flags.FLAGS
    paths = list(f.image) + list(argv[1:])
    try:
        run(paths, f.model_name, f.server, f.rest_port, f.grpc_port, f.protocol, f.signature_name,
            f.version, f.image_size or None, f.timeout)
    except (ServingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
