"""Dynamic loss scaling for ``train.mixed_precision=mixed_float16`` in the custom training loop.

float16 has 5 exponent bits: gradients below ~6e-8 flush to zero and activations' gradients above
65504 become inf. Loss scaling multiplies the loss by a scale S before the backward pass (so the
float16 intermediate gradients are S times larger and do not underflow) and divides the float32
gradients by S before the optimizer sees them. The scale is *dynamic*, as in Keras'
``keras.optimizers.LossScaleOptimizer`` and PyTorch's ``GradScaler``:

* a step whose unscaled gradients contain an inf/NaN on ANY replica is skipped (no optimizer
  touches a variable, optimizer ``iterations`` do not advance, exactly as Keras'
  ``LossScaleOptimizer`` defines a skipped step) and S is halved;
* after ``growth_steps`` consecutive finite steps S is doubled (capped at ``MAX_LOSS_SCALE``).

What a skipped step still does (outside the optimizers, as with Keras' and PyTorch's scalers): the
trainer's global step and the input pipeline advance, EMA/momentum targets move toward the
(unchanged) online weights, MoCo's queue takes the batch's keys, BN moving statistics update. The
learning-rate schedule reads the optimizer's ``iterations``, so it lags the global step by the
number of skipped steps (a handful at the start of a run, while the scale comes down from 2**15).

Why not wrap the optimizers in ``keras.optimizers.LossScaleOptimizer``:

1. Under tf.distribute the loop passes *per-replica* gradients to ``apply_gradients`` (the
   optimizer all-reduces them). Keras' wrapper decides "finite?" from the first replica's local
   gradients only, so an overflow on replica 2 alone is summed into the weights. Here the decision
   is all-reduced (``all_finite``) before any optimizer runs, so every replica skips or applies
   together.
2. One backward pass feeds two optimizers (the main one and the SimSiam/BYOL predictor optimizer
   with its own learning rate). Keras would give each wrapper its own scale, but the loss can only
   be multiplied by one number before ``tape.gradient``. So the unit of scaling here is the
   *backward pass*: the main and predictor optimizers share one ``DynamicLossScale`` and are
   applied or skipped together (an overflow anywhere in that pass makes all of its gradients
   suspect: the predictor sits between the loss and the encoder). The Viewmaker adversary has its
   own backward pass on its own loss, so it gets its own ``DynamicLossScale``.

The scale and the finite-step counter are ``tf.Variable``s (float32 / int64, one value mirrored on
every replica), saved in the trainer's checkpoint so a resumed run continues with the same scale.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

#: Keras' and PyTorch's defaults.
DEFAULT_INITIAL_SCALE = 2.0 ** 15
DEFAULT_GROWTH_STEPS = 2000
#: Growth stops here: float16 gradients never need more, and a finite scale can always be halved
#: back (an inf scale would make every later step overflow).
MAX_LOSS_SCALE = 2.0 ** 64
#: Below this scale the gradients overflow even at their natural magnitude (scale 1 = no scaling):
#: that is divergence, not float16 range, and ``reported_grad_norm`` stops hiding it.
MIN_HEALTHY_SCALE = 1.0

GradsAndVars = List[Tuple[tf.Tensor, tf.Variable]]


class DynamicLossScale(tf.Module):
    """One dynamic loss scale for one backward pass, usable inside ``strategy.run``.

    Args:
      initial_scale: the first scale (> 0; a power of two keeps scaling and unscaling exact).
      growth_steps: double the scale after this many consecutive finite steps (>= 1).
      name: the checkpoint key prefix of the two variables.

    Variables (created in the caller's strategy scope, identical on every replica):
      scale: float32 scalar, the current loss scale.
      finite_steps: int64 scalar, finite steps since the scale last changed.

    Use (replica context, every method called the same way on every replica)::

        scaled = loss_scale.scale_loss(loss)             # before tape.gradient
        grads = loss_scale.unscale(tape.gradient(scaled, variables))
        finite = loss_scale.apply_if_finite(grads_and_vars_per_optimizer)
    """

    def __init__(self, initial_scale: float = DEFAULT_INITIAL_SCALE, growth_steps: int = DEFAULT_GROWTH_STEPS,
                 name: str = "loss_scale"):
        super().__init__(name=name)
        if not 0.0 < float(initial_scale) <= MAX_LOSS_SCALE:
            raise ValueError(f"loss scale initial_scale={initial_scale} must be in (0, {MAX_LOSS_SCALE:g}]")
        if int(growth_steps) < 1 or int(growth_steps) != growth_steps:
            raise ValueError(f"loss scale growth_steps={growth_steps} must be an integer >= 1")
        self.initial_scale = float(initial_scale)
        self.growth_steps = int(growth_steps)
        kwargs = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.scale = tf.Variable(self.initial_scale, dtype=tf.float32, name="scale", **kwargs)
        self.finite_steps = tf.Variable(0, dtype=tf.int64, name="finite_steps", **kwargs)

    def describe(self) -> str:
        """One line for the run's log, e.g. ``dynamic loss scaling on (initial scale 32768, doubled
        after 2000 finite steps, halved with the step skipped on inf/NaN gradients)``."""
        return (f"dynamic loss scaling on (initial scale {self.initial_scale:g}, doubled after "
                f"{self.growth_steps} finite steps, halved with the step skipped on inf/NaN gradients)")

    # ------------------------------------------------------------------ scaling
    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        """loss * scale, as float32 (the loss is cast first; the scaled loss may be large)."""
        return tf.cast(loss, tf.float32) * self.scale

    def unscale(self, grads: Sequence[Optional[tf.Tensor]]) -> List[Optional[tf.Tensor]]:
        """grads / scale, each in its own dtype (None stays None); an inf/NaN stays non-finite."""
        scale = tf.convert_to_tensor(self.scale)
        return [None if g is None else g / tf.cast(scale, g.dtype) for g in grads]

    # ------------------------------------------------------------------ the skip decision
    @staticmethod
    def all_finite(grads: Sequence[Optional[tf.Tensor]]) -> tf.Tensor:
        """bool scalar: no inf/NaN in ``grads`` on any replica (all-reduced, so every replica
        gets the same answer; one scalar all-reduce per step)."""
        present = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]
        if not present:
            return tf.constant(True)
        local_ok = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in present]))
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return local_ok
        bad_replicas = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(local_ok, tf.float32))
        return tf.equal(bad_replicas, 0.0)

    def apply_if_finite(self, updates: Sequence[Tuple[object, GradsAndVars]]) -> tf.Tensor:
        """Applies every ``(optimizer, [(unscaled grad, var), ...])`` if all their gradients are
        finite on every replica, else none of them; then updates the scale. Returns that bool.

        Called in replica context. Optimizers whose list is empty are left alone (as the loop's
        ``if g is not None`` filtering already does).
        """
        updates = [(opt, list(pairs)) for opt, pairs in updates if pairs]
        finite = self.all_finite([g for _, pairs in updates for g, _ in pairs])
        self._apply_where(finite, updates)
        self._update_scale(finite)
        return finite

    def reported_grad_norm(self, grad_norm: tf.Tensor, finite: tf.Tensor) -> tf.Tensor:
        """The gradient norm to log: ``grad_norm`` (of the unscaled gradient) on an applied step,
        0.0 on a skipped one (nothing was applied) -- so the loop's non-finite check does not stop
        a run for an overflow the scale already handled. Once the scale has fallen below
        ``MIN_HEALTHY_SCALE`` the non-finite norm is passed through, and the check fires."""
        grad_norm = tf.cast(grad_norm, tf.float32)
        healthy = self.scale >= MIN_HEALTHY_SCALE
        return tf.where(finite, grad_norm, tf.where(healthy, tf.zeros_like(grad_norm), grad_norm))

    # ------------------------------------------------------------------ internals
    def _apply_where(self, finite: tf.Tensor, updates: Sequence[Tuple[object, GradsAndVars]]) -> None:
        """tf.cond(finite, apply all, nothing), in a form every tf.distribute strategy accepts.

        An optimizer's apply_gradients synchronizes the replicas (merge_call) when the strategy
        uses merge calls (all of them except XLA-compiled all-GPU steps), and a merge_call may not
        sit inside a replica-context cond. Then the cond is built in cross-replica context and each
        replica's apply runs inside its branch (the pattern of Keras' LossScaleOptimizer); the
        decision is the all-reduced one, so replica 0's copy speaks for all.
        """
        optimizers = [opt for opt, _ in updates]
        variables = [[v for _, v in pairs] for _, pairs in updates]
        grads = [[g for g, _ in pairs] for _, pairs in updates]

        def apply_all(grad_lists):
            for opt, gs, vs in zip(optimizers, grad_lists, variables):
                opt.apply_gradients(list(zip(gs, vs)))

        if not updates:
            return
        ctx = tf.distribute.get_replica_context()
        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: apply_all(grads) or tf.no_op(), tf.no_op)
            return

        def cross_replica(strategy, finite_per_replica, grads_per_replica):
            first = strategy.experimental_local_results(finite_per_replica)[0]

            def apply_on_every_replica():
                strategy.extended.call_for_each_replica(apply_all, args=(grads_per_replica,))
                return tf.no_op()

            tf.cond(first, apply_on_every_replica, tf.no_op)

        ctx.merge_call(cross_replica, args=(finite, grads))

    def _update_scale(self, finite: tf.Tensor) -> None:
        """Halve on overflow (counter reset); double after ``growth_steps`` finite steps (counter
        reset); else count the finite step. Plain assigns (no cond): legal in replica context."""
        count = self.finite_steps + 1
        grow = tf.logical_and(finite, count >= self.growth_steps)
        scale = tf.convert_to_tensor(self.scale)
        grown = tf.minimum(scale * 2.0, MAX_LOSS_SCALE)
        new_scale = tf.where(finite, tf.where(grow, grown, scale), scale * 0.5)
        new_count = tf.where(tf.logical_and(finite, tf.logical_not(grow)), count, tf.zeros_like(count))
        self.scale.assign(new_scale)
        self.finite_steps.assign(new_count)
