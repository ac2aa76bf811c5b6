"""hac_tf/benchmarks/process_memory.py: the process's resident set and a resettable peak, read from
/proc for real (an allocation shows up, the reset forgets it)."""

import math
import sys

import numpy as np
import pytest

from hac_tf.benchmarks import process_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")


def test_an_allocation_raises_the_peak_and_the_reset_forgets_it():
    before = process_memory.resident_gb()
    assert before > 0.0 and process_memory.peak_resident_gb() >= before
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    assert process_memory.resident_gb() - before > 0.05
    del block
    assert process_memory.peak_resident_gb() - before > 0.05
    assert process_memory.reset_peak()
    after_reset = process_memory.peak_resident_gb()
    assert after_reset - process_memory.resident_gb() < 0.02  # the peak is back at the resident set
    block = np.ones(32 * 1024 * 1024 // 8)  # a 32 MiB step after the reset
    del block
    assert 0.025 < process_memory.peak_resident_gb() - after_reset < 0.06


def test_without_proc_the_readings_are_nan(monkeypatch):
    monkeypatch.setattr(process_memory, "_STATUS", "/nonexistent/status")
    assert math.isnan(process_memory.resident_gb()) and math.isnan(process_memory.peak_resident_gb())


def test_release_free_heap_returns_freed_small_blocks():
    """Many small blocks freed stay resident in the C heap until they are trimmed (what would hide
    a step's growth); the release gives them back."""
    base = process_memory.resident_gb()
    blocks = [bytearray(4096) for _ in range(40000)]  # ~160 MiB of small heap blocks, touched
    del blocks[:-1]  # the last one keeps the heap's top in use
    held = process_memory.resident_gb() - base
    assert process_memory.release_free_heap()
    assert process_memory.resident_gb() - base < held - 0.05


def test_call_peak_counts_the_call_and_not_what_earlier_work_left_in_the_heap():
    leftovers = [bytearray(4096) for _ in range(40000)]  # ~160 MiB of small heap blocks, then freed
    del leftovers[:-1]  # resident until trimmed: a plain high-water mark would let the call reuse them

    def call():
        block = np.ones(96 * 1024 * 1024 // 8)  # 96 MiB, touched, freed at return
        del block

    assert 0.085 < process_memory.call_peak_gb(call) < 0.12
    assert process_memory.call_peak_gb(lambda: None) < 0.02
