"""The model under MirroredStrategy (2 logical CPUs, synchronized BatchNorm) matches one device.

Logical devices must be configured before TF initialises, so the checks run in a subprocess
(tests/methods/mirrored_methods_check.py) that prints one JSON line.
"""

import pathlib

import pytest

pytestmark = pytest.mark.long(80)
SCRIPT = pathlib.Path(__file__).with_name("mirrored_methods_check.py")


@pytest.fixture(scope="module")
def result(json_script) -> dict:
    return json_script(SCRIPT, timeout=180)


def test_two_replicas(result):
    assert result["num_replicas"] == 2


def test_simclr_loss_and_gradients_match_single_device(result):
    r = result["simclr"]
    assert abs(r["mirrored"] - r["single"]) < 1e-4
    assert r["per_replica"][0] != r["per_replica"][1]  # each replica owns different rows
    assert r["num_grads"] > 50
    assert r["grad_err"] < 1e-4  # relative; sum of per-replica grads of loss/R == global grad


def test_simclr_with_per_view_statistics_matches_single_device(result):
    """Per-view BatchNorm (the default) over 2 replicas: the same loss as one device. Its float32
    gradients are two roundings of one function and differ by up to 2 % of the largest gradient
    with one TensorFlow thread (2.8e-6 with two; the same layers agree to 1e-15 in float64,
    tests/models/test_models_sync_gradients.py): the small model normalises 8 images per view,
    where a ReLU input within rounding of 0 moves the gradient. A wrong synchronisation (local
    statistics, or view a of one replica normalised with view b of the other) changes the loss."""
    r = result["simclr_per_view"]
    assert abs(r["mirrored"] - r["single"]) < 1e-4
    assert r["per_replica"][0] != r["per_replica"][1]
    assert r["num_grads"] > 50
    assert r["grad_err"] < 5e-2


def test_moco_loss_and_queue_are_synchronised(result):
    r = result["moco"]
    assert abs(r["mirrored"] - r["single"]) < 1e-4
    assert r["queue_replica_diff"] == 0.0  # every replica holds the identical queue
    assert r["queue_err"] < 1e-4  # ... made of the global batch's keys, [k_a; k_b] order
    assert r["single_queue_err"] < 1e-6
    assert r["pointers"] == [[16, 16]]  # 2 x 8 keys enqueued once, same pointer on both replicas
    assert r["fill"] == 0.5


def test_byol_update_targets_inside_strategy_run(result):
    r = result["byol"]
    assert 0.99 < r["m"] < 1.0
    assert r["ema_err"] < 1e-7
    assert r["replica_diff"] == 0.0
