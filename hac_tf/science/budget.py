"""Training budgets and their conversion to optimizer steps.

A budget is ``kind:amount``:

  steps:600        600 optimizer steps
  images:76800     data-matched: 76800 source images (steps = ceil(images / data.batch_size))
  flops:3e14       compute-matched: floor(3e14 / FLOPs of one training step of this row's model)
  seconds:600      wall-clock: floor(600 / measured seconds of one step), the step timed on this
                   machine before the run (noisy on shared CPUs: prefer flops for comparisons)

FLOPs of a training step (:func:`step_flops`) are counted by TF's profiler on the traced forward
graph of the loss: 3 x the FLOPs of the ops the loss is differentiated through (forward +
backward) plus 1 x those of forward-only ops -- a target tower behind ``stop_gradient`` (BYOL,
MoCo), BatchNorm moving-statistics updates, metrics. A hierarchical step of the paper order costs
about 2.7x a one-level step. (Before 2026-12-06 every op counted 3x, which overcounted BYOL's and
MoCo's steps by about 1.5x; methods without a target tower change by 0.1% or less.)
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Mapping, Optional

__all__ = ["BUDGET_KINDS", "Budget", "ForwardFlops", "forward_flops", "parse_budget", "step_flops", "measure_step",
           "steps_for_budget"]

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


@dataclasses.dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one forward pass of the loss, split by whether the backward pass goes through them."""

    differentiated: float  # ops the loss's gradient flows back through (not behind a stop_gradient)
    forward_only: float    # ops whose outputs reach the loss only through a stop_gradient, or not at all

    @property
    def forward(self) -> float:
        return self.differentiated + self.forward_only

    @property
    def step(self) -> float:
        """A training step: forward + backward (~2x forward) of the differentiated ops, forward of the rest."""
        return 3.0 * self.differentiated + self.forward_only


_NO_GRADIENT_OPS = frozenset({"StopGradient", "PreventGradient"})


def forward_flops(model: Any, batch: Mapping[str, Any]) -> ForwardFlops:
    """FLOPs (TF's profiler, float ops) of ``model.compute_loss(batch, training=True)``'s traced graph.

    An op is *differentiated* when the loss tensor reaches it through its inputs without passing a
    ``StopGradient``; the others (a target tower under ``stop_gradient``, moving-statistics
    updates, metrics) need no backward pass.
    """
    import tensorflow as tf

    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), batch)
    concrete = tf.function(lambda b: model.compute_loss(b, training=True)[0],
                           autograph=False).get_concrete_function(spec)
    graph = concrete.graph
    differentiated, stack = set(), [t.op for t in concrete.outputs]
    while stack:
        op = stack.pop()
        if op.name in differentiated or op.type in _NO_GRADIENT_OPS:
            continue
        differentiated.add(op.name)
        stack.extend(t.op for t in op.inputs)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, cmd="scope", options=options)
    totals = {True: 0.0, False: 0.0}
    stack = [profile]
    while stack:
        node = stack.pop()
        if node.float_ops:
            totals[node.name in differentiated] += float(node.float_ops)
        stack.extend(node.children)
    if totals[True] + totals[False] != float(profile.total_float_ops):
        raise RuntimeError(f"FLOP count: the per-op counts ({totals}) do not add up to the profile's total "
                           f"{profile.total_float_ops}")
    return ForwardFlops(differentiated=totals[True], forward_only=totals[False])


def step_flops(model: Any, batch: Mapping[str, Any]) -> float:
    """FLOPs of one training step of ``model`` on ``batch``: :attr:`ForwardFlops.step`."""
    return forward_flops(model, batch).step


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
