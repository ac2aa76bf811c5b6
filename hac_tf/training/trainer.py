"""The training loop: one custom loop (``strategy.run``) for every tf.distribute strategy.

Keras 3 ``model.fit`` fails under MultiWorkerMirroredStrategy, so this loop is used
everywhere. One step:

    per replica: loss, metrics = model.compute_loss(batch)   (loss = mean over its rows)
                 grads = d(loss / num_replicas)/dw (+ coupled L2 for SGD), summed across replicas
                 optimizer(s).apply; model.update_targets(step)  (EMA / momentum encoders)
                 then, for each plug-in with an objective of its own (own_objective, e.g. the
                 Viewmaker's generator): its objective on the same batch, its own optimizer

Resumption: the checkpoint holds the model (incl. EMA targets and MoCo queues), the optimizers and
the step. The input pipeline is a pure function of (seed, step) (see builders.train_views), so
restarting the same command continues with exactly the batches an uninterrupted run would see.
Checkpoints are written by tf.train.CheckpointManager (data files first, then the index and the
'checkpoint' state file, each renamed into place) and pruned to the last N.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from hac_tf.fault_hooks import fault_point
from hac_tf.io_errors import describe
from hac_tf.training import builders, checkpoint_integrity
from hac_tf.training.builders import build_model
from hac_tf.training.config import ExperimentConfig, to_yaml
from hac_tf.training.loss_scaling import DynamicLossScale
from hac_tf.training.optim import (WarmupCosine, build_optimizer, excluded_from_decay,
                                   peak_learning_rate)
from hac_tf.training.preemption import PreemptionWatcher, TrainingPreempted
from hac_tf.training.progress import MetricsLog, ProgressBar, Summaries
from hac_tf.training.strategy import is_chief


# Kills at step boundaries, inside checkpoint writes and exports: HAC_FAULT_AT (hac_tf/fault_hooks.py).
# Fault-drill hook: make the loss of this step NaN (tests of the non-finite handling).
_NAN_AT_STEP = int(os.environ.get("HAC_TF_NAN_AT_STEP", "0") or 0)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss; the last good checkpoint was left untouched."""


class LostWorkerError(RuntimeError):
    """A worker of a multi-worker job stopped (its collectives failed or timed out); restart all
    workers with the same command to resume from the chief's latest checkpoint."""


# What collectives raise when a peer worker died (refused connection), went silent (coordination
# service heartbeat timeout) or aborted them.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                  tf.errors.CancelledError)


def _peer_failure_summary(error: Exception) -> str:
    """The line of a collective's error that says what happened to the peer (one line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for key in ("unhealthy", "aborted by", "Connection refused", "Failed to connect", "timed out", "Deadline"):
        hit = next((line for line in lines if key in line), None)
        if hit:
            return hit[:300]
    return (lines[0] if lines else type(error).__name__)[:300]


class OwnObjective(NamedTuple):
    """A plug-in whose variables have an objective of their own (``PluginLayer.own_objective``,
    hac_tf/plugins/base.py): its layer, its trainable variables, its optimizer and, with
    mixed_float16, its own loss scale (one per backward pass)."""

    plugin: Any
    variables: List[tf.Variable]
    optimizer: keras.optimizers.Optimizer
    loss_scale: Optional[DynamicLossScale]

    @property
    def name(self) -> str:
        """Its ``objective_name``: the checkpoint keys ``<name>_optimizer``, ``<name>_loss_scale``."""
        return self.plugin.objective_name


def _own_objectives(model, loss_scale_args: Optional[tuple]) -> List[OwnObjective]:
    """The model's own-objective plug-ins, their optimizers built (call inside the strategy scope)."""
    out = []
    for plugin in model.plugin_layers:
        if not plugin.own_objective:
            continue
        variables = list(plugin.trainable_weights)
        optimizer = plugin.build_optimizer()
        optimizer.build(variables)
        scale = None if loss_scale_args is None else DynamicLossScale(
            *loss_scale_args, name=f"{plugin.objective_name}_loss_scale")
        out.append(OwnObjective(plugin, variables, optimizer, scale))
    names = [o.name for o in out]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"plug-ins with an objective of their own need distinct objective_name values, got {names}")
    return out


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, I/O error); the previous one is intact.

    The partial files of the failed checkpoint are removed; re-running the same command after
    freeing space resumes from the previous checkpoint.
    """


class Trainer:
    """Owns the strategy, model, optimizers, checkpoints and logs of one run.

    Args:
      config: a validated ExperimentConfig.
      model_dir: where checkpoints, metrics.jsonl, TensorBoard logs and config.yaml go.
      strategy: a tf.distribute strategy (default: the default one-device strategy).
    """

    def __init__(self, config: ExperimentConfig, model_dir: str,
                 strategy: Optional[tf.distribute.Strategy] = None, progress_stream=None):
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.progress_stream = progress_stream
        os.makedirs(model_dir, exist_ok=True)
        keras.utils.set_random_seed(config.train.seed)
        if config.train.deterministic_ops:
            tf.config.experimental.enable_op_determinism()
        # A float32 config also resets a mixed policy left by an earlier run in this process (a
        # notebook, the config sweep test), but keeps a full-precision policy the caller chose
        # (e.g. float64 in the distributed-equivalence tests).
        if config.train.mixed_precision != "float32" or keras.mixed_precision.global_policy().name.startswith("mixed"):
            keras.mixed_precision.set_global_policy(config.train.mixed_precision)
        self.policy = builders.view_policy(config)
        self.num_train_examples = builders.num_train_examples(config)
        c = config
        self.steps_per_epoch = c.train.steps_per_epoch or max(self.num_train_examples // c.data.batch_size, 1)
        self.total_steps = c.train.max_steps or max(int(round(c.train.epochs * self.steps_per_epoch)), 1)
        peak = peak_learning_rate(c.optimizer.base_lr, c.data.batch_size, c.optimizer.lr_scaling)
        warmup = int(round(c.optimizer.warmup_epochs * self.steps_per_epoch))
        self.schedule = WarmupCosine(peak, self.total_steps, warmup, cosine=c.optimizer.schedule == "cosine")
        self.peak_lr = peak
        with self.strategy.scope():
            self.model = builders.run_model(c, model_dir, self.steps_per_epoch, write=self.chief)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer = build_optimizer(c.optimizer.name, self.schedule, c.optimizer.momentum,
                                             c.optimizer.weight_decay, c.optimizer.lars_eta, c.optimizer.clipnorm)
            pred_vars = list(getattr(self.model, "predictor_variables", []) or [])
            pred_ids = {id(v) for v in pred_vars}
            self.fixed_pred = bool(c.optimizer.fix_predictor_lr and pred_vars)
            online = list(getattr(self.model, "online_variables", None) or self.model.trainable_variables)
            self.main_vars = [v for v in online if not (self.fixed_pred and id(v) in pred_ids)]
            self.pred_vars = pred_vars if self.fixed_pred else []
            self.optimizer.build(self.main_vars)
            if c.optimizer.name == "adamw":
                self.optimizer.exclude_from_weight_decay(var_list=[v for v in self.main_vars if excluded_from_decay(v)])
            self.pred_optimizer = None
            if self.fixed_pred:
                self.pred_optimizer = build_optimizer(c.optimizer.name, peak, c.optimizer.momentum,
                                                      c.optimizer.weight_decay, c.optimizer.lars_eta,
                                                      c.optimizer.clipnorm)
                self.pred_optimizer.build(self.pred_vars)
            # float16 only: dynamic loss scaling, one scale per backward pass (loss_scaling.py):
            # main + predictor optimizers share one, each own-objective plug-in has its own.
            self.loss_scale: Optional[DynamicLossScale] = None
            scale_args = None
            if c.train.mixed_precision == "mixed_float16":
                scale_args = (c.train.loss_scale_initial, c.train.loss_scale_growth_steps)
                self.loss_scale = DynamicLossScale(*scale_args, name="loss_scale")
            # plug-ins whose variables have an objective of their own (the Viewmaker's generator):
            # each its own optimizer and step, through the plug-in interface's hooks
            self.own_objectives = _own_objectives(self.model, scale_args)
            if self.loss_scale is not None:
                note = f"mixed_float16: {self.loss_scale.describe()}"
                logging.info("%s", note)
                if self.chief:  # the run's log (stderr, where the progress bar goes): one line at start
                    stream = progress_stream or sys.stderr
                    stream.write(note + "\n")
                    stream.flush()
        trackables: Dict[str, Any] = dict(model=self.model, optimizer=self.optimizer, step=self.global_step)
        if self.pred_optimizer is not None:
            trackables["predictor_optimizer"] = self.pred_optimizer
        for own in self.own_objectives:
            trackables[f"{own.name}_optimizer"] = own.optimizer
        if self.loss_scale is not None:  # so a resumed float16 run continues with the same scale
            trackables["loss_scale"] = self.loss_scale
        for own in self.own_objectives:
            if own.loss_scale is not None:
                trackables[f"{own.name}_loss_scale"] = own.loss_scale
        self.checkpoint = tf.train.Checkpoint(**trackables)
        ckpt_dir = os.path.join(model_dir, "checkpoints")
        if not self.chief:  # other workers write to a scratch dir (collective save), removed later
            ckpt_dir = os.path.join(model_dir, f"tmp_worker_{self.strategy.cluster_resolver.task_id}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=c.train.keep_checkpoints,
                                                  step_counter=self.global_step)
        self.metrics_log = MetricsLog(os.path.join(model_dir, "metrics.jsonl")) if self.chief else None
        self.summaries = Summaries(os.path.join(model_dir, "train") if self.chief else None)
        self._train_step = None

    # ------------------------------------------------------------------ checkpoints
    def restore(self) -> int:
        """Restores the newest intact checkpoint if any; returns the step to continue from.

        Every worker reads the chief's ``<model_dir>/checkpoints`` (multi-worker: model_dir on a
        shared file system). Damaged checkpoints are named, skipped and (chief) moved to
        ``checkpoints/damaged/`` (checkpoint_integrity.py); DamagedCheckpointError if checkpoints
        exist but none is intact.
        """
        directory = os.path.join(self.model_dir, "checkpoints")
        latest, damaged = checkpoint_integrity.restore_newest_intact(self.checkpoint, directory, repair=self.chief)
        if self.chief and (damaged or latest != self.manager.latest_checkpoint):  # state file rewritten
            self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                                      max_to_keep=self.config.train.keep_checkpoints,
                                                      step_counter=self.global_step)
        if latest:
            logging.info("restored %s (step %d)", latest, int(self.global_step.numpy()))
            if self.loss_scale is not None:
                logging.info("restored loss scale %g", float(self.loss_scale.scale.numpy()))
        return int(self.global_step.numpy())

    def save(self) -> Optional[str]:
        """Writes checkpoint ``ckpt-<step>``; raises CheckpointWriteError if it cannot be written.

        tf.train.CheckpointManager writes the data and index files first and only then replaces
        the ``checkpoint`` state file, so a failed write never becomes the latest checkpoint.
        """
        step = int(self.global_step.numpy())
        previous = self.manager.latest_checkpoint
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[self._after_write])
        try:
            path = self.manager.save(checkpoint_number=self.global_step, options=options)
            if self.chief:
                checkpoint_integrity.remove_orphan_sidecars(self.manager.directory, self.manager.checkpoints)
        except (OSError, tf.errors.OpError) as e:
            removed = self._remove_partial_checkpoint(step, previous)
            code, reason = describe(e)
            raise CheckpointWriteError(
                code,
                f"checkpoint at step {step} could not be written to {self.manager.directory} ({reason}); "
                f"{len(removed)} partial file(s) removed. The previous checkpoint "
                f"{previous or '(none yet)'} is intact: free space and re-run the same command to "
                f"resume from it.") from e
        return path if self.chief else None

    def _check_workers_restored_the_same_step(self, step: int) -> None:
        """Multi-worker: every worker must have restored the same checkpoint (all read the chief's
        ``<model_dir>/checkpoints``); a worker that cannot see it would train from another state."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return
        per_replica = self.strategy.run(lambda: tf.constant([step], tf.int64))
        steps = sorted({int(s) for s in self.strategy.gather(per_replica, axis=0).numpy()})
        if len(steps) > 1:  # (ValueError: hac-train prints one line, exit 1)
            raise ValueError(
                f"the workers restored different checkpoints (steps {steps}): every worker reads the chief's "
                f"{os.path.join(self.model_dir, 'checkpoints')}, so --model_dir must be on a file system all "
                f"workers share")

    @staticmethod
    def _after_write(prefix: str) -> None:
        """Runs when a checkpoint's data and index are written, before the state file names it:
        records their sha256 (checkpoint_integrity.py); the drills' ``checkpoint`` fault point."""
        checkpoint_integrity.write_checksums(prefix)
        fault_point("checkpoint")

    def _remove_partial_checkpoint(self, step: int, keep: Optional[str]) -> List[str]:
        """Deletes files of a failed ``ckpt-<step>`` write (never those of ``keep``)."""
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        removed = []
        for path in tf.io.gfile.glob(prefix + ".*") + tf.io.gfile.glob(prefix + "_temp*"):
            if keep and (path == keep or path.startswith(keep + ".")):
                continue
            try:
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
                removed.append(path)
            except (OSError, tf.errors.OpError):
                logging.warning("could not remove partial checkpoint file %s", path)
        return removed

    def _distribute(self, views: tf.data.Dataset):
        """Splits every global batch over the replicas in order, on every strategy.

        Each input pipeline (one per worker) builds the same global batches (same seed) and keeps
        its contiguous slice, which is then cut into per-replica batches. So replica r of any
        strategy sees rows [r*b, (r+1)*b) of the batch a single device would see: losses with
        synchronized BN and cross-replica negatives equal the single-device ones.
        """
        global_batch = self.config.data.batch_size
        replicas = self.strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise ValueError(f"data.batch_size={global_batch} must be divisible by the {replicas} replicas")

        def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            pipelines, index = ctx.num_input_pipelines, ctx.input_pipeline_id
            per_pipeline = global_batch // pipelines
            ds = views
            if pipelines > 1:
                lo, hi = index * per_pipeline, (index + 1) * per_pipeline
                ds = ds.map(lambda b: tf.nest.map_structure(lambda t: t[lo:hi], b))
            per_replica = ctx.get_per_replica_batch_size(global_batch)
            if per_replica != per_pipeline:
                ds = ds.rebatch(per_replica)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            return ds.with_options(options)

        if replicas == 1 and isinstance(self.strategy, type(tf.distribute.get_strategy())):
            return views
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    # ------------------------------------------------------------------ step
    def _make_train_step(self):
        strategy = self.strategy
        model = self.model
        total_steps = self.total_steps
        main_vars, pred_vars = self.main_vars, self.pred_vars
        own_objectives = self.own_objectives
        # mixed_float16 only (None otherwise, and the step below is the unscaled one, op for op)
        loss_scale = self.loss_scale

        def step_fn(batch):
            replicas = tf.distribute.get_replica_context().num_replicas_in_sync
            step = self.global_step
            with tf.GradientTape() as tape:
                loss, metrics = model.compute_loss(batch, training=True, step=step)
                if _NAN_AT_STEP:
                    loss = tf.where(step + 1 == _NAN_AT_STEP, tf.constant(float("nan")), loss)
                scaled = tf.cast(loss, tf.float32) / tf.cast(replicas, tf.float32)
                if loss_scale is not None:
                    scaled = loss_scale.scale_loss(scaled)
            grads = tape.gradient(scaled, main_vars + pred_vars)
            if loss_scale is not None:
                grads = loss_scale.unscale(grads)
            present = [g for g in grads if g is not None]
            grad_norm = tf.linalg.global_norm(present) if present else tf.constant(0.0)
            g_main, g_pred = grads[: len(main_vars)], grads[len(main_vars):]
            main_pairs = [(g, v) for g, v in zip(g_main, main_vars) if g is not None]
            pred_pairs = [(g, v) for g, v in zip(g_pred, pred_vars) if g is not None]
            if loss_scale is None:
                self.optimizer.apply_gradients(main_pairs)
                if pred_vars:
                    self.pred_optimizer.apply_gradients(pred_pairs)
            else:  # both optimizers applied, or (an inf/NaN on any replica) both skipped
                finite = loss_scale.apply_if_finite([(self.optimizer, main_pairs), (self.pred_optimizer, pred_pairs)])
                grad_norm = loss_scale.reported_grad_norm(grad_norm, finite)
            if hasattr(model, "update_targets"):
                model.update_targets(step, total_steps)
            metrics = dict(metrics)
            for own in own_objectives:  # e.g. the Viewmaker's adversary: a fresh forward on the same batch
                with tf.GradientTape() as own_tape:
                    own_loss, own_metrics = own.plugin.objective(model, batch, training=True, step=step)
                    own_scaled = tf.cast(own_loss, tf.float32) / tf.cast(replicas, tf.float32)
                    if own.loss_scale is not None:
                        own_scaled = own.loss_scale.scale_loss(own_scaled)
                own_grads = own_tape.gradient(own_scaled, own.variables)
                if own.loss_scale is not None:
                    own_grads = own.loss_scale.unscale(own_grads)
                own_pairs = [(g, v) for g, v in zip(own_grads, own.variables) if g is not None]
                if own.loss_scale is None:
                    own.optimizer.apply_gradients(own_pairs)
                else:  # its own scale: its own backward pass (a skip here leaves the main step alone)
                    own.loss_scale.apply_if_finite([(own.optimizer, own_pairs)])
                    metrics[f"{own.name}_loss_scale"] = tf.identity(own.loss_scale.scale)
                metrics.update(own_metrics)
            self.global_step.assign_add(1)
            metrics["loss"] = loss
            # per-replica norm of the (scaled) local gradient: a NaN/Inf anywhere shows up here
            # (float16: of the unscaled gradient, 0 on a step skipped for overflow; see loss_scaling.py)
            metrics["grad_norm"] = grad_norm
            if loss_scale is not None:  # after this step's update: the scale the next step uses
                metrics["loss_scale"] = tf.identity(loss_scale.scale)
            return metrics

        # autograph=False: the step has no data-dependent Python control flow, and autograph
        # re-reads source files at trace time (editing a file under a running job breaks it).
        @tf.function(autograph=False)
        def train_step(iterator):
            per_replica = strategy.run(step_fn, args=(next(iterator),))
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        return train_step

    # ------------------------------------------------------------------ encoder for evaluation
    def encoder_fn(self):
        model = self.model

        @tf.function(reduce_retracing=True, autograph=False)
        def encode(images):
            return model.encode(images, training=False)

        return encode

    # ------------------------------------------------------------------ main loop
    def train(self, knn_monitor=None) -> Dict[str, float]:
        c = self.config
        start = self.restore()
        self._check_workers_restored_the_same_step(start)
        if start >= self.total_steps:
            logging.info("already trained to step %d of %d", start, self.total_steps)
            return {"step": start}
        if self.chief and start == 0:
            with open(os.path.join(self.model_dir, "config.yaml"), "w", encoding="utf-8") as f:
                f.write(to_yaml(c))
        if self.chief and (start == 0 or c.train.image_summary_every_steps):
            preview, _ = builders.train_views(c, self.policy, start_step=start)  # its own dataset object
            first = next(iter(preview))
            self.summaries.view_grid(start, tf.nest.map_structure(lambda t: t.numpy(), first))
        views, _ = builders.train_views(c, self.policy, start_step=start)
        iterator = iter(self._distribute(views))
        if self._train_step is None:
            self._train_step = self._make_train_step()
        bar = ProgressBar(self.total_steps, start, c.data.batch_size, stream=self.progress_stream)
        step = start
        last: Dict[str, float] = {}
        t_start = time.perf_counter()
        last_saved = start
        # SIGTERM (preemption): finish this step, checkpoint, raise TrainingPreempted (preemption.py)
        preemption = PreemptionWatcher(c.train.preemption_grace_seconds, lambda: self.manager.latest_checkpoint)
        preemption.start()
        try:
            while step < self.total_steps:
                fault_point("step")
                metrics = self._train_step(iterator)
                step += 1
                log_now = step % c.train.log_every_steps == 0 or step == self.total_steps
                ckpt_now = (step % c.train.checkpoint_every_steps == 0 or step == self.total_steps
                            or preemption.requested)
                knn_now = bool(knn_monitor) and c.train.knn_every_steps and step % c.train.knn_every_steps == 0
                if log_now or ckpt_now or knn_now:
                    values = {k: float(v.numpy()) for k, v in metrics.items()}
                    if not (math.isfinite(values["loss"]) and math.isfinite(values.get("grad_norm", 0.0))):
                        raise NonFiniteLossError(
                            f"non-finite loss/gradient (loss={values['loss']}, grad_norm={values.get('grad_norm')}) "
                            f"at step {step} (first seen at this logging point; log_every_steps="
                            f"{c.train.log_every_steps}); training stopped without saving. The last good "
                            f"checkpoint is {self.manager.latest_checkpoint or '(none yet)'} (untouched).")
                    values["lr"] = float(self.schedule(step - 1).numpy())
                    if knn_now:
                        values.update({f"knn/{k}": v for k, v in knn_monitor.evaluate(self.encoder_fn()).items()})
                    if log_now:
                        speed = bar.update(step, values["loss"])
                        values["images_per_sec"] = speed["images_per_sec"]
                    last = values
                    if self.chief:
                        self.summaries.scalars(step, values)
                        self.metrics_log.write({"step": step, "time": time.time(), **values})
                    if ckpt_now:
                        self.save()
                        last_saved = step
                if preemption.requested:
                    raise TrainingPreempted(step, self.manager.latest_checkpoint if self.chief else None)
        except _PEER_FAILURES as e:
            if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
                raise LostWorkerError(
                    f"a worker of the multi-worker job stopped responding after step {step} "
                    f"({type(e).__name__}: {_peer_failure_summary(e)}). Restart every worker with the "
                    f"same command to resume from the chief's latest checkpoint "
                    f"({self.manager.latest_checkpoint if self.chief else 'in ' + self.model_dir + '/checkpoints'})."
                ) from e
            raise
        finally:
            preemption.stop()
            bar.close()
        del last_saved
        last["step"] = step
        last["train_seconds"] = time.perf_counter() - t_start
        return last
