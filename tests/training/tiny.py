"""A tiny but real experiment config shared by the training tests (coloured Fashion-MNIST fixture)."""

import os

FIXTURE_FMNIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "fashion_mnist")

TINY = [
    f"data.data_dir={FIXTURE_FMNIST}",
    "data.batch_size=16",
    "data.shuffle_buffer=64",
    "augment.num_levels=2",
    "model.level_depths=[1,2]",
    "model.width_multiplier=0.125",
    "model.embed_dim=16",
    "model.projector_hidden_dim=32",
    "model.projector_out_dim=16",
    "train.log_every_steps=1",
    "train.checkpoint_every_steps=2",
    "eval.probe_max_train=64",
    "eval.probe_max_test=32",
    "eval.knn_max_train=64",
    "eval.knn_max_test=32",
    "export.enabled=false",
]


def tiny_overrides(*extra: str) -> list:
    return TINY + list(extra)
