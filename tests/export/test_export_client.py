"""tools/serving_client.py, offline: request building (REST JSON body, gRPC PredictRequest), and
the wire format against local stand-ins — a tiny http.server and an in-process gRPC
PredictionService on 127.0.0.1 that answer canned responses. These check what the client sends
and how it parses answers; they do not prove compatibility with a real TF Serving binary (none
is available here)."""

import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading
from concurrent import futures

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_tool():
    spec = importlib.util.spec_from_file_location("hac_serving_client_under_test",
                                                  os.path.join(REPO, "tools", "serving_client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


client = _load_tool()

CANNED = {"predictions": [{"embedding": [0.5, 1.5, 2.5, 3.5], "stage1": [1.0, 2.0]},
                          {"embedding": [4.0, 3.0, 2.0, 1.0], "stage1": [0.0, 0.25]}]}


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests = []
    status = 200
    reply = CANNED

    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        payload = json.dumps(type(self).reply).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    handler = type("Handler", (_Recorder,), {"requests": [], "status": 200, "reply": CANNED})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_rest_url():
    assert client.rest_url("localhost", 8501, "hier") == "http://localhost:8501/v1/models/hier:predict"
    assert (client.rest_url("http://10.0.0.5", 9000, "m", version=3)
            == "http://10.0.0.5:9000/v1/models/m/versions/3:predict")


def test_rest_request_body(images):
    body = client.rest_request_body(images, "feature_maps")
    assert body["signature_name"] == "feature_maps"
    assert len(body["instances"]) == 2
    assert list(body["instances"][0]) == ["images"]
    np.testing.assert_array_equal(np.array([i["images"] for i in body["instances"]], np.uint8), images)
    json.dumps(body)  # plain JSON types only
    with pytest.raises(ValueError, match="uint8"):
        client.rest_request_body(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[N,H,W,3\]"):
        client.rest_request_body(images[..., :1])


def test_parse_rest_response_formats():
    rows = client.parse_rest_response(CANNED)
    assert rows["embedding"].shape == (2, 4) and rows["stage1"].shape == (2, 2)
    cols = client.parse_rest_response({"outputs": {"embedding": [[1, 2]]}})
    assert cols["embedding"].shape == (1, 2)
    with pytest.raises(client.ServingError, match="boom"):
        client.parse_rest_response({"error": "boom"})


def test_predict_request_proto(images):
    import tensorflow as tf

    request = client.predict_request("hier", images, "serving_default", version=4)
    assert request.model_spec.name == "hier"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 4
    tensor = request.inputs["images"]
    assert tensor.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [2, 4, 5, 3]
    np.testing.assert_array_equal(tf.make_ndarray(tensor), images)
    assert not client.predict_request("hier", images).model_spec.HasField("version")


def test_rest_round_trip_against_local_server(http_server, images):
    server, handler = http_server
    port = server.server_address[1]
    out = client.predict_rest("127.0.0.1", port, "hier", images, version=2, timeout=10)
    np.testing.assert_allclose(out["embedding"], [[0.5, 1.5, 2.5, 3.5], [4.0, 3.0, 2.0, 1.0]])
    (req,) = handler.requests
    assert req["path"] == "/v1/models/hier/versions/2:predict"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == client.rest_request_body(images)


def test_rest_http_error_is_reported(http_server, images):
    server, handler = http_server
    handler.status, handler.reply = 400, {"error": "Expects arg[0] to be uint8 but float is provided"}
    with pytest.raises(client.ServingError, match="HTTP 400.*uint8 but float"):
        client.predict_rest("127.0.0.1", server.server_address[1], "hier", images, timeout=10)


def test_rest_unreachable_server(images):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client.ServingError, match="cannot reach"):
        client.predict_rest("127.0.0.1", port, "hier", images, timeout=5)


def test_grpc_round_trip_against_local_servicer(images):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    received = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC API
            received.append(request)
            x = tf.make_ndarray(request.inputs["images"])
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            response.outputs["embedding"].CopyFrom(
                tf.make_tensor_proto(x.reshape(len(x), -1)[:, :4].astype(np.float32)))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        request = client.predict_request("hier", images, "serving_default")
        out = client.predict_grpc(f"127.0.0.1:{port}", request, timeout=10)
    finally:
        server.stop(0).wait(5)
    assert received[0].model_spec.name == "hier"
    np.testing.assert_array_equal(out["embedding"], images.reshape(2, -1)[:, :4].astype(np.float32))


def test_load_images_converts_and_resizes(tmp_path):
    paths = []
    for name, mode, size in (("rgb.png", "RGB", (6, 4)), ("gray.png", "L", (6, 4)),
                             ("rgba.png", "RGBA", (10, 8)), ("pal.gif", "P", (3, 3))):
        path = str(tmp_path / name)
        Image.new(mode, size, color=100 if mode in ("L", "P") else (10, 20, 30, 40)[: len(mode)]).save(path)
        paths.append(path)
    batch = client.load_images(paths)
    assert batch.dtype == np.uint8 and batch.shape == (4, 4, 6, 3)  # first image's (H, W)
    assert client.load_images(paths, image_size=8).shape == (4, 8, 8, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        client.load_images([str(bad)])


def test_cli_rest_against_local_server(http_server, tmp_path):
    server, handler = http_server
    image = str(tmp_path / "a.png")
    Image.new("RGB", (5, 4), (1, 2, 3)).save(image)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "serving_client.py"), "--model_name=hier",
         "--server=127.0.0.1", f"--rest_port={server.server_address[1]}", "--timeout=10", image],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "embedding: shape=[2, 4]" in proc.stdout and "first=[0.5000, 1.5000" in proc.stdout
    sent = json.loads(handler.requests[0]["body"])
    assert np.array(sent["instances"][0]["images"]).shape == (4, 5, 3)
