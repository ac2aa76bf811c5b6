"""Client side of TF Serving for an exported backbone: image loading, REST and gRPC predict
requests, response parsing. The command line is ``hac-serving-client`` (hac_tf/cli/serving_client.py).

What is sent (the exported ``serving_default`` / ``feature_maps`` signatures take one input,
``images``, uint8 ``[N,H,W,3]``, and resize in the graph; see hac_tf/export/savedmodel.py):

* REST: ``POST <rest_url>/v1/models/<name>[/versions/<v>]:predict`` with the row-format JSON body
  ``{"signature_name": ..., "instances": [{"images": <H x W x 3 nested lists of ints>}, ...]}``;
  the answer ``{"predictions": [{"embedding": [...], "stage1": [...], ...}, ...]}`` (or the
  columnar ``{"outputs": {...}}``) becomes ``{output name: array [N, ...]}``.
* gRPC: ``tensorflow.serving.PredictionService/Predict`` on ``host:port`` with a
  ``PredictRequest`` whose ``inputs["images"]`` is a uint8 ``[N,H,W,3]`` TensorProto; the
  ``PredictResponse.outputs`` become ``{output name: array}``.

Images are decoded with Pillow to RGB uint8 (grayscale/RGBA/palette files are converted). A batch
must be rectangular, so images of different sizes are resized (bilinear) to the first image's
size, or to ``image_size`` when given; the server resizes to the training size itself.

The REST path needs only numpy and Pillow; the gRPC path imports tensorflow-serving-api (and
TensorFlow, for the TensorProto conversion) when it is used.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

INPUT_KEY = "images"
DEFAULT_SIGNATURE = "serving_default"
DEFAULT_REST_URL = "http://localhost:8501"
DEFAULT_GRPC_TARGET = "localhost:8500"
_GRPC_TARGET = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


class ServingError(RuntimeError):
    """The server answered with an error or could not be reached (status and message)."""


# ----------------------------------------------------------------------------- images
def load_images(paths: Sequence[str], image_size: Optional[int] = None) -> np.ndarray:
    """Decodes image files into one uint8 batch ``[N,H,W,3]``.

    Args:
      paths: image files (anything Pillow reads).
      image_size: resize every image to ``image_size x image_size``; None = the first image's size.

    Raises:
      ValueError: no paths, or a file that cannot be decoded (named in the message).
    """
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


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N,H,W,3], got {images.dtype} {list(images.shape)}")
    return images


# ----------------------------------------------------------------------------- REST
def normalize_rest_url(rest_url: str) -> str:
    """``host:port`` or ``http(s)://host:port[/prefix]`` -> ``http(s)://host:port[/prefix]`` (no trailing /)."""
    url = rest_url.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
        url = f"http://{url}"
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise ValueError(f"REST URL {rest_url!r} must look like http://host:8501 (http or https, no query)")
    return url.rstrip("/")


def rest_predict_url(rest_url: str, model_name: str, version: Optional[int] = None) -> str:
    """``<rest_url>/v1/models/<name>[/versions/<v>]:predict``."""
    path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return f"{normalize_rest_url(rest_url)}{path}:predict"


def rest_request_body(images: np.ndarray, signature_name: str = DEFAULT_SIGNATURE) -> Dict[str, Any]:
    """The JSON body (row format): one ``{"images": H x W x 3 ints}`` instance per image."""
    images = _check_images(images)
    return {"signature_name": signature_name,
            "instances": [{INPUT_KEY: img.tolist()} for img in images]}


def parse_rest_response(payload: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar) -> {name: array [N, ...]}.

    A single unnamed output (a list of rows) is returned under the name ``"output"``.
    """
    if not isinstance(payload, dict):
        raise ServingError(f"response is not a JSON object: {type(payload).__name__}")
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


def predict_rest(rest_url: str, model_name: str, images: np.ndarray,
                 signature_name: str = DEFAULT_SIGNATURE, version: Optional[int] = None,
                 timeout: float = 30.0) -> Dict[str, np.ndarray]:
    """POSTs a predict request to the REST API at ``rest_url`` (e.g. ``http://localhost:8501``).

    Returns {output name: array [N, ...]}. Raises ServingError (HTTP error status with the
    server's message, unreachable server, malformed answer).
    """
    body = json.dumps(rest_request_body(images, signature_name)).encode("utf-8")
    url = rest_predict_url(rest_url, model_name, version)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise ServingError(f"HTTP {e.code} from {url}: {detail}") from e
    except urllib.error.URLError as e:
        raise ServingError(f"cannot reach {url}: {e.reason}") from e
    except (OSError, ValueError) as e:  # timeouts, connection resets, a non-JSON answer
        raise ServingError(f"no valid answer from {url}: {e}") from e
    return parse_rest_response(payload)


# ----------------------------------------------------------------------------- gRPC
def check_grpc_target(target: str) -> str:
    """``host:port`` (``[v6addr]:port`` too); a URL such as ``http://host:8500`` is refused."""
    if not _GRPC_TARGET.match(target.strip()):
        raise ValueError(f"gRPC target {target!r} must be host:port, e.g. {DEFAULT_GRPC_TARGET} (no scheme)")
    return target.strip()


def predict_request(model_name: str, images: np.ndarray, signature_name: str = DEFAULT_SIGNATURE,
                    version: Optional[int] = None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` for a uint8 batch ``[N,H,W,3]``."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    images = _check_images(images)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    request.inputs[INPUT_KEY].CopyFrom(tf.make_tensor_proto(images))
    return request


def parse_predict_response(response) -> Dict[str, np.ndarray]:
    """``PredictResponse`` -> {output name: array}."""
    import tensorflow as tf

    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def predict_grpc(target: str, request, timeout: float = 30.0,
                 max_message_bytes: int = 64 << 20) -> Dict[str, np.ndarray]:
    """Sends ``request`` to the gRPC API at ``target`` (``host:port``); returns {output name: array}.

    Raises ServingError with the gRPC status and message.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    target = check_grpc_target(target)
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"gRPC {e.code().name} from {target}: {e.details()}") from e
    return parse_predict_response(response)


# ----------------------------------------------------------------------------- output
def summarize(outputs: Dict[str, np.ndarray], num_values: int = 5) -> str:
    """One line per output: name, shape, dtype and the first values of the first row."""
    lines = []
    for name in sorted(outputs):
        arr = np.asarray(outputs[name])
        first = arr.reshape(arr.shape[0], -1)[0, :num_values] if arr.ndim >= 2 else arr[:num_values]
        values = ", ".join(f"{float(v):.4f}" for v in first)
        lines.append(f"  {name}: shape={list(arr.shape)} dtype={arr.dtype} first=[{values}]")
    return "\n".join(lines)
