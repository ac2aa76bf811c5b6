"""ModelSpec: per-method defaults, validation errors (one line, naming the field), (de)serialisation."""

from __future__ import annotations

import dataclasses

import pytest

from hac_tf.losses import MochiConfig
from hac_tf.methods import ModelSpec


def test_defaults_per_method():
    simsiam = ModelSpec()
    assert simsiam.method == "simsiam"
    assert simsiam.level_depths == (1, 2, 3, 4)
    assert simsiam.loss_weights == (1.0, 1.0, 1.0, 1.0)
    assert simsiam.embed_fields == ("colour",)
    assert simsiam.embed_dim == 512
    proj = simsiam.projector
    assert (proj["hidden_dim"], proj["out_dim"], proj["num_layers"], proj["last_bn"]) == (2048, 2048, 3, True)
    assert simsiam.predictor == {"hidden_dim": 512, "out_dim": 2048}
    assert simsiam.has_predictor and not simsiam.has_target

    byol = ModelSpec(method="byol")
    assert (byol.projector["hidden_dim"], byol.projector["out_dim"], byol.projector["num_layers"]) == (4096, 256, 2)
    assert byol.predictor == {"hidden_dim": 4096, "out_dim": 256}
    assert byol.setting("byol_base_momentum") == 0.99
    assert byol.has_target

    moco = ModelSpec(method="moco")
    assert (moco.projector["hidden_dim"], moco.projector["out_dim"], moco.projector["num_layers"]) == (2048, 128, 2)
    assert moco.projector["hidden_bn"] is False and moco.projector["last_bn"] is False
    assert moco.predictor is None
    assert moco.setting("temperature") == 0.2
    assert moco.setting("moco_queue_size") == 4096
    assert moco.setting("moco_momentum") == 0.99
    assert moco.mochi is None

    simclr = ModelSpec(method="simclr")
    assert simclr.setting("temperature") == 0.5
    assert simclr.projector["out_dim"] == 128 and simclr.predictor is None

    barlow = ModelSpec(method="barlow")
    assert barlow.setting("barlow_lambd") == 3.9e-3
    assert barlow.setting("barlow_scale") == 1.0 / 32.0
    assert barlow.projector["num_layers"] == 3 and barlow.projector["last_bn"] is False


def test_overrides_and_derived_values():
    spec = ModelSpec(method="moco", temperature=0.1, moco_queue_size=65536, moco_momentum=0.999,
                     projector_out_dim=64, level_depths=[1, 4], loss_weights=[0.5, 1])
    assert spec.setting("temperature") == 0.1
    assert spec.setting("moco_queue_size") == 65536
    assert spec.projector["out_dim"] == 64
    assert spec.level_depths == (1, 4) and spec.loss_weights == (0.5, 1.0)
    assert spec.level_names == ("level_1", "level_2")
    assert spec.used_depths == (1, 4)
    assert [spec.embeds_level(i) for i in range(2)] == [False, True]
    assert ModelSpec(level_depths=(1,)).embed_fields == ()  # default: nothing to embed at depth 1
    assert ModelSpec(method="simsiam", predictor_hidden_dim=64, projector_out_dim=32).predictor == {
        "hidden_dim": 64, "out_dim": 32}
    assert ModelSpec(method="simclr", mochi={"num_hardest": 8, "num_mixed": 4,
                                             "num_query_mixed": 2}).mochi == MochiConfig(8, 4, 2)


def test_baseline():
    spec = ModelSpec.baseline("byol")
    assert spec.level_depths == (4,) and spec.embed_fields == () and spec.loss_weights == (1.0,)


@pytest.mark.parametrize(
    "kwargs,field,fragment",
    [
        (dict(method="simclrr"), "method", "allowed: barlow, byol, moco, simclr, simsiam"),
        (dict(depth=101), "depth", "[18, 34, 50]"),
        (dict(stem="tiny"), "stem", "['cifar', 'imagenet']"),
        (dict(width_multiplier=0), "width_multiplier", "must be in (0.0, 8.0]"),
        (dict(level_depths=()), "level_depths", "at least one level"),
        (dict(level_depths=(1, 5)), "level_depths", "allowed: 1, 2, 3, 4"),
        (dict(level_depths=(1, 2), loss_weights=(1.0,)), "loss_weights", "has 1 entries but level_depths has 2"),
        (dict(loss_weights=(1.0, -1.0, 1.0, 1.0)), "loss_weights", ">= 0"),
        (dict(embed_fields=("colour",), level_depths=(1,)), "embed_fields", "depth 1 is never embedded"),
        (dict(embed_fields=("hue",)), "embed_fields", "unknown field"),
        (dict(embed_dim=0), "embed_dim", "must be in [1, 65536]"),
        (dict(method="simclr", predictor_hidden_dim=512), "predictor_hidden_dim", "has no predictor"),
        (dict(method="moco", predictor_out_dim=128), "predictor_out_dim", "has no predictor"),
        (dict(method="barlow", predictor_hidden_dim=512), "predictor_hidden_dim", "has no predictor"),
        (dict(method="byol", predictor_out_dim=128), "predictor_out_dim", "must equal the projector output 256"),
        (dict(method="simclr", moco_queue_size=1024), "moco_queue_size", "not of method 'simclr'"),
        (dict(method="byol", moco_momentum=0.999), "moco_momentum", "not of method 'byol'"),
        (dict(method="simsiam", temperature=0.2), "temperature", "not of method 'simsiam'"),
        (dict(method="moco", byol_base_momentum=0.99), "byol_base_momentum", "not of method 'moco'"),
        (dict(method="simclr", barlow_lambd=0.01), "barlow_lambd", "not of method 'simclr'"),
        (dict(method="byol", mochi=MochiConfig()), "mochi", "applies to moco, simclr (methods whose loss is a softmax"),
        (dict(method="simclr", temperature=0.0), "temperature", "must be in (0.0, 100.0]"),
        (dict(method="moco", moco_queue_size=0), "moco_queue_size", "must be in [1, 4194304]"),
        (dict(method="moco", moco_momentum=1.5), "moco_momentum", "must be in [0.0, 1.0)"),
        (dict(projector_num_layers=0), "projector_num_layers", "must be in [1, 8]"),
        (dict(method="simclr", mochi={"num_hardest": 0}), "mochi", "num_hardest"),
    ],
)
def test_validation_errors(kwargs, field, fragment):
    with pytest.raises(ValueError) as info:
        ModelSpec(**kwargs)
    message = str(info.value)
    assert message.startswith(f"ModelSpec.{field}:"), message
    assert fragment in message, message
    assert "\n" not in message


def test_frozen():
    spec = ModelSpec()
    with pytest.raises(Exception):
        spec.method = "byol"  # type: ignore[misc]


def test_dict_round_trip():
    spec = ModelSpec(method="moco", level_depths=(2, 4), loss_weights=(0.5, 1.0), moco_queue_size=128,
                     mochi=MochiConfig(16, 8, 4, start_step=10), width_multiplier=0.5)
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec
    with pytest.raises(ValueError, match=r"ModelSpec.bogus: unknown field"):
        ModelSpec.from_dict({"bogus": 1})


def test_from_dict_lenient_accepts_a_config_with_every_knob():
    # the shape of a training config's model section: every knob present, 0 = method default
    config = dict(method="simclr", depth=18, stem="cifar", width_multiplier=0.5, sync_bn=False,
                  level_depths=[1, 2, 3, 4], loss_weights=[], embed_fields=["colour"], embed_dim=512,
                  projector_hidden_dim=0, projector_out_dim=0, projector_num_layers=0,
                  predictor_hidden_dim=0, predictor_out_dim=0, temperature=0.0,
                  moco_queue_size=4096, moco_momentum=0.99, byol_base_momentum=0.99,
                  barlow_lambd=3.9e-3, barlow_scale=1 / 32)
    spec = ModelSpec.from_dict(config, lenient=True)
    assert spec.setting("temperature") == 0.5 and spec.loss_weights == (1.0,) * 4
    assert spec.moco_queue_size is None
    with pytest.raises(ValueError, match="ModelSpec.moco_queue_size"):
        ModelSpec.from_dict(dict(config, moco_queue_size=1024), lenient=True)
    with pytest.raises(ValueError, match="ModelSpec.moco_queue_size"):
        ModelSpec(method="simclr", moco_queue_size=4096)  # strict: a queue on SimCLR is an error


def test_per_view_bn_is_the_default_and_older_spec_files_keep_shared_statistics(tmp_path):
    """Per-view BatchNorm became the default on 2026-12-06 (docs/RESULTS.md); a spec file saved
    before the switch existed trained with shared statistics, and is rebuilt with them."""
    import json

    from hac_tf.training.config import load_config

    assert ModelSpec(method="simclr").per_view_bn is True
    assert load_config("banded_simclr_baseline").model.per_view_bn is True
    spec = ModelSpec(method="simclr")
    path = tmp_path / "model_spec.json"
    spec.save(str(path))
    assert ModelSpec.load(str(path)).per_view_bn is True
    old = json.loads(path.read_text())
    del old["per_view_bn"]
    path.write_text(json.dumps(old))
    assert ModelSpec.load(str(path)).per_view_bn is False
    assert ModelSpec.load(str(path)) == dataclasses.replace(spec, per_view_bn=False)
