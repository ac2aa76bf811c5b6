"""hac_tf.cli: every CLI module is a declared console script with the flags of its tools/
wrapper, --help runs, and a run prints what it runs on, quietly (tiny sizes, fixture data)."""

import importlib
import os
import re
import subprocess
import sys
import tomllib

import pytest
from absl import flags

from hac_tf.cli.quiet import NATIVE_LOG_LINE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE_FMNIST = os.path.join(REPO, "tests", "fixtures", "fashion_mnist")
CLI_DIR = os.path.join(REPO, "hac_tf", "cli")
NOT_TOOLS = {"__init__", "quiet"}

# The flags of tools/*.py before they became wrappers (plus the shared --verbose where it is new).
EXPECTED_FLAGS = {
    "train": {"config_file", "params_override", "model_dir", "strategy", "tpu", "num_logical_cpus", "mode",
              "verbose"},
    "evaluate": {"model_dir", "params_override", "export", "verbose"},
    "export": {"model_dir", "export_dir", "version", "image_size", "checkpoint", "config_file", "params_override",
               "metrics_file", "serving_root", "max_batch", "warmup", "allow_uninitialized", "verbose"},
    "show_views": {"out", "source", "data_dir", "split", "policy", "num_images", "image_size", "blur_probability",
                   "seed", "verbose"},
    "finetune": {"export_dir", "source", "label_key", "mode", "epochs", "batch_size", "learning_rate", "max_train",
                 "max_test", "augment", "image_size", "data_dir", "source_arg", "seed", "verbose", "onednn",
                 "output_json"},
    "finetune_dense": {"export_dir", "task", "steps", "batch_size", "canvas_size", "num_train", "num_test",
                       "max_objects", "learning_rate", "freeze_backbone", "level_naming", "min_level", "max_level",
                       "anchor_size", "data_dir", "seed", "verbose", "onednn", "output_json"},
    "bench_train": {"rows", "batch_sizes", "steps", "input_seconds", "precision", "precisions", "repeats", "jsonl",
                    "allocator", "from_jsonl", "list_rows", "_child", "peer_json", "verbose"},
    "profile_train": {"row", "batch_size", "precision", "profile_steps", "top", "override", "scope", "verbose"},
    "bench_augment": {"sizes", "batch_size", "seconds", "num_levels", "source_size", "plain_kerascv", "verbose"},
    "bench_quality": {"methods", "variants", "out_dir", "params_override", "verbose"},
    "fault_drill": {"kills", "preemptions", "steps", "max_seconds", "seed", "work_dir", "data_dir", "verbose"},
}


def _scripts():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _native_lines(text):
    return [line for line in text.splitlines() if NATIVE_LOG_LINE.match(line.encode())]


def test_every_cli_module_is_a_declared_console_script():
    targets = {target for target in _scripts().values()}
    modules = sorted(f[:-3] for f in os.listdir(CLI_DIR) if f.endswith(".py") and f[:-3] not in NOT_TOOLS)
    assert set(EXPECTED_FLAGS) <= set(modules)
    for module in modules:
        assert f"hac_tf.cli.{module}:run" in targets, f"hac_tf/cli/{module}.py has no console script"
    assert set(_scripts()) == {"hac-train", "hac-evaluate", "hac-export", "hac-views", "hac-finetune",
                               "hac-finetune-dense", "hac-serving-client", "hac-prepare-data", "hac-bench-science",
                               "hac-bench-train", "hac-profile-train", "hac-bench-augment", "hac-bench-quality",
                               "hac-fault-drill"}
    for name, target in _scripts().items():
        module_name, func = target.split(":")
        if os.path.exists(os.path.join(REPO, *module_name.split(".")) + ".py"):
            module = importlib.import_module(module_name)
            assert callable(getattr(module, func)) and callable(module.main), name


@pytest.mark.parametrize("tool", sorted(EXPECTED_FLAGS))
def test_cli_flags_are_those_of_the_tool(tool):
    module = importlib.import_module(f"hac_tf.cli.{tool}")
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    assert set(flag_values) == EXPECTED_FLAGS[tool]


def test_cli_modules_import_without_tensorflow():
    modules = sorted(f[:-3] for f in os.listdir(CLI_DIR) if f.endswith(".py") and f[:-3] not in NOT_TOOLS)
    code = ("import sys\nimport " + ", ".join(f"hac_tf.cli.{m}" for m in modules)
            + "\nprint('tensorflow' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"  # TF is imported inside main, after the log output is configured


@pytest.mark.parametrize("tool", sorted(EXPECTED_FLAGS))
def test_help_runs_and_lists_the_flags(tool):
    r = subprocess.run([sys.executable, "-m", f"hac_tf.cli.{tool}", "--help"], capture_output=True, text=True,
                       timeout=60, env=_env(), cwd=REPO)
    assert r.returncode == 1, r.stderr[-2000:]  # absl's --help exits with status 1
    assert "Traceback" not in r.stderr
    for name in EXPECTED_FLAGS[tool]:
        assert re.search(rf"--(\[no\])?{name}\b", r.stdout), f"--{name} missing from {tool} --help"


def test_console_script_help_when_installed():
    script = os.path.join(os.path.dirname(sys.executable), "hac-train")
    if not os.path.exists(script):
        pytest.skip("hac_tf is not installed in this environment with its console scripts")
    r = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)
    assert r.returncode == 1 and "--config_file" in r.stdout and "--verbose" in r.stdout and "hac-train" in r.stdout


def test_train_prints_devices_and_hides_native_logs(tmp_path):
    overrides = ",".join([
        f"data.data_dir={FIXTURE_FMNIST}", "data.batch_size=16", "data.shuffle_buffer=64",
        "model.width_multiplier=0.125", "model.embed_dim=16",
        "model.projector_hidden_dim=32", "model.projector_out_dim=16", "train.max_steps=1",
        "train.log_every_steps=1", "export.enabled=false"])
    r = subprocess.run([sys.executable, "-m", "hac_tf.cli.train", "--config_file=cfmnist_simclr_baseline",
                        f"--model_dir={tmp_path / 'run'}", "--mode=train", f"--params_override={overrides}"],
                       capture_output=True, text=True, timeout=600, env=_env(CUDA_VISIBLE_DEVICES=""), cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    first = r.stdout.splitlines()[0]
    assert first.startswith("running on 1 CPU") and "| strategy: default (one device) | 1 replica |" in first
    assert first.endswith("precision: float32")
    assert "step 1/1" in r.stderr
    assert _native_lines(r.stderr) == [], _native_lines(r.stderr)[:3]
    assert not re.search(r"^I\d{4} ", r.stderr, re.M)  # no absl INFO lines


def test_verbose_brings_absl_info_back_and_quiet_hides_it(tmp_path):
    args = [sys.executable, "-m", "hac_tf.cli.show_views", f"--data_dir={FIXTURE_FMNIST}", "--num_images=1",
            "--image_size=16", f"--out={tmp_path / 'views.png'}"]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert f"wrote {tmp_path / 'views.png'}" in quiet.stdout
    assert not re.search(r"^I\d{4} ", quiet.stderr, re.M) and _native_lines(quiet.stderr) == []
    loud = subprocess.run(args + ["--verbose"], capture_output=True, text=True, timeout=300, env=_env(), cwd=REPO)
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert re.search(r"^I\d{4} .*show_views\.py:\d+\] wrote ", loud.stderr, re.M), loud.stderr[-2000:]
