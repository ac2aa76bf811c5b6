"""Training budgets and their conversion to optimizer steps.

A budget is ``kind:amount``:

  steps:600        600 optimizer steps
  images:76800     data-matched: 76800 source images (steps = ceil(images / data.batch_size))
  flops:3e14       compute-matched: floor(3e14 / FLOPs of one training step of this row's model)
  seconds:600      wall-clock: floor(600 / measured seconds of one step), the step timed on this
                   machine before the run (noisy on shared CPUs: prefer flops for comparisons)

FLOPs of a training step are 3 x the conv/matmul FLOPs of one forward pass of the loss, counted
by TF's profiler on the traced graph (forward + backward), as tools/bench_train.py reports them;
a hierarchical step of the paper order costs about 2.7x a one-level step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Mapping, Optional

__all__ = ["BUDGET_KINDS", "Budget", "parse_budget", "step_flops", "measure_step", "steps_for_budget"]

BUDGET_KINDS = ("steps", "images", "flops", "seconds")


@dataclasses.dataclass(frozen=True)
class Budget:
    """``kind`` in `BUDGET_KINDS`, ``amount`` > 0."""

    kind: str
    amount: float

    @property
    def tag(self) -> str:
        """File-name tag, e.g. ``seconds600`` or ``flops3e+14``."""
        return f"{self.kind}{self.amount:g}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.amount:g}"


def parse_budget(text: str) -> Budget:
    """``"kind:amount"`` -> Budget; ValueError naming the allowed kinds."""
    kind, sep, amount = str(text).strip().partition(":")
    if not sep or kind not in BUDGET_KINDS:
        raise ValueError(f"budget {text!r} must be <kind>:<amount> with kind one of {list(BUDGET_KINDS)}, "
                         f"e.g. seconds:600 or flops:3e14")
    try:
        value = float(amount)
    except ValueError:
        raise ValueError(f"budget {text!r}: {amount!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget {text!r}: the amount must be a finite number > 0")
    return Budget(kind, value)


def step_flops(model: Any, batch: Mapping[str, Any]) -> float:
    """FLOPs of one training step: 3 x the forward conv/matmul FLOPs of ``model.compute_loss(batch)``."""
    import tensorflow as tf

    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), batch)
    concrete = tf.function(lambda b: model.compute_loss(b, training=True)[0],
                           autograph=False).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    return 3.0 * float(profile.total_float_ops)


def measure_step(config, model_dir: str, timed_steps: int = 0, warmup_steps: int = 2) -> dict:
    """FLOPs per step of ``config``'s model and, with ``timed_steps`` > 0, its seconds per step.

    Builds a `Trainer` in ``model_dir`` (a scratch directory; nothing is saved there) and times
    ``timed_steps`` steps on the real view pipeline after ``warmup_steps`` (tracing) steps.

    Returns ``{"flops_per_step": float, "seconds_per_step": float or None}``.
    """
    from hac_tf.training import builders
    from hac_tf.training.trainer import Trainer

    trainer = Trainer(config, model_dir)
    views, _ = builders.train_views(config, trainer.policy, 0)
    iterator = iter(views)
    batch = next(iterator)
    flops = step_flops(trainer.model, batch)
    seconds: Optional[float] = None
    if timed_steps > 0:
        step = trainer._make_train_step()
        for _ in range(warmup_steps):
            step(iterator)["loss"].numpy()
        t0 = time.perf_counter()
        for _ in range(timed_steps):
            step(iterator)["loss"].numpy()
        seconds = (time.perf_counter() - t0) / timed_steps
    return {"flops_per_step": flops, "seconds_per_step": seconds}


def steps_for_budget(budget: Budget, batch_size: int, flops_per_step: Optional[float] = None,
                     seconds_per_step: Optional[float] = None) -> int:
    """Optimizer steps a budget buys (at least 1)."""
    if budget.kind == "steps":
        steps = int(round(budget.amount))
    elif budget.kind == "images":
        steps = math.ceil(budget.amount / batch_size)
    elif budget.kind == "flops":
        if not flops_per_step:
            raise ValueError("a flops budget needs the FLOPs of one step (flops_per_step)")
        steps = int(budget.amount // flops_per_step)
    elif budget.kind == "seconds":
        if not seconds_per_step:
            raise ValueError("a seconds budget needs the measured seconds of one step (seconds_per_step)")
        steps = int(budget.amount // seconds_per_step)
    else:  # pragma: no cover - parse_budget rejects it
        raise ValueError(budget.kind)
    return max(steps, 1)
