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


# ----------------------------------------------------------------------------- every field validated


def _leaves():
    from hac_tf.training.config import ExperimentConfig, _walk

    return list(_walk(ExperimentConfig()))


def test_every_config_field_is_validated():
    """Each numeric field has a range or a choice set, each string a choice set or an explicit
    free-form entry, each list element-wise checks; booleans are type-checked."""
    from hac_tf.training.config import CHECKED_LIST_FIELDS, CHOICES, FREE_FIELDS, RANGES

    unchecked = []
    for path, value, _ in _leaves():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            ok = path in RANGES or path in CHOICES
        elif isinstance(value, (tuple, list)):
            ok = path in CHECKED_LIST_FIELDS
        else:  # str / Optional[str]
            ok = path in CHOICES or path in FREE_FIELDS
        if not ok:
            unchecked.append(path)
    assert unchecked == []
    known = {p for p, _, _ in _leaves()}
    assert set(RANGES) <= known and set(CHOICES) <= known
    assert set(CHECKED_LIST_FIELDS) <= known and set(FREE_FIELDS) <= known


def _outside(lo, hi, lo_inc, hi_inc, is_int):
    below = lo - 1 if lo_inc else lo
    above = hi + 1 if hi_inc else hi
    if not is_int:
        return [below, above, float("nan"), float("inf")]
    return [int(below), int(above)]


def test_every_range_rejects_values_outside_it_naming_the_key():
    from hac_tf.training.config import RANGES

    defaults = {p: v for p, v, _ in _leaves()}
    tried = 0
    for path, (lo, hi, lo_inc, hi_inc) in RANGES.items():
        for bad in _outside(lo, hi, lo_inc, hi_inc, isinstance(defaults[path], int)):
            with pytest.raises(ConfigError) as info:
                load_config(None, [f"{path}={bad}"])
            assert path in str(info.value), (path, bad, str(info.value))
            tried += 1
    assert tried >= 2 * len(RANGES)


def test_every_choice_rejects_an_unknown_value_and_types_are_checked():
    from hac_tf.training.config import CHOICES

    for path, allowed in CHOICES.items():
        bad = 7 if isinstance(allowed[0], str) else "nope"
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"{path}={bad}"])
        assert path in str(info.value)
    for path, value, _ in _leaves():
        if isinstance(value, bool):
            with pytest.raises(ConfigError):
                load_config(None, [f"{path}=maybe"])


@pytest.mark.parametrize("override, message", [
    ("augment.jitter_strength=[0.4,0.4,0.4,0.7]", "hue in [0, 0.5]"),
    ("augment.jitter_strength=[-0.1,0.4,0.4,0.1]", "augment.jitter_strength"),
    ("model.loss_weights=[0,0,0,0]", "not all zero"),
    ("model.loss_weights=[1,1,-1,1]", "model.loss_weights"),
    ("data.label_keys=[garment,garment]", "distinct"),
    ("export.name=../escape", "plain directory name"),
])
def test_list_fields_are_checked_element_wise(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
