"""Shared helpers of the dense-transfer tests (feature backbone, detection, segmentation):
a tiny exported backbone and garment canvases (imported by the test modules, not collected).

Canvases are 32 px: a width-0.125 backbone trained on >= 45 px images hits a TF 2.20 oneDNN
crash (see hac_tf/downstream/onednn.py), and the test process cannot turn oneDNN off."""

from __future__ import annotations

import os
from typing import Tuple

import keras
import numpy as np
import tensorflow as tf

from hac_tf.downstream import canvas
from hac_tf.export import export_backbone
from hac_tf.models import build_resnet

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
FIXTURE_FMNIST = os.path.join(TESTS, "fixtures", "fashion_mnist")
SIZE = 32
BATCH = 4
SPEC = canvas.CanvasSpec(canvas_size=SIZE, max_objects=2)


def export_tiny_backbone(base: str) -> str:
    """A width-0.125 CIFAR-stem ResNet-18 exported under ``base`` at ``SIZE`` px; its version dir."""
    keras.utils.set_random_seed(7)
    backbone = build_resnet(18, "cifar", width_multiplier=0.125, zero_init_residual=False)
    return export_backbone(backbone, None, base, image_size=SIZE, warmup=False)


def tiny_canvases() -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    """16 train and 8 test canvases of ``SPEC`` from the Fashion-MNIST fixture."""
    train = canvas.canvas_dataset(16, "train", SPEC, seed=1, data_dir=FIXTURE_FMNIST)
    test = canvas.canvas_dataset(8, "test", SPEC, seed=1, data_dir=FIXTURE_FMNIST)
    return train, test


def finite(values) -> bool:
    return all(np.isfinite(v) for v in values)
