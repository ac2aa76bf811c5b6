"""hac_tf/export/serving_client.py: request building (REST JSON body, gRPC PredictRequest) and
response parsing, against a real tiny export: the requests feed the exported ``serving_default``
signature, and a local HTTP server / in-process gRPC PredictionService that answer by running
that signature stand in for TF Serving (no TF Serving binary is available here). Also the wire
format and error handling against canned answers."""

import json
from concurrent import futures

import numpy as np
import pytest
from PIL import Image

from hac_tf.export import serving_client as client
from json_http import JsonHandler, serving

CANNED = {"predictions": [{"embedding": [0.5, 1.5, 2.5, 3.5], "stage1": [1.0, 2.0]},
                          {"embedding": [4.0, 3.0, 2.0, 1.0], "stage1": [0.0, 0.25]}]}


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)


class _Recorder(JsonHandler):
    requests = []
    status = 200
    reply = CANNED

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.read_body()
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        self.send_json(type(self).status, type(self).reply)


@pytest.fixture
def http_server():
    handler = type("Handler", (_Recorder,), {"requests": [], "status": 200, "reply": CANNED})
    with serving(handler) as server:
        yield server, handler


def test_rest_predict_url():
    assert client.rest_predict_url("http://localhost:8501", "hier") == "http://localhost:8501/v1/models/hier:predict"
    assert (client.rest_predict_url("10.0.0.5:9000/", "m", version=3)
            == "http://10.0.0.5:9000/v1/models/m/versions/3:predict")
    assert (client.rest_predict_url("https://proxy.example/tfs", "m")
            == "https://proxy.example/tfs/v1/models/m:predict")
    for bad in ("ftp://host:8501", "http://", "http://host:8501/?x=1"):
        with pytest.raises(ValueError, match="must look like http://host:8501"):
            client.rest_predict_url(bad, "m")


def test_grpc_target_is_host_and_port():
    assert client.check_grpc_target("localhost:8500") == "localhost:8500"
    assert client.check_grpc_target("[::1]:8500") == "[::1]:8500"
    for bad in ("http://localhost:8500", "localhost", "localhost:port"):
        with pytest.raises(ValueError, match="must be host:port"):
            client.check_grpc_target(bad)


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
    out = client.predict_rest(f"http://127.0.0.1:{port}", "hier", images, version=2, timeout=10)
    np.testing.assert_allclose(out["embedding"], [[0.5, 1.5, 2.5, 3.5], [4.0, 3.0, 2.0, 1.0]])
    (req,) = handler.requests
    assert req["path"] == "/v1/models/hier/versions/2:predict"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == client.rest_request_body(images)


def test_rest_http_error_is_reported(http_server, images):
    server, handler = http_server
    handler.status, handler.reply = 400, {"error": "Expects arg[0] to be uint8 but float is provided"}
    with pytest.raises(client.ServingError, match="HTTP 400.*uint8 but float"):
        client.predict_rest(f"127.0.0.1:{server.server_address[1]}", "hier", images, timeout=10)


def test_rest_unreachable_server(images):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(client.ServingError, match="cannot reach"):
        client.predict_rest(f"http://127.0.0.1:{port}", "hier", images, timeout=5)


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


# ----------------------------------------------------------------------------- a real export
@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny real export, its loaded signatures and two real PNG files of different sizes."""
    import keras
    import tensorflow as tf

    from hac_tf.export import export_backbone
    from hac_tf.models import build_resnet

    keras.utils.set_random_seed(5)
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    root = tmp_path_factory.mktemp("serving")
    path = export_backbone(backbone, None, str(root / "saved_models" / "tiny"), image_size=16, warmup=False)
    rng = np.random.default_rng(3)
    files = []
    for i, size in enumerate(((20, 12), (9, 14))):
        files.append(str(root / f"img{i}.png"))
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(files[-1])
    return {"loaded": tf.saved_model.load(path), "files": files}


def _input_spec(signature):
    args, kwargs = signature.structured_input_signature
    assert not args
    return kwargs


def _run_signature(loaded, name, batch):
    """What TF Serving computes for ``batch`` (numpy, of the signature's input dtype)."""
    outputs = loaded.signatures[name](**{client.INPUT_KEY: batch})
    return {k: v.numpy() for k, v in outputs.items()}


class _SignatureHandler(JsonHandler):
    """Answers ``POST /v1/models/tiny:predict`` like TF Serving's REST API: the row-format
    instances are converted to the signature's declared input dtype, the real signature runs,
    the outputs come back as row-format predictions."""

    loaded = None

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.read_body())
        status, reply = 200, None
        if self.path != "/v1/models/tiny:predict":
            status, reply = 404, {"error": f"Servable not found for request: {self.path}"}
        else:
            signature = self.loaded.signatures[body.get("signature_name", "serving_default")]
            specs = _input_spec(signature)
            instances = body["instances"]
            if any(set(inst) != set(specs) for inst in instances):
                status, reply = 400, {"error": f"instances must have exactly the inputs {sorted(specs)}"}
            else:
                feed = {k: np.asarray([inst[k] for inst in instances], dtype=spec.dtype.as_numpy_dtype)
                        for k, spec in specs.items()}
                outputs = {k: v.numpy() for k, v in signature(**feed).items()}
                reply = {"predictions": [{k: v[i].tolist() for k, v in outputs.items()}
                                         for i in range(len(instances))]}
        self.send_json(status, reply)


def test_requests_match_the_exported_signature(export):
    import tensorflow as tf

    loaded = export["loaded"]
    for name in ("serving_default", "feature_maps"):
        specs = _input_spec(loaded.signatures[name])
        assert list(specs) == [client.INPUT_KEY]
        spec = specs[client.INPUT_KEY]
        assert spec.dtype == tf.uint8 and spec.shape.rank == 4 and spec.shape[-1] == 3
    images = client.load_images(export["files"])  # the second file is resized to the first's size
    assert images.shape == (2, 12, 20, 3)
    body = client.rest_request_body(images, "serving_default")
    assert [sorted(inst) for inst in body["instances"]] == [[client.INPUT_KEY]] * 2
    request = client.predict_request("tiny", images, "serving_default")
    assert sorted(request.inputs) == [client.INPUT_KEY]
    assert request.inputs[client.INPUT_KEY].dtype == tf.uint8.as_datatype_enum
    fed = tf.make_ndarray(request.inputs[client.INPUT_KEY])
    np.testing.assert_array_equal(fed, images)
    np.testing.assert_array_equal(np.asarray([i[client.INPUT_KEY] for i in body["instances"]], np.uint8), images)
    outputs = _run_signature(loaded, "serving_default", fed)
    assert outputs["embedding"].shape[0] == 2


@pytest.mark.parametrize("signature_name", ["serving_default", "feature_maps"])
def test_rest_answers_of_the_real_signature(export, signature_name):
    handler = type("Handler", (_SignatureHandler,), {"loaded": export["loaded"]})
    with serving(handler) as server:
        images = client.load_images(export["files"])
        url = f"http://127.0.0.1:{server.server_address[1]}"
        got = client.predict_rest(url, "tiny", images, signature_name, timeout=30)
        with pytest.raises(client.ServingError, match="HTTP 404.*Servable not found"):
            client.predict_rest(url, "no_such_model", images, signature_name, timeout=30)
    want = _run_signature(export["loaded"], signature_name, images)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].shape == want[key].shape
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)  # JSON floats round-trip


def test_grpc_answers_of_the_real_signature(export):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    loaded = export["loaded"]

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC API
            signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
            specs = _input_spec(signature)
            if sorted(request.inputs) != sorted(specs) or any(
                    request.inputs[k].dtype != spec.dtype.as_datatype_enum for k, spec in specs.items()):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "inputs do not match the signature")
            feed = {k: tf.make_ndarray(request.inputs[k]) for k in specs}
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for k, v in signature(**feed).items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    images = client.load_images(export["files"], image_size=10)
    try:
        got = client.predict_grpc(f"127.0.0.1:{port}", client.predict_request("tiny", images), timeout=30)
    finally:
        server.stop(0).wait(5)
    want = _run_signature(loaded, "serving_default", images)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])  # TensorProtos carry the exact floats
