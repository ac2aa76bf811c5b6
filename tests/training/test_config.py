"""Config schema: files and overrides compose; every bad value is one clear line."""

import subprocess
import sys
import textwrap

import pytest

from hac_tf.training.config import ConfigError, ExperimentConfig, load_config, validate

REPO = __import__("os").path.dirname(__import__("os").path.dirname(__import__("os").path.dirname(__file__)))


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_defaults_are_valid():
    validate(ExperimentConfig())


def test_file_then_overrides_in_order(tmp_path):
    path = write(tmp_path, """
        model: {method: simclr, width_multiplier: 0.25}
        data: {batch_size: 64}
    """)
    c = load_config(path, ["data.batch_size=32", "model: {width_multiplier: 0.5}"])
    assert c.model.method == "simclr"
    assert c.data.batch_size == 32 and c.model.width_multiplier == 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.methd=simclr", "unknown key 'model.methd'"),
        ("modle.depth=18", "unknown key 'modle'"),
        ("model.method=simclrr", "model.method='simclrr' is not one of"),
        ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),
        ("model.width_multiplier=-1", "model.width_multiplier=-1 is outside the allowed range"),
        ("augment.jitter_probability=1.5", "augment.jitter_probability=1.5 is outside"),
        ("train.sync=true", "unknown key 'train.sync'"),
        ("model.method=simclr,model.predictor_hidden_dim=512", "has no predictor"),
        ("optimizer.fix_predictor_lr=true,model.method=moco", "fix_predictor_lr"),
        ("augment.policy=two_view", "level_depths has 4 entries"),
        ("model.level_depths=[1,2,5,4]", "depth(s) [5]"),
        ("model.embed_fields=[sparkle]", "unknown field(s) ['sparkle']"),
        ("augment.order=[crop_jitter,glitter]", "unknown group(s) ['glitter']"),
        ("data.source=imagenet", "data.source='imagenet' is not one of"),
        ("data.source=image_folder", "data.data_dir must name"),
        ("train.mixed_precision=fp8", "is not one of"),
    ],
)
def test_bad_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_yaml_is_loaded_safely(tmp_path):
    """A YAML tag that would construct a Python object is refused, never executed."""
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError):
        load_config(path)
    assert not marker.exists()


def test_every_shipped_config_is_valid():
    import glob
    import os

    files = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    assert len(files) >= 10
    for f in files:
        load_config(f)


def test_train_cli_reports_config_error_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, f"{REPO}/tools/train.py", f"--model_dir={tmp_path}/m",
                        "--params_override=model.method=simclrr"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "ConfigError: model.method='simclrr' is not one of" in r.stderr
    assert not (tmp_path / "m").exists()  # rejected before anything was created or read
