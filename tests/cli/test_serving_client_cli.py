"""hac-serving-client (hac_tf/cli/serving_client.py, run through tools/serving_client.py): the
README's flags (--images, --model, --rest_url, --grpc_target), the older ones (--model_name,
--server/--rest_port/--protocol, positional files), exit codes -- against a local HTTP server and
an in-process gRPC PredictionService that answer canned outputs and record what was sent."""

import json
import os
import subprocess
import sys
from concurrent import futures

import numpy as np
import pytest
from PIL import Image

from hac_tf.cli.serving_client import resolve_endpoints
from json_http import JsonHandler, serving

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANNED = {"predictions": [{"embedding": [0.5, 1.5, 2.5, 3.5]}, {"embedding": [4.0, 3.0, 2.0, 1.0]}]}


class _Recorder(JsonHandler):
    requests = []

    def do_POST(self):  # noqa: N802 - http.server API
        type(self).requests.append({"path": self.path, "body": json.loads(self.read_body())})
        self.send_json(200, CANNED)


@pytest.fixture
def rest_server():
    handler = type("Handler", (_Recorder,), {"requests": []})
    with serving(handler) as server:
        yield server.server_address[1], handler.requests


@pytest.fixture
def pngs(tmp_path):
    paths = []
    for i, size in enumerate(((5, 4), (7, 3))):
        paths.append(str(tmp_path / f"{'ab'[i]}.png"))
        Image.new("RGB", size, (10 * i, 2, 3)).save(paths[-1])
    return paths


def _client(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "serving_client.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_readme_rest_form(rest_server, pngs):
    port, requests = rest_server
    proc = _client(f"--images={pngs[0]},{pngs[1]}", "--model=quickstart", f"--rest_url=http://127.0.0.1:{port}",
                   "--timeout=20")
    assert proc.returncode == 0, proc.stderr
    assert f"REST http://127.0.0.1:{port}/v1/models/quickstart:predict" in proc.stdout
    assert "embedding: shape=[2, 4]" in proc.stdout and "first=[0.5000, 1.5000" in proc.stdout
    (req,) = requests
    assert req["path"] == "/v1/models/quickstart:predict"
    assert req["body"]["signature_name"] == "serving_default"
    assert np.array([i["images"] for i in req["body"]["instances"]]).shape == (2, 4, 5, 3)  # b.png resized


def test_older_flags_still_work(rest_server, pngs):
    port, requests = rest_server
    proc = _client("--model_name=hier", "--server=127.0.0.1", f"--rest_port={port}", "--version=2",
                   "--timeout=20", pngs[0])
    assert proc.returncode == 0, proc.stderr
    assert [r["path"] for r in requests] == ["/v1/models/hier/versions/2:predict"]


def test_readme_grpc_form(pngs):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    received = []

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC API
            received.append(request)
            response = predict_pb2.PredictResponse()
            response.outputs["embedding"].CopyFrom(tf.make_tensor_proto(np.ones((2, 3), np.float32)))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        proc = _client(f"--images={pngs[0]},{pngs[1]}", "--model=quickstart", f"--grpc_target=127.0.0.1:{port}",
                       "--signature_name=feature_maps", "--timeout=20")
    finally:
        server.stop(0).wait(5)
    assert proc.returncode == 0, proc.stderr
    assert f"gRPC 127.0.0.1:{port}" in proc.stdout and "embedding: shape=[2, 3]" in proc.stdout
    (request,) = received
    assert request.model_spec.name == "quickstart" and request.model_spec.signature_name == "feature_maps"
    assert tf.make_ndarray(request.inputs["images"]).shape == (2, 4, 5, 3)


def test_bad_flags_exit_2_and_unreachable_server_exits_1(pngs):
    proc = _client(f"--images={pngs[0]}", "--rest_url=http://127.0.0.1:9")
    assert proc.returncode == 2 and "--model is required" in proc.stderr
    proc = _client("--model=m", "--rest_url=http://127.0.0.1:9")
    assert proc.returncode == 2 and "no image files" in proc.stderr
    proc = _client(f"--images={pngs[0]}", "--model=m", "--rest_url=http://127.0.0.1:9", "--server=other")
    assert proc.returncode == 2 and "--server cannot be combined with --rest_url/--grpc_target" in proc.stderr
    proc = _client(f"--images={pngs[0]}", "--model=m", "--grpc_target=http://127.0.0.1:8500")
    assert proc.returncode == 2 and "must be host:port" in proc.stderr
    proc = _client(f"--images={pngs[0]}", "--model=m", "--rest_url=http://127.0.0.1:9", "--timeout=5")
    assert proc.returncode == 1 and "cannot reach http://127.0.0.1:9/v1/models/m:predict" in proc.stderr
    proc = _client(f"--images={pngs[0]},missing.png", "--model=m", "--rest_url=http://127.0.0.1:9")
    assert proc.returncode == 1 and "cannot decode image missing.png" in proc.stderr


def test_resolve_endpoints():
    assert resolve_endpoints("http://h:1", None, "localhost", 8501, 8500, "rest") == ("http://h:1", None)
    assert resolve_endpoints(None, "h:2", "localhost", 8501, 8500, "rest") == (None, "h:2")
    assert resolve_endpoints("http://h:1", "h:2", "localhost", 8501, 8500, "rest") == ("http://h:1", "h:2")
    # the older flags, with their defaults: REST on localhost:8501
    assert resolve_endpoints(None, None, "localhost", 8501, 8500, "rest") == ("http://localhost:8501", None)
    assert resolve_endpoints(None, None, "10.0.0.5", 1, 2, "both") == ("http://10.0.0.5:1", "10.0.0.5:2")
    assert resolve_endpoints(None, None, "h", 1, 2, "grpc") == (None, "h:2")
    with pytest.raises(ValueError, match="--protocol/--grpc_port cannot be combined"):
        resolve_endpoints("http://h:1", None, "h", 1, 2, "grpc", ["protocol", "grpc_port"])
