"""Shared test setup: quiet TensorFlow, deterministic ops, small thread pools."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
