"""NT-Xent / Barlow Twins / VICReg under MirroredStrategy (2 logical CPUs) equal the single-device loss.

Logical devices must be configured before TF initialises, so the check runs in a subprocess
(tests/losses/mirrored_check.py) that prints one JSON line.
"""

import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).with_name("mirrored_check.py")


@pytest.fixture(scope="module")
def result(json_script) -> dict:
    return json_script(SCRIPT, timeout=120)


def test_two_replicas(result):
    assert result["num_replicas"] == 2


def test_nt_xent_mirrored_equals_single_device(result):
    r = result["nt_xent"]
    assert abs(r["mirrored"] - r["single"]) < 1e-5
    assert r["per_replica"][0] != r["per_replica"][1]  # each replica owns different rows
    assert r["grad_err"] < 1e-5  # sum of per-replica grads of loss/R == global gradient


def test_nt_xent_without_gather_uses_local_negatives(result):
    r = result["nt_xent_local"]
    assert abs(r["mirrored"] - r["single"]) > 1e-3


def test_barlow_gathered_equals_single_device(result):
    r = result["barlow_gather"]
    assert abs(r["mirrored"] - r["single"]) < 1e-5
    assert r["grad_err"] < 1e-5


def test_vicreg_gathered_equals_single_device(result):
    r = result["vicreg_gather"]
    assert abs(r["mirrored"] - r["single"]) < 1e-4 * abs(r["single"])
    assert r["grad_err"] < 1e-5


def test_vicreg_without_gather_uses_local_statistics(result):
    r = result["vicreg_local"]
    assert abs(r["mirrored"] - r["single"]) > 1e-3
