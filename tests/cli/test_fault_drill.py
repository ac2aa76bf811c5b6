"""hac-fault-drill's plan: kills spread evenly over the phases, preemptions on top, faults placed
by phase (never by the clock) within the run; the drill imports nothing from tests/. (The drill
itself takes minutes: docs/RELIABILITY.md gives its command and result.)"""

import ast
import os
import random

import pytest

from hac_tf.cli import fault_drill
from hac_tf.fault_hooks import parse_fault_specs


@pytest.mark.parametrize("kills, preemptions, expected", [
    (12, 3, {"step": 4, "checkpoint": 4, "export": 4, "preemption": 3}),
    (4, 0, {"step": 2, "checkpoint": 1, "export": 1, "preemption": 0}),
    (3, 1, {"step": 1, "checkpoint": 1, "export": 1, "preemption": 1}),
    (0, 2, {"step": 0, "checkpoint": 0, "export": 0, "preemption": 2}),
])
def test_plan_spreads_kills_evenly(kills, preemptions, expected):
    rounds = fault_drill.plan_rounds(kills, preemptions, random.Random(0))
    assert {p: sum(r.count(p) for r in rounds) for p in fault_drill.PHASES} == expected
    assert len(rounds) == max(expected.values())
    for faults in rounds:
        assert len(faults) == len(set(faults))  # at most one of each kind per round
        assert "export" not in faults[:-1]  # the export comes after training


def test_fault_env_places_each_fault_inside_the_remaining_run():
    rng = random.Random(1)
    for _ in range(200):
        done = rng.randint(0, 30)
        left = rng.randint(1, 3)
        for phase in fault_drill.PHASES:
            (spec,) = parse_fault_specs(fault_drill.fault_env(phase, done, 40, left, rng))
            if phase == "export":
                assert (spec.phase, spec.count) == ("export", 1)
            elif phase == "checkpoint":
                upcoming = [s for s in range(done + 1, 41) if s % fault_drill.CHECKPOINT_EVERY == 0 or s == 40]
                assert spec.phase == "checkpoint" and 1 <= spec.count <= len(upcoming)
            else:
                assert spec.phase == "step" and 1 <= spec.count <= 40 - done
                if phase == "step":  # a kill comes after at least one step of the restarted process
                    assert spec.count >= 2
                assert spec.render().endswith(":TERM") == (phase == "preemption")


def test_drill_imports_nothing_from_tests():
    tree = ast.parse(open(fault_drill.__file__, encoding="utf-8").read())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert all(name.startswith(("hac_tf", "absl", "numpy", "__future__")) or "." not in name for name in imported)
    assert not any("tests" in name.split(".") or name in ("tiny", "conftest") for name in imported)
    assert "sys.path" not in open(fault_drill.__file__, encoding="utf-8").read()
    assert os.path.basename(fault_drill._FIXTURE) == "fashion_mnist"  # data, read by path


def test_the_drill_expects_the_resume_from_a_complete_checkpoint_the_state_file_does_not_name(tmp_path):
    """A kill inside the checkpoint write after its files are complete: the state file still names
    ckpt-20, the trainer resumes from the complete ckpt-22, so the drill must count from 22 (it
    counted from the state file and reported a correct preemption as lost)."""
    import tensorflow as tf

    from hac_tf.cli.fault_drill import _resume_step

    directory = tmp_path / "checkpoints"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(directory), max_to_keep=3)
    manager.save(checkpoint_number=20)
    manager.save(checkpoint_number=22)
    tf.compat.v1.train.update_checkpoint_state(str(directory), str(directory / "ckpt-20"),
                                               all_model_checkpoint_paths=[str(directory / "ckpt-20")])
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-20")
    assert _resume_step(str(tmp_path))[0] == 22
    for data in directory.glob("ckpt-22.data-*"):
        data.write_bytes(data.read_bytes()[:3])  # truncated: not a checkpoint to resume from
    assert _resume_step(str(tmp_path))[0] == 20
    assert _resume_step(str(tmp_path / "nothing")) == (0, None)
