"""Where a training step's time goes: TF profiler op statistics of a benchmark row's train step.

:func:`profile_row` runs the row's compiled train step on one cached batch (no input cost) under
``tf.profiler.experimental`` and returns every profiled op's self time; :func:`scope_of` maps an
op name to the model scope it belongs to (stem, stage1..4, branches, embeddings, projectors,
predictors, optimizer, loss; backward ops carry their forward op's scope).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from typing import List, NamedTuple, Sequence

__all__ = ["SCOPE_NAMES", "OpTime", "op_times", "profile_row", "scope_of"]

#: op-name fragments, in the order they are matched; "SGD" is reported as "optimizer"
_SCOPE_PATTERNS = ("stem", "stage1", "stage2", "stage3", "stage4", "branch", "embedding", "projector",
                   "predictor", "SGD", "loss")
#: every scope :func:`scope_of` returns
SCOPE_NAMES = tuple(sorted({"optimizer" if s == "SGD" else s for s in _SCOPE_PATTERNS} | {"other"}))


class OpTime(NamedTuple):
    """One profiled op: its type (e.g. ``Conv2D``), its name and its total self time in microseconds."""

    op_type: str
    name: str
    self_us: float


def scope_of(op_name: str) -> str:
    """The model scope of an op name (one of :data:`SCOPE_NAMES`; ``"other"`` if none matches)."""
    for scope in _SCOPE_PATTERNS:
        if re.search(rf"(^|/|_){scope}", op_name):
            return "optimizer" if scope == "SGD" else scope
    return "other"


def op_times(logdir: str) -> List[OpTime]:
    """Every profiled op (host, TF ops) of the profile written to ``logdir``, without IDLE time.

    Raises:
      RuntimeError: no profile under ``logdir``, or it could not be converted.
    """
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        raise RuntimeError(f"the profiler wrote no xplane file under {logdir}")
    raw, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError("could not convert the profile")
    tables = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    table = tables[0] if isinstance(tables, list) else tables
    cols = [c["id"] for c in table["cols"]]
    i_type, i_name, i_self = cols.index("type"), cols.index("operation"), cols.index("total_self_time")
    rows = []
    for r in table["rows"]:
        cells = [c["v"] if isinstance(c, dict) else c for c in r["c"]]
        if cells[i_type] in ("IDLE",):
            continue
        rows.append(OpTime(str(cells[i_type]), str(cells[i_name]), float(cells[i_self])))
    return rows


def profile_row(name: str, batch_size: int, precision: str = "float32", steps: int = 3,
                extra_overrides: Sequence[str] = ()) -> List[OpTime]:
    """Profiles ``steps`` train steps (after 2 warm-up steps) of benchmark row ``name``
    (:data:`hac_tf.benchmarks.train_step.ROWS`) at ``batch_size``; the ops' self times are the
    totals over the ``steps`` steps.

    Raises:
      KeyError: unknown row; hac_tf.training.config.ConfigError / ValueError: a bad override.
    """
    import tensorflow as tf

    from hac_tf.benchmarks.train_step import ROWS, row_overrides
    from hac_tf.training import builders
    from hac_tf.training.config import load_config
    from hac_tf.training.threads import configure_cpu_threads_for
    from hac_tf.training.trainer import Trainer

    config = load_config(ROWS[name].config, row_overrides(name, batch_size, precision, extra_overrides))
    configure_cpu_threads_for(config)
    trainer = Trainer(config, tempfile.mkdtemp(prefix="profile_train_"))
    views, _ = builders.train_views(config, trainer.policy, 0)
    batch = next(iter(views))
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    step = trainer._make_train_step()
    for _ in range(2):
        step(it)["loss"].numpy()
    logdir = tempfile.mkdtemp(prefix="profile_logs_")
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(it)["loss"].numpy()
    tf.profiler.experimental.stop()
    return op_times(logdir)
