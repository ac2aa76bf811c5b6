"""Every command in README.md's ```bash blocks is checked, so the README cannot drift from the code.

How a command is checked (the README is parsed when the tests are collected; a new block is
picked up by itself):

* ``python tools/<tool>.py ...``, ``python -m <module> ...`` and console scripts declared in
  pyproject.toml (``hac-train ...``): every ``--flag`` must be a flag of that entry point (read
  from its ``--helpxml``), enum flags must have an allowed value, and paths into the repository
  (``configs/...``) must exist. Then, by the tool's entry in :data:`RUN_POLICY`:

  - ``run`` / ``each``: the command runs here, in a scratch workspace (``tools``/``configs``/``scripts`` linked
    from the repository), with the same script and flags plus the tiny settings of
    :func:`_tiny_args` (e.g. ``--params_override=<tiny model, fixture data, 2 steps>``; the
    serving client is pointed at a local stand-in for TF Serving that answers by running the
    exported signatures; image files it names are written with Pillow). By default only the
    first runnable command of a ``run`` tool runs (every one of an ``each`` tool);
    ``HAC_README_TEST=full`` runs all of them.
  - ``full``: runs only with ``HAC_README_TEST=full`` (slow); otherwise the run directory or
    export it reads must exist in the workspace.
  - ``flags: <reason>``: never run here (reason given).

  Commands that cannot run on this machine are only flag-checked: placeholders (``...``,
  ``NAME``, ``<...>``), ``TF_CONFIG`` (a multi-worker cluster), ``--strategy=tpu|multi_worker``,
  ``--strategy=mirrored`` without ``--num_logical_cpus`` (GPUs).
* ``bash scripts/<x>.sh``: the script exists, ``bash -n`` accepts it, and each tool command in it
  is flag-checked (scripts are not run: they set up the venv or run the whole suite).
* ``docker run ... tensorflow/serving ...``: TF Serving's flags are known ones; the published
  ports include the REST (8501) and gRPC (8500) ports; ``--model_config_file`` lies in a mounted
  directory, and the ``models.config`` the export wrote in the workspace, read through the
  ``-v`` mounts (``$PWD`` = the workspace), names model directories that hold a published
  version (:func:`hac_tf.export.served_model_dirs`). Serving-client commands must use the
  host ports the docker command publishes. Docker itself is not run (no engine here).
* ``tensorflow_model_server ...`` (on the host): known flags; its ``--model_config_file``
  (``$PWD`` = the workspace) must list servable model directories as they are on this host.
* ``pip install ...``: not run (network); requirement files and the extras named must exist.
* Anything else fails: add a rule here or mark the block.

``HAC_README=<file>`` checks another markdown file (e.g. a draft of the README) the same way.

A block preceded by ``<!-- readme-test: skip <reason> -->`` (the line right above the opening
fence) is not checked; the reason is required.

The workspace is the quickstart's result: ``bash scripts/main.sh`` runs in it at tiny size
(``HAC_SKIP_SETUP=1 STEPS=2``, the Fashion-MNIST fixture, tiny widths: `MAIN_JOB_TINY`), making
``runs/quickstart`` (with its ``hierarchical`` and ``baseline`` runs) and
``saved_models/quickstart`` / ``saved_models/quickstart_baseline``. Without that command in the
README, the first runnable training command, at tiny size with ``export.name=quickstart``, stands
in for it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent import futures
from typing import Dict, List, Optional, Tuple

import pytest
from json_http import JsonHandler, start_server, stop_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the README checked; HAC_README=<path of a draft> checks a draft (its commands run against this checkout)
README = os.environ.get("HAC_README") or os.path.join(REPO, "README.md")
FIXTURE_FMNIST = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
SHELL_LANGS = ("bash", "sh", "shell")
SKIP_MARK = re.compile(r"^<!--\s*readme-test:\s*skip\b\s*(.*?)\s*-->$")
FULL = os.environ.get("HAC_README_TEST", "") == "full"

#: what happens to a runnable command of each tool (see the module docstring)
RUN_POLICY = {
    "train": "run",
    "serving_client": "each",
    "evaluate": "full",
    "export": "full",
    "finetune": "full",
    "show_views": "full",
    "prepare_data": "full",
    "finetune_dense": "flags: trains Model Garden RetinaNet and FPN heads (minutes even at tiny size); "
                      "covered by tests/downstream",
    "fault_drill": "flags: kills training runs repeatedly (minutes); docs/RELIABILITY.md",
    "bench_train": "flags: a benchmark", "bench_augment": "flags: a benchmark",
    "bench_quality": "flags: a benchmark (trains four models)", "profile_train": "flags: a profiler run",
    "bench_science": "flags: a benchmark (trains every row for minutes; docs/RESULTS.md)",
}
#: flags whose value is a path the command reads (checked to exist when it is not run)
INPUT_PATH_FLAGS = {"evaluate": ("model_dir",), "export": ("model_dir",), "finetune": ("export_dir",),
                    "finetune_dense": ("export_dir",)}
#: tensorflow_model_server flags (TF Serving's model_servers/main.cc) a README may use
TF_SERVING_FLAGS = {
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "enable_batching", "allow_version_labels_for_unavailable_models", "batching_parameters_file",
    "model_config_file", "model_config_file_poll_wait_seconds", "model_name", "model_base_path",
    "max_num_load_retries", "load_retry_interval_micros", "file_system_poll_wait_seconds",
    "flush_filesystem_caches", "tensorflow_session_parallelism", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "ssl_config_file", "platform_config_file", "monitoring_config_file",
    "enable_model_warmup", "num_request_iterations_for_warmup", "per_process_gpu_memory_fraction",
    "saved_model_tags", "grpc_channel_arguments", "enable_signature_method_name_check", "xla_cpu_compilation_enabled",
}
TF_SERVING_PORTS = {"grpc": 8500, "rest": 8501}  # the tensorflow/serving image's defaults
PLACEHOLDER = re.compile(r"(^|[=/\s])(\.\.\.|NAME)($|[/\s,])|<[^>]*>")


# ----------------------------------------------------------------------------- parsing the README
@dataclasses.dataclass
class Command:
    line: int  # README line of the command's first line
    text: str
    env: Dict[str, str]
    argv: List[str]
    skip_reason: str = ""

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.argv[:3])[:60]}"


def readme_blocks(text: str) -> List[Tuple[int, str, str]]:
    """``(first body line, skip reason or '', body)`` of every shell-language fenced block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence.group(1))), None)
        assert end is not None, f"README.md:{i + 1}: unclosed code fence"
        if fence.group(2).lower() in SHELL_LANGS:
            above = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = SKIP_MARK.match(above)
            if mark:
                assert mark.group(1), f"README.md:{i}: readme-test skip needs a reason"
            out.append((i + 2, mark.group(1) if mark else "", "\n".join(lines[i + 1:end])))
        i = end + 1
    return out


def block_commands(first_line: int, skip_reason: str, body: str) -> List[Command]:
    """Commands of a block: continuation lines joined, comments and blank lines dropped,
    leading ``VAR=value`` words taken as the environment."""
    commands, pending, start = [], "", None
    for offset, raw in enumerate(body.splitlines()):
        if start is None:
            start = first_line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        pending += raw
        words = shlex.split(pending, comments=True)
        if words:
            env = {}
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                key, value = words.pop(0).split("=", 1)
                env[key] = value
            commands.append(Command(start, " ".join(pending.split()), env, words, skip_reason))
        pending, start = "", None
    assert not pending.strip(), f"README.md:{start}: a command ends with a line continuation"
    return commands


def readme_commands() -> List[Command]:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return [c for block in readme_blocks(text) for c in block_commands(*block)]


COMMANDS = readme_commands()


# ----------------------------------------------------------------------------- entry points
def _console_scripts() -> Dict[str, str]:
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f).get("project", {}).get("scripts", {})


@dataclasses.dataclass
class EntryPoint:
    name: str  # the tool: tools/<name>.py, hac_tf.cli.<name>
    launcher: List[str]  # argv prefix that runs it with this interpreter
    args: List[str]  # the command's arguments after the entry point


def entry_point(argv: List[str]) -> Optional[EntryPoint]:
    if not argv:
        return None
    if re.match(r"^python(3(\.\d+)?)?$", argv[0]) and len(argv) > 1:
        if argv[1].endswith(".py"):
            path = os.path.join(REPO, argv[1])
            assert os.path.isfile(path), f"{argv[1]} does not exist in the repository"
            return EntryPoint(os.path.basename(argv[1])[:-3], [sys.executable, path], argv[2:])
        if argv[1] == "-m" and len(argv) > 2 and argv[2].startswith("hac_tf."):
            return EntryPoint(argv[2].rsplit(".", 1)[-1], [sys.executable, "-m", argv[2]], argv[3:])
        return None
    scripts = _console_scripts()
    if argv[0] in scripts:
        module, func = scripts[argv[0]].split(":")
        code = f"import sys; sys.argv[0] = {argv[0]!r}; from {module} import {func}; {func}()"
        return EntryPoint(module.rsplit(".", 1)[-1], [sys.executable, "-c", code], argv[1:])
    return None


_FLAG_CACHE: Dict[Tuple[str, ...], Dict[str, dict]] = {}


def entry_point_flags(ep: EntryPoint) -> Dict[str, dict]:
    """{flag name: {"type": ..., "enum": [...]}} from the entry point's ``--helpxml``."""
    key = tuple(ep.launcher)
    if key not in _FLAG_CACHE:
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(ep.launcher + ["--helpxml"], capture_output=True, text=True, timeout=300,
                              env=env, cwd=REPO)
        assert "<AllFlags>" in proc.stdout, f"{' '.join(ep.launcher)} --helpxml failed:\n{proc.stderr[-2000:]}"
        flags = {}
        for flag in ET.fromstring(proc.stdout).iter("flag"):
            flags[flag.findtext("name")] = {"type": flag.findtext("type") or "",
                                            "enum": [e.text for e in flag.iter("enum_value")]}
        _FLAG_CACHE[key] = flags
    return _FLAG_CACHE[key]


def parse_flags(args: List[str], known: Dict[str, dict]) -> Tuple[List[Tuple[str, Optional[str]]], List[str]]:
    """``([(name, value or None for a boolean)], positional)``; ``--noflag`` of a bool is (flag, 'false')."""
    flags, positional, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional += args[i + 1:]
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq:
                if name.startswith("no") and known.get(name[2:], {}).get("type") == "bool":
                    name, value = name[2:], "false"
                elif known.get(name, {}).get("type") == "bool" or name not in known:
                    value = None
                else:
                    i += 1
                    value = args[i] if i < len(args) else None
            flags.append((name, value))
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def check_flags(ep: EntryPoint, where: str) -> Dict[str, Optional[str]]:
    known = entry_point_flags(ep)
    flags, _ = parse_flags(ep.args, known)
    unknown = [n for n, _ in flags if n not in known]
    assert not unknown, (f"{where}: {ep.name} has no flag(s) {['--' + n for n in unknown]}; its flags: "
                         f"{sorted(n for n in known if not n.startswith(('help', 'only_check', 'pdb', 'run_with')))}")
    for name, value in flags:
        enum = known[name]["enum"]
        if enum and value is not None and not PLACEHOLDER.search(value):
            assert value in enum, f"{where}: --{name}={value} is not one of {enum}"
        if value and re.match(r"^(configs|tools|scripts|docs)/", value) and not PLACEHOLDER.search(value):
            assert os.path.exists(os.path.join(REPO, value)), f"{where}: --{name}={value} does not exist"
    return dict(flags)


def why_not_runnable_here(command: Command, flags: Dict[str, Optional[str]]) -> str:
    if any(PLACEHOLDER.search(w) for w in command.argv[1:]):
        return "placeholder values"
    if "TF_CONFIG" in command.env:
        return "a multi-worker cluster (TF_CONFIG)"
    if flags.get("strategy") in ("tpu", "multi_worker") or flags.get("tpu"):
        return f"--strategy={flags.get('strategy')} needs a TPU or a cluster"
    if flags.get("strategy") == "mirrored" and not flags.get("num_logical_cpus"):
        return "--strategy=mirrored without --num_logical_cpus uses GPUs"
    return ""


# ----------------------------------------------------------------------------- the workspace
def _tiny_train_overrides(config_file: Optional[str] = None) -> List[str]:
    sys.path.insert(0, REPO)
    from tests.training.tiny import TINY

    extra = []
    if config_file:
        from hac_tf.training.config import load_config

        if load_config(config_file).model.method in ("byol", "simsiam"):  # predictions match projections
            extra = ["model.predictor_hidden_dim=16", "model.predictor_out_dim=16"]
    return ([o for o in TINY if not o.startswith("export.")] + extra
            + ["model.loss_weights=[1.0,1.0]", "train.max_steps=2", "export.name=quickstart"])


#: what the workspace fixture appends to ``bash scripts/main.sh`` (flags of hac-bench-science)
MAIN_JOB_TINY = ["--params_override=data.batch_size=8,data.shuffle_buffer=64,model.width_multiplier=0.125,"
                 "model.embed_dim=16,model.projector_hidden_dim=32,model.projector_out_dim=16",
                 "--eval_train=64", "--eval_test=32"]


def _tiny_args(ep: EntryPoint) -> List[str]:
    """What is appended to a README command to run it at tiny size (same script, same flags)."""
    if ep.name == "train":
        config_file = next((a.split("=", 1)[1] for a in ep.args if a.startswith("--config_file=")), None)
        return ["--params_override=" + ",".join(_tiny_train_overrides(config_file))]
    if ep.name == "finetune":
        return [f"--data_dir={FIXTURE_FMNIST}", "--max_train=64", "--max_test=32", "--epochs=1", "--batch_size=16"]
    return []


def _run(args: List[str], cwd: str, env_extra: Optional[Dict[str, str]] = None, timeout: float = 900):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


pytestmark = pytest.mark.long(100)  # the workspace: the tiny main job, its exports


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A scratch checkout view after the (tiny) quickstart: ``runs/quickstart`` and
    ``saved_models/quickstart`` (+ models.config) exist. Returns {"root", "ran": {line: proc}}."""
    root = str(tmp_path_factory.mktemp("readme_workspace"))
    for name in ("tools", "configs", "scripts", "tests"):
        os.symlink(os.path.join(REPO, name), os.path.join(root, name))
    ran = {}
    for command in COMMANDS:
        if command.argv[:2] == ["bash", "scripts/main.sh"] and not command.skip_reason:
            env = dict(HAC_SKIP_SETUP="1", STEPS="2", DATA_DIR=FIXTURE_FMNIST,
                       PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
            proc = _run(["bash", "scripts/main.sh"] + MAIN_JOB_TINY, root, env)
            assert proc.returncode == 0, f"README.md:{command.line}: {command.text}\n{proc.stderr[-3000:]}"
            assert "| hai | steps:2 | 1 | 2 |" in proc.stdout, proc.stdout[-3000:]
            ran[command.line] = proc
            break
    for command in COMMANDS:
        if ran:
            break
        ep = entry_point(command.argv) if not command.skip_reason else None
        if ep is None or ep.name != "train" or RUN_POLICY.get("train") != "run":
            continue
        flags = check_flags(ep, f"README.md:{command.line}")
        if why_not_runnable_here(command, flags):
            continue
        proc = _run(ep.launcher + ep.args + _tiny_args(ep), root, command.env)
        assert proc.returncode == 0, f"README.md:{command.line}: {command.text}\n{proc.stderr[-3000:]}"
        ran[command.line] = proc
        model_dir = os.path.join(root, flags.get("model_dir") or "")
        if not os.path.exists(os.path.join(root, "runs", "quickstart")):
            os.makedirs(os.path.join(root, "runs"), exist_ok=True)
            os.symlink(os.path.abspath(model_dir), os.path.join(root, "runs", "quickstart"))
        break
    if not ran:  # no runnable training command in the README: export a tiny backbone directly
        import keras

        from hac_tf.export import export_backbone
        from hac_tf.models import build_resnet

        keras.utils.set_random_seed(1)
        backbone = build_resnet(18, "cifar", width_multiplier=0.125)
        export_backbone(backbone, None, os.path.join(root, "saved_models", "quickstart"), image_size=16,
                        warmup=False)
    assert os.path.isfile(os.path.join(root, "saved_models", "models.config"))
    return {"root": root, "ran": ran, "run_tools": set()}


# ----------------------------------------------------------------------------- TF Serving stand-in
class _StandInServing:
    """Serves every model of a models.config like TF Serving: REST ``/v1/models/<name>[/versions/<v>]:predict``
    and gRPC ``PredictionService/Predict``, answering by running the exported signatures."""

    def __init__(self, config_file: str, mounts: Dict[str, str]):
        import tensorflow as tf

        from hac_tf.export import latest_version, served_model_dirs

        self.models = {}
        for name, host_dir in served_model_dirs(config_file, mounts).items():
            self.models[name] = tf.saved_model.load(os.path.join(host_dir, str(latest_version(host_dir))))

    def predict(self, name: str, signature_name: str, feed_lists) -> Dict[str, "object"]:
        import numpy as np

        signature = self.models[name].signatures[signature_name or "serving_default"]
        _, specs = signature.structured_input_signature
        feed = {k: np.asarray(feed_lists[k], dtype=spec.dtype.as_numpy_dtype) for k, spec in specs.items()}
        return {k: v.numpy() for k, v in signature(**feed).items()}

    def start(self):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        serving = self

        class Rest(JsonHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = json.loads(self.read_body())
                m = re.match(r"^/v1/models/([^/:]+)(/versions/\d+)?:predict$", self.path)
                if not m or m.group(1) not in serving.models:
                    status, reply = 404, {"error": f"Servable not found for request: {self.path}"}
                else:
                    rows = body["instances"]
                    out = serving.predict(m.group(1), body.get("signature_name"),
                                          {k: [r[k] for r in rows] for k in rows[0]})
                    status = 200
                    reply = {"predictions": [{k: v[i].tolist() for k, v in out.items()} for i in range(len(rows))]}
                self.send_json(status, reply)

        class Grpc(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):  # noqa: N802 - gRPC API
                if request.model_spec.name not in serving.models:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found: {request.model_spec.name}")
                out = serving.predict(request.model_spec.name, request.model_spec.signature_name,
                                      {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
                response = predict_pb2.PredictResponse()
                for k, v in out.items():
                    response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
                return response

        self.http, self.thread = start_server(Rest)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Grpc(), self.grpc)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()
        self.rest_port = self.http.server_address[1]
        return self

    def stop(self):
        stop_server(self.http, self.thread)
        self.grpc.stop(0).wait(5)


@pytest.fixture(scope="module")
def serving(workspace):
    """The stand-in, serving the workspace's models.host.config (the host view of models.config)."""
    server = _StandInServing(os.path.join(workspace["root"], "saved_models", "models.host.config"), {}).start()
    yield server
    server.stop()


def _serving_client_args(ep: EntryPoint, serving: _StandInServing, root: str) -> List[str]:
    """The command's arguments with the server addresses pointed at the stand-in; the image files
    it names are written into the workspace."""
    import numpy as np
    from PIL import Image

    args = []
    flags, positional = parse_flags(ep.args, entry_point_flags(ep))
    images = list(positional)
    for name, value in flags:
        if name == "rest_url":
            value = f"http://127.0.0.1:{serving.rest_port}"
        elif name == "grpc_target":
            value = f"127.0.0.1:{serving.grpc_port}"
        elif name == "server":
            value = "127.0.0.1"
        elif name == "rest_port":
            value = str(serving.rest_port)
        elif name == "grpc_port":
            value = str(serving.grpc_port)
        elif name == "images":
            images += value.split(",")
        elif name == "image":
            images.append(value)
        args.append(f"--{name}" if value is None else f"--{name}={value}")
    if not any(n in ("rest_url", "grpc_target", "server", "rest_port", "grpc_port") for n, _ in flags):
        args += [f"--rest_url=http://127.0.0.1:{serving.rest_port}"]  # the default, localhost:8501
    rng = np.random.default_rng(0)
    for i, path in enumerate(images):
        full = os.path.join(root, path)
        if not os.path.exists(full):
            os.makedirs(os.path.dirname(full) or root, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (24 + 8 * i, 32, 3), dtype=np.uint8)).save(full)
    return args + positional


# ----------------------------------------------------------------------------- docker
@dataclasses.dataclass
class DockerRun:
    image: str
    ports: Dict[int, int]  # container port -> host port
    mounts: Dict[str, str]  # container dir -> host dir (unexpanded)
    server_flags: Dict[str, Optional[str]]


_DOCKER_VALUE_OPTIONS = {"-p", "--publish", "-v", "--volume", "-e", "--env", "--name", "--network", "--mount",
                         "--gpus", "-w", "--workdir", "--entrypoint", "-u", "--user", "--cpus", "-m", "--memory"}


def parse_docker_run(argv: List[str], where: str) -> DockerRun:
    assert argv[:2] == ["docker", "run"], f"{where}: only 'docker run' is understood"
    ports, mounts, i = {}, {}, 2
    while i < len(argv) and argv[i].startswith("-"):
        option, eq, value = argv[i].partition("=")
        if option in _DOCKER_VALUE_OPTIONS and not eq:
            i += 1
            value = argv[i]
        if option in ("-p", "--publish"):
            host, _, container = value.rpartition(":")
            ports[int(container.split("/")[0])] = int(host.rsplit(":", 1)[-1] or container.split("/")[0])
        elif option in ("-v", "--volume"):
            parts = value.split(":")
            assert len(parts) in (2, 3), f"{where}: -v {value} is not host:container[:options]"
            mounts[parts[1].rstrip("/") or "/"] = parts[0]
        i += 1
    assert i < len(argv), f"{where}: no image"
    image, server_flags = argv[i], {}
    for arg in argv[i + 1:]:
        assert arg.startswith("--"), f"{where}: unexpected argument {arg!r} after the image"
        name, eq, value = arg[2:].partition("=")
        server_flags[name] = value if eq else None
    return DockerRun(image, ports, mounts, server_flags)


def _expand_pwd(path: str, root: str) -> str:
    return re.sub(r"\$\{?PWD\}?|\$\(pwd\)|`pwd`", root, path)


def _published_host_ports() -> Dict[str, set]:
    """{"rest": {host ports}, "grpc": {...}} published by the README's TF Serving docker commands."""
    out = {"rest": set(), "grpc": set()}
    for command in COMMANDS:
        if command.argv[:2] == ["docker", "run"] and not command.skip_reason:
            run = parse_docker_run(command.argv, f"README.md:{command.line}")
            rest = int(run.server_flags.get("rest_api_port") or TF_SERVING_PORTS["rest"])
            grpc = int(run.server_flags.get("port") or TF_SERVING_PORTS["grpc"])
            out["rest"].update(h for c, h in run.ports.items() if c == rest)
            out["grpc"].update(h for c, h in run.ports.items() if c == grpc)
    return out


# ----------------------------------------------------------------------------- the tests
def test_readme_has_commands():
    assert len(COMMANDS) >= 5, "no ```bash commands found in README.md"


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command(command, request):
    where = f"README.md:{command.line}: {command.text}"
    if command.skip_reason:
        pytest.skip(f"readme-test: skip {command.skip_reason}")
    argv = command.argv
    if argv[:2] == ["docker", "run"]:
        return _check_docker(command, request.getfixturevalue("workspace"), where)
    if argv[0] == "bash" and len(argv) > 1 and argv[1].endswith(".sh"):
        return _check_script(argv[1], where)
    if argv[0] == "tensorflow_model_server":
        return _check_host_model_server(command, request.getfixturevalue("workspace"), where)
    if argv[:2] == ["pip", "install"] or argv[:4] == ["python", "-m", "pip", "install"]:
        return _check_pip_install(argv[argv.index("install") + 1:], where)
    ep = entry_point(argv)
    assert ep is not None, (f"{where}: unknown command; teach tests/test_readme.py about it, or put "
                            f"'<!-- readme-test: skip <reason> -->' above its block")
    flags = check_flags(ep, where)
    policy = RUN_POLICY.get(ep.name)
    assert policy, f"{where}: no RUN_POLICY entry for tool {ep.name!r} in tests/test_readme.py"
    reason = why_not_runnable_here(command, flags)
    if policy.startswith("flags:") or reason:
        return  # flags checked; cannot run here
    workspace = request.getfixturevalue("workspace")
    root = workspace["root"]
    already = ep.name in workspace["run_tools"] or (ep.name == "train" and workspace["ran"])
    if command.line in workspace["ran"]:
        workspace["run_tools"].add(ep.name)
        return  # the workspace fixture ran this very command
    if policy == "full" and not FULL or policy == "run" and already and not FULL:
        for name in INPUT_PATH_FLAGS.get(ep.name, ()):
            value = flags.get(name)
            if value and not PLACEHOLDER.search(value):
                assert os.path.exists(os.path.join(root, value)), f"{where}: --{name}={value} does not exist"
        return
    if ep.name == "serving_client":
        args = _serving_client_args(ep, request.getfixturevalue("serving"), root)
        proc = _run(ep.launcher + args, root, command.env, timeout=300)
        assert proc.returncode == 0, f"{where}\n{proc.stderr[-3000:]}"
        assert "embedding: shape=" in proc.stdout or "shape=" in proc.stdout, proc.stdout
    else:
        proc = _run(ep.launcher + ep.args + _tiny_args(ep), root, command.env)
        assert proc.returncode == 0, f"{where}\n{proc.stderr[-3000:]}"
    workspace["run_tools"].add(ep.name)


def _check_script(script: str, where: str) -> None:
    path = os.path.join(REPO, script)
    assert os.path.isfile(path), f"{where}: {script} does not exist"
    proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert proc.returncode == 0, f"{where}: bash -n {script}: {proc.stderr}"
    with open(path, encoding="utf-8") as f:
        body = f.read()
    for inner in block_commands(1, "", body):
        argv = inner.argv[1:] if inner.argv[:1] == ["exec"] else inner.argv
        ep = entry_point(argv)
        if ep is not None:
            check_flags(ep, f"{script}:{inner.line} (run by {where})")


def _check_pip_install(args: List[str], where: str) -> None:
    """Not run (no network in tests): the checkout, its extras and requirement files must exist."""
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f).get("project", {}).get("optional-dependencies", {}))
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-r", "--requirement", "-c", "--constraint"):
            i += 1
            assert os.path.isfile(os.path.join(REPO, args[i])), f"{where}: {args[i]} does not exist"
        elif arg in ("-e", "--editable", "-U", "--upgrade", "-q", "--quiet", "--no-deps"):
            pass
        elif not arg.startswith("-"):
            m = re.match(r"^(\.|hac[-_]tf)(\[([\w,-]+)\])?$", arg)
            if m:
                missing = set((m.group(3) or "").split(",")) - extras - {""}
                assert not missing, f"{where}: extras {sorted(missing)} are not in pyproject.toml ({sorted(extras)})"
        i += 1


def _check_host_model_server(command: Command, workspace, where: str) -> None:
    """``tensorflow_model_server`` run on the host (not run: no binary here): known flags, and
    the models.config it names ($PWD = the workspace) lists servable model directories."""
    from hac_tf.export import served_model_dirs

    flags = {}
    for arg in command.argv[1:]:
        assert arg.startswith("--"), f"{where}: unexpected argument {arg!r}"
        name, eq, value = arg[2:].partition("=")
        flags[name] = value if eq else None
    unknown = sorted(set(flags) - TF_SERVING_FLAGS)
    assert not unknown, f"{where}: not tensorflow_model_server flags: {unknown}"
    config = flags.get("model_config_file")
    assert config, f"{where}: expected --model_config_file"
    root = workspace["root"]
    host_config = os.path.join(root, _expand_pwd(config, root))
    assert os.path.isfile(host_config), f"{where}: {config} -> {host_config} was not written by the export"
    assert "quickstart" in served_model_dirs(host_config), f"{where}: the quickstart export is not served"


def _check_docker(command: Command, workspace, where: str) -> None:
    from hac_tf.export import served_model_dirs

    run = parse_docker_run(command.argv, where)
    assert re.match(r"^tensorflow/serving(:[\w.-]+)?$", run.image), f"{where}: image {run.image!r}"
    unknown = sorted(set(run.server_flags) - TF_SERVING_FLAGS)
    assert not unknown, f"{where}: not tensorflow_model_server flags: {unknown}"
    rest = int(run.server_flags.get("rest_api_port") or TF_SERVING_PORTS["rest"])
    grpc = int(run.server_flags.get("port") or TF_SERVING_PORTS["grpc"])
    assert rest in run.ports and grpc in run.ports, f"{where}: publish the REST ({rest}) and gRPC ({grpc}) ports"
    root = workspace["root"]
    mounts = {c: os.path.abspath(os.path.join(root, _expand_pwd(h, root))) for c, h in run.mounts.items()}
    config = run.server_flags.get("model_config_file")
    if config:
        container_dir = next((c for c in sorted(mounts, key=len, reverse=True)
                              if config.startswith(c.rstrip("/") + "/")), None)
        assert container_dir, f"{where}: --model_config_file={config} is not in a mounted directory {sorted(mounts)}"
        host_config = os.path.join(mounts[container_dir], config[len(container_dir.rstrip("/")) + 1:])
        assert os.path.isfile(host_config), f"{where}: {config} -> {host_config} was not written by the export"
        served = served_model_dirs(host_config, mounts)  # raises naming the model that would not load
        assert "quickstart" in served, f"{where}: the quickstart export is not served: {sorted(served)}"
    else:
        base = run.server_flags.get("model_base_path")
        assert base and run.server_flags.get("model_name"), f"{where}: needs --model_config_file or a model"
        container_dir = next(c for c in mounts if base == c or base.startswith(c.rstrip("/") + "/"))
        host = os.path.join(mounts[container_dir], base[len(container_dir.rstrip("/")):].lstrip("/"))
        from hac_tf.export import list_versions

        assert list_versions(host), f"{where}: {base} -> {host} holds no version"


@pytest.mark.parametrize("command", [c for c in COMMANDS if (entry_point(c.argv) or EntryPoint("", [], [])).name
                                     == "serving_client" and not c.skip_reason],
                         ids=lambda c: c.id)
def test_serving_client_uses_the_published_ports(command):
    """The README's client commands talk to the ports its docker command publishes."""
    published = _published_host_ports()
    if not (published["rest"] or published["grpc"]):
        pytest.skip("no TF Serving docker command in the README")
    ep = entry_point(command.argv)
    flags, _ = parse_flags(ep.args, entry_point_flags(ep))
    flags = dict(flags)
    if flags.get("rest_url"):
        from urllib.parse import urlsplit

        url = urlsplit(flags["rest_url"] if "://" in flags["rest_url"] else "http://" + flags["rest_url"])
        assert url.hostname in ("localhost", "127.0.0.1") and url.port in published["rest"], (
            f"README.md:{command.line}: --rest_url={flags['rest_url']} is not a published REST port "
            f"{sorted(published['rest'])}")
    if flags.get("grpc_target"):
        host, _, port = flags["grpc_target"].rpartition(":")
        assert host in ("localhost", "127.0.0.1") and int(port) in published["grpc"], (
            f"README.md:{command.line}: --grpc_target={flags['grpc_target']} is not a published gRPC port "
            f"{sorted(published['grpc'])}")


def test_parsing_rules():
    """The block/command parser on a made-up README (continuations, env, comments, skip marks)."""
    text = ("x\n<!-- readme-test: skip needs a GPU -->\n```bash\npython tools/train.py --a=1\n```\n"
            "```bash\nTF_CONFIG='{\"a\": 1}' \\\n  python tools/train.py --b=2   # comment\n\n# only a comment\n"
            "docker run -v \"$PWD/m:/models\" tensorflow/serving \\\n  --model_config_file=/models/models.config\n```\n"
            "```python\nprint(1)\n```\n")
    blocks = readme_blocks(text)
    assert [(line, reason) for line, reason, _ in blocks] == [(4, "needs a GPU"), (7, "")]
    commands = block_commands(*blocks[1])
    assert [(c.line, c.env, c.argv) for c in commands] == [
        (7, {"TF_CONFIG": '{"a": 1}'}, ["python", "tools/train.py", "--b=2"]),
        (11, {}, ["docker", "run", "-v", "$PWD/m:/models", "tensorflow/serving",
                  "--model_config_file=/models/models.config"])]
    run = parse_docker_run(commands[1].argv + [], "x")
    assert run.mounts == {"/models": "$PWD/m"} and run.server_flags == {"model_config_file": "/models/models.config"}
    assert _expand_pwd("$PWD/m", "/w") == "/w/m" and _expand_pwd("${PWD}/m", "/w") == "/w/m"
    with pytest.raises(AssertionError, match="skip needs a reason"):
        readme_blocks("<!-- readme-test: skip -->\n```bash\nls\n```\n")
    _check_pip_install(["-e", ".[dev]"], "x")
    with pytest.raises(AssertionError, match=r"extras \['gpu'\] are not in pyproject.toml"):
        _check_pip_install([".[gpu]"], "x")
