"""One benchmark cell: train a row at a budget with a seed, measure it, write one JSON.

Result files are ``<out_dir>/<row>__<budget tag>__seed<k>.json`` (random init: budget tag
``init``). A cell whose JSON exists is skipped, so a benchmark spread over several sessions adds
up; an interrupted cell resumes its training from the checkpoints in
``<work_dir>/<cell>/train`` (hac_tf/training/trainer.py) when run again with the same
arguments. The JSONs are small (commit them, e.g. under docs/results/); the training runs are
not (keep ``work_dir`` out of the repository). Seeds are paired across rows: ``train.seed`` = the seed gives every row the same
initial backbone, the same source-image order and the same view random stream.

Evaluation (hac_tf/evaluation/colour_measures.py) uses clean images: the first
``eval_train`` images of the training split fit the probes, the first ``eval_test`` of the test
split score them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from hac_tf.evaluation.colour_measures import EvalSet, colour_report
from hac_tf.science.budget import Budget, measure_step, step_flops, steps_for_budget
from hac_tf.science.encoders import FEATURE_NAMES, benchmark_encoder
from hac_tf.science.rows import Row

__all__ = ["CALIBRATION_STEPS", "cell_name", "eval_sets", "result_path", "run_cell"]

#: steps timed (after 2 tracing steps) to turn a seconds budget into steps
CALIBRATION_STEPS = 5


def cell_name(row: str, budget: Optional[Budget], seed: int) -> str:
    return f"{row}__{budget.tag if budget else 'init'}__seed{seed}"


def result_path(out_dir: str, row: str, budget: Optional[Budget], seed: int) -> str:
    return os.path.join(out_dir, cell_name(row, budget, seed) + ".json")


def eval_sets(config, max_train: int, max_test: int) -> Tuple[EvalSet, EvalSet]:
    """Clean evaluation images with int labels and continuous hues (degrees) of the config's source.

    banded_hue_fashion_mnist: hues ``body_hue``, ``band_hue``, ``hue_difference`` (from
    hac_tf/data/banded_hue.py); coloured_fashion_mnist: hue ``colour`` = class k's hue
    ``k * 360 / N``. Other sources have no hue ground truth: ValueError naming data.source.
    """
    from hac_tf.data.fashion_mnist import DEFAULT_DATA_DIR

    d = config.data
    data_dir = d.data_dir or DEFAULT_DATA_DIR
    out = []
    for split, limit in ((d.train_split, max_train), (d.test_split, max_test)):
        if d.source == "banded_hue_fashion_mnist":
            from hac_tf.data.banded_hue import banded_hue_fashion_mnist_arrays

            a = banded_hue_fashion_mnist_arrays(split, d.num_colours, d.image_size, data_dir=data_dir)
            labels = dict(a.labels)
            hues = {"body_hue": a.body_hue, "band_hue": a.band_hue, "hue_difference": a.hue_difference}
        elif d.source in ("coloured_fashion_mnist", "colored_fashion_mnist"):
            from hac_tf.data.coloured import coloured_fashion_mnist_arrays

            a = coloured_fashion_mnist_arrays(split, d.num_colours, d.image_size, data_dir=data_dir)
            labels = {"garment": a.garment, "colour": a.colour}
            hues = {"colour": a.colour.astype(np.float64) * 360.0 / d.num_colours}
        else:
            raise ValueError(f"the colour benchmark needs hue ground truth: data.source must be "
                             f"banded_hue_fashion_mnist or coloured_fashion_mnist, not {d.source!r}")
        out.append(EvalSet(np.asarray(a.images), labels, hues).take(int(limit)))
    return out[0], out[1]


def _write_json(path: str, record: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def run_cell(row: Row, seed: int, budget: Optional[Budget], out_dir: str, base_config: str,
             overrides: Sequence[str] = (), eval_train: int = 5000, eval_test: int = 2000,
             log: Callable[[str], None] = print, work_dir: Optional[str] = None,
             report_kwargs: Optional[dict] = None, export_path: Optional[str] = None) -> Tuple[str, dict, bool]:
    """Trains (unless ``row.train`` is False), measures and writes the cell's JSON.

    Args:
      row: the row; seed: ``train.seed``; budget: the training budget (ignored, may be None,
        for a row that does not train).
      out_dir: where the JSON goes.
      work_dir: where the training run goes (``<work_dir>/<cell>``; None: ``<out_dir>/runs``).
      base_config: a config file or shipped config name; ``overrides`` come after the row's.
      eval_train, eval_test: images fitting / scoring the probes.
      report_kwargs: keyword arguments of `colour_report` (k, shots, draws, ...; recorded).
      export_path: a training row's backbone is exported there (TF Serving layout,
        ``<export_path>/<version>``, hac_tf/export/savedmodel.py) with its measures in the
        metadata; None (default): no export.

    Returns:
      ``(json path, record, ran)``: ``ran`` is False when the JSON existed (the cell skipped).
    """
    import keras

    from hac_tf.training import builders
    from hac_tf.training.config import load_config
    from hac_tf.training.trainer import Trainer, build_model

    budget = budget if row.train else None
    if row.train and budget is None:
        raise ValueError(f"row {row.name!r} trains: it needs a budget")
    path = result_path(out_dir, row.name, budget, seed)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return path, json.load(f), False
    os.makedirs(out_dir, exist_ok=True)
    name = cell_name(row.name, budget, seed)
    base_overrides = list(row.overrides) + list(overrides) + [f"train.seed={seed}", "export.enabled=false"]
    config = load_config(base_config, base_overrides)
    record = {"row": row.name, "what": row.what, "seed": seed, "budget": str(budget) if budget else None,
              "base_config": base_config, "overrides": base_overrides, "steps": 0,
              "batch_size": config.data.batch_size, "data_source": config.data.source}
    t0 = time.perf_counter()
    if row.train:
        scratch = os.path.join(work_dir or os.path.join(out_dir, "runs"), name)
        if budget.kind in ("flops", "seconds"):  # the step must be measured before the run is built
            timed = CALIBRATION_STEPS if budget.kind == "seconds" else 0
            log(f"[{name}] measuring the step (FLOPs{', time' if timed else ''})")
            measured = measure_step(config, os.path.join(scratch, "calibration"), timed_steps=timed)
            shutil.rmtree(os.path.join(scratch, "calibration"), ignore_errors=True)
        else:
            measured = {"flops_per_step": None, "seconds_per_step": None}
        steps = steps_for_budget(budget, config.data.batch_size, measured["flops_per_step"],
                                 measured["seconds_per_step"])
        config = load_config(base_config, base_overrides + [f"train.max_steps={steps}"])
        trainer = Trainer(config, os.path.join(scratch, "train"))
        if measured["flops_per_step"] is None:  # steps / images budgets: the FLOPs of this run's model
            views, _ = builders.train_views(config, trainer.policy, 0)
            measured["flops_per_step"] = step_flops(trainer.model, next(iter(views)))
        log(f"[{name}] training {steps} steps ({measured['flops_per_step'] / 1e9:.1f} GFLOP/step)")
        summary = trainer.train()
        model = trainer.model
        record.update(steps=steps, flops_per_step=measured["flops_per_step"],
                      calibrated_seconds_per_step=measured["seconds_per_step"],
                      train_flops=steps * measured["flops_per_step"], source_images=steps * config.data.batch_size,
                      train_seconds=summary.get("train_seconds"), final_loss=summary.get("loss"))
    else:
        keras.utils.set_random_seed(seed)
        keras.mixed_precision.set_global_policy(config.train.mixed_precision)
        model = build_model(config)
    record["setup_and_train_seconds"] = time.perf_counter() - t0
    log(f"[{name}] measuring ({eval_train} train / {eval_test} test images)")
    t1 = time.perf_counter()
    train_set, test_set = eval_sets(config, eval_train, eval_test)
    kwargs = dict(report_kwargs or {})
    record["results"] = colour_report(benchmark_encoder(model), train_set, test_set, feature_names=FEATURE_NAMES,
                                      seed=seed, **kwargs)
    record["report_kwargs"] = kwargs
    record.update(eval_seconds=time.perf_counter() - t1, eval_train=len(train_set.images),
                  eval_test=len(test_set.images), host={"cpus": os.cpu_count(), "machine": platform.machine()})
    if export_path and row.train:
        from hac_tf.export import export_backbone

        record["export"] = export_backbone(model, config, export_path, step=record["steps"],
                                           metrics=record["results"])
        log(f"[{name}] exported the backbone to {record['export']}")
    _write_json(path, record)
    return path, record, True
