"""hac_tf.science: budgets -> steps, FLOPs per step, the rows' configs."""

from __future__ import annotations

import os

import pytest

from hac_tf.science.budget import Budget, measure_step, parse_budget, steps_for_budget
from hac_tf.science.rows import GATE_ROWS, ROWS, row_by_name
from hac_tf.training.config import load_config

FM_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fashion_mnist")
TINY = [f"data.data_dir={FM_FIXTURE}", "data.batch_size=8", "data.shuffle_buffer=64", "model.width_multiplier=0.125",
        "model.embed_dim=16", "model.projector_hidden_dim=32", "model.projector_out_dim=16"]


def test_parse_budget_and_steps():
    assert parse_budget("seconds:600") == Budget("seconds", 600.0)
    assert parse_budget("flops:3e14").tag == "flops3e+14"
    for bad, message in (("600", "kind one of"), ("hours:2", "kind one of"), ("steps:x", "not a number"),
                         ("steps:0", "> 0"), ("steps:nan", "> 0")):
        with pytest.raises(ValueError, match=message):
            parse_budget(bad)
    assert steps_for_budget(Budget("steps", 600), 128) == 600
    assert steps_for_budget(Budget("images", 1000), 128) == 8  # ceil
    assert steps_for_budget(Budget("flops", 1e12), 128, flops_per_step=3e11) == 3
    assert steps_for_budget(Budget("seconds", 60), 128, seconds_per_step=0.7) == 85
    assert steps_for_budget(Budget("flops", 1.0), 128, flops_per_step=3e11) == 1  # at least one step
    with pytest.raises(ValueError, match="FLOPs of one step"):
        steps_for_budget(Budget("flops", 1e12), 128)


def test_every_row_is_a_valid_config_and_the_gate_rows_exist():
    assert set(GATE_ROWS) <= set(ROWS) and len(ROWS) == 11
    for row in ROWS.values():
        config = load_config("banded_simclr_baseline", list(row.overrides))
        assert config.data.source == "banded_hue_fashion_mnist"
    # the 'HAI as released' row is the shipped hierarchical config: same views, same model
    hai = load_config("banded_simclr_baseline", list(ROWS["hai"].overrides))
    released = load_config("banded_simclr_hierarchical")
    augment = [{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in c.augment.as_dict().items()}
               for c in (hai, released)]
    assert augment[0] == augment[1]
    from hac_tf.training.trainer import build_model

    assert build_model(hai).spec == build_model(released).spec  # loss_weights () = all 1.0
    with pytest.raises(ValueError, match="unknown benchmark row 'hia'"):
        row_by_name("hia")


def test_a_hierarchical_step_costs_more_flops_than_a_one_level_step(tmp_path):
    one = measure_step(load_config("banded_simclr_baseline", TINY), str(tmp_path / "a"), timed_steps=1)
    four = measure_step(load_config("banded_simclr_baseline", list(ROWS["hai"].overrides) + TINY),
                        str(tmp_path / "b"))
    assert one["seconds_per_step"] > 0 and four["seconds_per_step"] is None
    assert 1.8 < four["flops_per_step"] / one["flops_per_step"] < 4.0  # four depths: 1 + 2 + 3 + 4 stages


class _TwoBranchLoss:
    """A stand-in with the `compute_loss` interface: one matmul the loss is differentiated through,
    one behind `stop_gradient` (a target tower), one that does not reach the loss (a metric)."""

    def __init__(self):
        import tensorflow as tf

        self.online = tf.Variable(tf.ones([16, 8]))
        self.target = tf.Variable(tf.ones([16, 4]))
        self.metric = tf.Variable(tf.ones([16, 2]))

    def compute_loss(self, batch, training=True):
        import tensorflow as tf

        x = batch["x"]
        online = tf.reduce_sum(tf.matmul(x, self.online))
        target = tf.stop_gradient(tf.reduce_sum(tf.matmul(x, self.target)))
        metric = tf.reduce_sum(tf.matmul(x, self.metric))
        return online * target, {"metric": metric}


def test_step_flops_count_the_backward_only_where_the_loss_is_differentiated():
    import tensorflow as tf

    from hac_tf.science.budget import forward_flops, step_flops

    batch = {"x": tf.ones([32, 16])}
    counted = forward_flops(_TwoBranchLoss(), batch)
    matmul = lambda n: 2 * 32 * 16 * n  # noqa: E731  (the profiler counts 2 m k n per matmul)
    # + the reductions and the product the profiler also counts (a few hundred FLOPs)
    assert matmul(8) <= counted.differentiated < matmul(8) + 1000
    assert matmul(4) + matmul(2) <= counted.forward_only < matmul(4) + matmul(2) + 1000
    assert step_flops(_TwoBranchLoss(), batch) == 3 * counted.differentiated + counted.forward_only


def test_a_target_tower_is_counted_forward_only(tmp_path):
    from hac_tf.science.budget import forward_flops
    from hac_tf.training import builders
    from hac_tf.training.trainer import Trainer

    counts = {}
    for method in ("byol", "simsiam"):
        config = load_config(f"banded_{method}_baseline", TINY + ["model.predictor_hidden_dim=16",
                                                                 "model.predictor_out_dim=16"])
        trainer = Trainer(config, str(tmp_path / method))
        views, _ = builders.train_views(config, trainer.policy, 0)
        counts[method] = forward_flops(trainer.model, next(iter(views)))
    byol, simsiam = counts["byol"], counts["simsiam"]
    # BYOL's target tower (backbone + projector) is about as costly as the online backbone +
    # projector (+ a predictor of 16 units here: equal to 1e-4), and needs no backward pass;
    # SimSiam is differentiated through everything but BatchNorm's moving-statistic updates
    assert 0.7 < byol.forward_only / byol.differentiated < 1.01
    assert simsiam.forward_only < 0.01 * simsiam.differentiated
    assert byol.step < 0.75 * 3 * byol.forward  # the old count (3 x the whole forward) was 1.5x too high
