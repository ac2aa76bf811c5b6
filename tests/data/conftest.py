"""Shared fixtures for the hac_tf.data tests (no network: fixtures or the Debian files only)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from hacdata_helpers import FM_FIXTURE, raw_idx_u8


@pytest.fixture(scope="session")
def fixture_train() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [64, 28, 28], labels uint8 [64]) of the committed fixture."""
    return (raw_idx_u8(os.path.join(FM_FIXTURE, "train-images-idx3-ubyte.gz")),
            raw_idx_u8(os.path.join(FM_FIXTURE, "train-labels-idx1-ubyte.gz")))


@pytest.fixture(scope="session")
def fixture_test() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [32, 28, 28], labels uint8 [32]) of the committed fixture."""
    return (raw_idx_u8(os.path.join(FM_FIXTURE, "t10k-images-idx3-ubyte.gz")),
            raw_idx_u8(os.path.join(FM_FIXTURE, "t10k-labels-idx1-ubyte.gz")))


@pytest.fixture
def absl_records(caplog: pytest.LogCaptureFixture):
    """Returns a function giving the captured absl log records at WARNING or above.

    Bad files are named once per process; the registry is cleared so each test sees its own
    warnings whatever ran before it.
    """
    from hac_tf.data.image_folder import forget_reported_files

    forget_reported_files()
    caplog.set_level(logging.INFO, logger="absl")

    def records(min_level: int = logging.WARNING) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "absl" and r.levelno >= min_level]

    return records
