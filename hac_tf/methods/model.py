"""`HierarchicalContrastiveModel`: one multi-depth Keras model for every base method.

For view level i (batch key ``level_{i+1}``) contrasted at backbone depth d = ``spec.level_depths[i]``::

    x  = concat[view_a, view_b]                          [2B, S, S, 3]  (one batch; spec.per_view_bn, the default:
                                                         BN normalises each view over its own batch)
    f  = branch_d(backbone(x, max_stage=d)["stage{d}"])  [2B, feature_dim]  (stages > d never run)
    f  = concat[f, EmbeddingMLP_i(params)]               if d > 1 and spec.embed_fields
                                                         (spec.embed_shuffle: params of the next row)
    z  = projector_i(f)                                  [2B, out]   (-> p = predictor_i(z))
    z_a, z_b = split(z)                                  -> method.level_loss(...)

    total = sum_i loss_weights[i] * L_i

MoCo and BYOL keep a *target* encoder: a second, identically shaped tower (backbone, the stage
branches, the embeddings and the projectors), initialised as a copy of the online one and updated
by :meth:`update_targets` after every optimizer step (``t <- m t + (1-m) o`` over trainable
parameters; BatchNorm moving statistics of the target are its own, updated by its forward passes
in training mode, as in the PyTorch reference code). Target variables are excluded from
``trainable_variables`` and only receive stop-gradient outputs.

Distribution: build the model under ``strategy.scope()`` and call :meth:`compute_loss` and
:meth:`update_targets` inside ``strategy.run``. The per-replica loss follows the losses'
convention (mean over this replica's rows against the gathered global batch); divide by
``num_replicas_in_sync`` before taking gradients. MoCo's queues are ON_WRITE /
ONLY_FIRST_REPLICA variables fed with all-gathered keys, so all replicas hold the same queue.

Checkpointing: ``tf.train.Checkpoint(model=model)`` saves and restores every variable (online and
target towers, predictors, BatchNorm statistics, MoCo queues / pointers / fill counters, plug-in
heads and the Viewmaker generator), keyed by the variables' Keras paths (see
:meth:`HierarchicalContrastiveModel.checkpoint_variables`).

Plug-ins (``hac_tf.plugins``, enabled by the spec's plug-in fields; MoCHi lives inside the
losses): the model owns the enabled plug-ins' layers and drives them through the hooks of the
plug-in interface (hac_tf/plugins/base.py) without naming any: ``prepare_batch`` before the levels
(the Viewmaker's views), ``shared_images`` encoded with a level's views (EquiMod's x_0 with
``shared_bn``) and ``level_term`` added to the total after the base method's loss (EquiMod's
``lambda * L_eq``, AugSelf's ``sum_t lambda_t L_t``). The variables of a plug-in with an objective of
its own (``own_objective``: the Viewmaker's generator) are not in ``trainable_variables``; the
trainer trains them on that plug-in's ``objective``. Without plug-ins the computation is exactly the
one above.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from hac_tf.losses import similarity_stats
from hac_tf.methods.base import Method, PairOutputs
from hac_tf.methods.ema import copy_variables, ema_update
from hac_tf.methods.spec import ModelSpec
from hac_tf.models import (
    EmbeddingMLP,
    PredictionMLP,
    ProjectionMLP,
    ResNetBackbone,
    build_resnet,
    build_stage_branches,
    per_view_batch_norm,
)
from hac_tf.plugins.base import LevelFeatures, PluginLayer
from hac_tf.plugins.registry import plugin_modules


class _LevelForward(NamedTuple):
    """One level's forward pass: head outputs, the online depth features of the pair ``[2B, F]``
    and those of the plug-ins' shared images (one ``[N_k, F]`` per sharing plug-in)."""

    online: PairOutputs
    target: Optional[PairOutputs]
    features: tf.Tensor
    shared: Tuple[tf.Tensor, ...]


class EncoderTower(keras.layers.Layer):
    """Backbone + stage branches + parameter embeddings + projectors for all levels of a spec.

    ``project(level, images, params, training)`` maps ``[N, S, S, 3]`` images (and the encoded
    recorded parameters ``[N, F]`` when the level is embedded) to projections ``[N, out_dim]``.
    """

    def __init__(self, spec: ModelSpec, prefix: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.backbone: ResNetBackbone = build_resnet(
            depth=spec.depth,
            stem=spec.stem,
            width_multiplier=spec.width_multiplier,
            sync_bn=spec.sync_bn,
            zero_init_residual=spec.zero_init_residual,
            name=f"{prefix}resnet{spec.depth}",
        )
        bb = self.backbone
        self.branches = build_stage_branches(
            bb.stage_channels, bb.base_channels, bb.feature_dim, sync_bn=spec.sync_bn,
            levels=spec.used_depths, name_prefix=f"{prefix}branch",
        )
        self._branch_slot: Tuple[int, ...] = tuple(
            spec.used_depths.index(d) for d in spec.level_depths
        )
        self.embeddings: List[EmbeddingMLP] = []
        slots = []
        for i in range(spec.num_levels):
            if spec.embeds_level(i):
                emb = EmbeddingMLP(spec.embed_fields, spec.embed_dim, sync_bn=spec.sync_bn,
                                   name=f"{prefix}embedding_level_{i + 1}")
                emb.build()
                slots.append(len(self.embeddings))
                self.embeddings.append(emb)
            else:
                slots.append(-1)
        self._embed_slot: Tuple[int, ...] = tuple(slots)
        proj = spec.projector
        self.projectors: List[ProjectionMLP] = []
        for i in range(spec.num_levels):
            head = ProjectionMLP(sync_bn=spec.sync_bn, name=f"{prefix}projector_level_{i + 1}", **proj)
            in_dim = bb.feature_dim + (spec.embed_dim if spec.embeds_level(i) else 0)
            head.build((None, in_dim))
            self.projectors.append(head)
        self.built = True

    def embedding(self, level: int) -> Optional[EmbeddingMLP]:
        slot = self._embed_slot[level]
        return None if slot < 0 else self.embeddings[slot]

    def branch(self, level: int) -> keras.layers.Layer:
        return self.branches[self._branch_slot[level]]

    def branch_features(self, level: int, images: tf.Tensor, training: bool) -> tf.Tensor:
        """Depth-d feature of the stage branch, before any embedding: ``[N, feature_dim]``."""
        depth = self.spec.level_depths[level]
        maps = self.backbone(images, training=training, max_stage=depth)
        return self.branch(level)(maps[f"stage{depth}"], training=training)

    def features(
        self, level: int, images: tf.Tensor, params: Optional[tf.Tensor], training: bool
    ) -> tf.Tensor:
        """Depth-d feature (+ parameter embedding): ``[N, feature_dim (+ embed_dim)]``."""
        return self.embed(level, self.branch_features(level, images, training), params, training)

    def embed(self, level: int, feat: tf.Tensor, params: Optional[tf.Tensor], training: bool) -> tf.Tensor:
        """``feat`` with the level's parameter embedding concatenated (if the level has one)."""
        emb = self.embedding(level)
        if emb is not None:
            if params is None:
                raise ValueError(f"level_{level + 1} embeds {self.spec.embed_fields} but got no params")
            e = emb(params, training=training)
            feat = tf.concat([feat, tf.cast(e, feat.dtype)], axis=-1)
        return feat

    def project(
        self, level: int, images: tf.Tensor, params: Optional[tf.Tensor], training: bool
    ) -> tf.Tensor:
        return self.projectors[level](self.features(level, images, params, training), training=training)

    def call(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError("use project(level, images, params, training)")


class HierarchicalContrastiveModel(keras.Model):
    """Multi-depth contrastive model built from a :class:`ModelSpec` (see the module docstring).

    Attributes:
      spec: the ModelSpec.
      method: the base :class:`~hac_tf.methods.base.Method` (owns MoCo's queues).
      online: the online :class:`EncoderTower`; ``backbone`` is its ResNetBackbone.
      predictors: one PredictionMLP per level (BYOL, SimSiam), else [].
      target: the momentum / EMA :class:`EncoderTower` (MoCo, BYOL), else None.

    Train it with a custom loop (``compute_loss`` → gradients of ``trainable_variables`` →
    optimizer → ``update_targets``); ``compute_loss`` replaces Keras' hook of the same name, so
    ``model.fit`` is not supported.
    """

    def __init__(self, spec: ModelSpec, name: Optional[str] = None, **kwargs) -> None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
        super().__init__(name=name or f"hac_{spec.method}", **kwargs)
        self.spec = spec
        self.online = EncoderTower(spec, prefix="", name="online")
        self.predictors: List[PredictionMLP] = []
        pred = spec.predictor
        if pred is not None:
            for i in range(spec.num_levels):
                head = PredictionMLP(sync_bn=spec.sync_bn, name=f"predictor_level_{i + 1}", **pred)
                head.build((None, spec.projector["out_dim"]))
                self.predictors.append(head)
        self.method: Method = spec.method_class(spec)
        self.method.build_state()
        self.target: Optional[EncoderTower] = None
        if self.method.target_kind is not None:
            self.target = EncoderTower(spec, prefix="target_", name="target")
            if len(self.target.weights) != len(self.online.weights):
                raise RuntimeError("target and online towers have different numbers of variables")
            for t, o in zip(self.target.weights, self.online.weights):
                if t.path != "target_" + o.path:
                    raise RuntimeError(f"target/online variables out of step: {t.path} vs {o.path}")
            copy_variables(self.target.weights, self.online.weights)
            for v in self.target.weights:
                v.trainable = False
        # --- plug-ins (hac_tf/plugins/base.py): their layers, built last so that the base model's
        # variable paths and order are unchanged; model.<plug-in name> is its layer (None when off)
        feature_dim = self.online.backbone.feature_dim
        names = []
        for name, module in plugin_modules().items():
            config = getattr(spec, name)
            layer = None if config is None else module.build_layer(config, feature_dim, sync_bn=spec.sync_bn)
            setattr(self, name, layer)
            if layer is not None:
                names.append(name)
        self._plugin_names: Tuple[str, ...] = tuple(names)
        self.built = True

    # ------------------------------------------------------------------ variables
    @property
    def backbone(self) -> ResNetBackbone:
        """The online ResNetBackbone (what gets exported)."""
        return self.online.backbone

    @property
    def plugin_layers(self) -> List[PluginLayer]:
        """The enabled plug-ins' layers, in plug-in order."""
        return [getattr(self, name) for name in getattr(self, "_plugin_names", ())]

    def _target_ids(self) -> set:
        skip = set() if self.target is None else {id(v) for v in self.target.weights}
        for plugin in self.plugin_layers:
            if plugin.own_objective:  # trained by its own optimizer
                skip |= {id(v) for v in plugin.weights}
        return skip

    @property
    def trainable_weights(self) -> list:
        if not self.trainable:
            return []
        skip = self._target_ids()
        return [v for v in super().trainable_weights if id(v) not in skip]

    @property
    def trainable_variables(self) -> list:
        return self.trainable_weights

    @property
    def online_variables(self) -> list:
        """Everything the optimizer updates (online tower + predictors), = trainable_variables."""
        return self.trainable_weights

    @property
    def predictor_variables(self) -> list:
        """Trainable variables of the predictors (SimSiam's fixed-lr group); [] if none."""
        return [v for head in self.predictors for v in head.trainable_weights]

    @property
    def target_variables(self) -> list:
        """All variables of the target tower (incl. BN statistics); [] if none."""
        return [] if self.target is None else list(self.target.weights)

    # ------------------------------------------------------------------ forward
    def call(self, images: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        return self.encode(images, training=training)

    def encode(self, images: tf.Tensor, training: bool = False) -> Dict[str, tf.Tensor]:
        """Evaluation features of the online backbone, float32.

        Returns ``{"stage1".."stage4": GAP of each stage [B, C_k], "embedding": GAP(stage4)
        [B, feature_dim]}``.
        """
        maps = self.backbone(images, training=training, max_stage=4)
        out = {k: tf.cast(tf.reduce_mean(v, axis=[1, 2]), tf.float32) for k, v in maps.items()}
        out["embedding"] = out["stage4"]
        return out

    def _level_inputs(self, batch: Mapping[str, Any], level: int) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
        key = self.spec.level_names[level]
        if key not in batch:
            raise KeyError(f"batch has no {key!r} (spec has {self.spec.num_levels} levels); "
                           f"got keys {sorted(batch)}")
        views = batch[key]
        images = tf.concat([views["view_a"], views["view_b"]], axis=0)
        params = None
        emb = self.online.embedding(level)
        if emb is not None:
            params_a, params_b = emb.encode(views["params_a"]), emb.encode(views["params_b"])
            if self.spec.embed_shuffle:  # another image's parameters: capacity without information
                params_a, params_b = tf.roll(params_a, 1, axis=0), tf.roll(params_b, 1, axis=0)
            params = tf.concat([params_a, params_b], axis=0)
        return images, params

    def level_outputs(
        self, batch: Mapping[str, Any], level: int, training: bool = True
    ) -> Tuple[PairOutputs, Optional[PairOutputs]]:
        """Online (and target) head outputs of level ``level`` (0-based)."""
        forward = self._level_forward(batch, level, training)
        return forward.online, forward.target

    def _level_forward(
        self, batch: Mapping[str, Any], level: int, training: bool, shared_images: Sequence[tf.Tensor] = ()
    ) -> "_LevelForward":
        """Head outputs of the level plus the online depth features ``[2B, feature_dim]`` of the pair
        (before the embedding) and those of each of ``shared_images`` ([N_k, ...]) from the SAME
        backbone call."""
        images, params = self._level_inputs(batch, level)
        per_view = self.spec.per_view_bn
        if not shared_images:
            with per_view_batch_norm(2 if per_view else 1):
                feat, shared = self.online.branch_features(level, images, training), []
        else:
            sizes = [tf.shape(images)[0]] + [tf.shape(x)[0] for x in shared_images]
            with per_view_batch_norm(2 + len(shared_images) if per_view else 1):  # x_0 chunks are views too
                both = self.online.branch_features(
                    level, tf.concat([images] + [tf.cast(x, images.dtype) for x in shared_images], axis=0), training)
            feat, *shared = tf.split(both, sizes, axis=0)
        with per_view_batch_norm(2 if per_view else 1):
            z = self.online.projectors[level](self.online.embed(level, feat, params, training), training=training)
            z_a, z_b = tf.split(z, 2, axis=0)
            p_a = p_b = None
            if self.predictors:
                p = self.predictors[level](z, training=training)
                p_a, p_b = tf.split(p, 2, axis=0)
            online = PairOutputs(z_a, z_b, p_a, p_b)
            target = None
            if self.target is not None:
                tz = tf.stop_gradient(self.target.project(level, images, params, training))
                tz_a, tz_b = tf.split(tz, 2, axis=0)
                target = PairOutputs(tz_a, tz_b)
        return _LevelForward(online, target, feat, tuple(shared))

    def compute_loss(
        self, batch: Mapping[str, Any], training: bool = True, step: Optional[Any] = None
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """Weighted sum of the per-level losses and the plug-ins' terms, float32, and the metrics.

        Args:
          batch: ``{"level_1": {"view_a", "view_b", "params_a", "params_b"}, ...}`` (extra keys
            such as "labels" are ignored; "images", the uint8 source batch, is EquiMod's x_0).
          training: BatchNorm mode; also whether MoCo enqueues its keys (so with
            ``training=True`` every call mutates MoCo's queues: call it once per optimizer step).
          step: global step (MoCHi start gating / seeding). Pass a tensor inside a tf.function
            (a Python int retraces at every new value).

        Returns:
          ``(total_loss, metrics)`` with metrics ``loss`` and, per level ``level_k/``: ``loss``,
          ``pos_sim``, ``neg_sim``, ``embedding_std`` (of the online projections), for MoCo
          ``queue_fill``, and the plug-in terms' metrics (e.g. ``equimod_loss``,
          ``augself_<target>_loss``, unweighted) on their levels. ``total_loss`` includes the
          weighted plug-in terms.
        """
        total = tf.constant(0.0, tf.float32)
        metrics: Dict[str, tf.Tensor] = {}
        plugins = self.plugin_layers
        for plugin in plugins:  # e.g. the Viewmaker's views, constants for the encoder
            batch = plugin.prepare_batch(batch, self.spec.level_names, step)
        by_term = sorted(plugins, key=lambda p: p.term_order)
        for i, name in enumerate(self.spec.level_names):
            sharing = [(p, p.shared_images(batch, i)) for p in plugins]
            sharing = [(p, x) for p, x in sharing if x is not None]
            forward = self._level_forward(batch, i, training, [x for _, x in sharing])
            online, target = forward.online, forward.target
            loss, extra = self.method.level_loss(i, online, target, training=training, step=step)
            loss = tf.cast(loss, tf.float32)
            total = total + tf.constant(self.spec.loss_weights[i], tf.float32) * loss
            metrics[f"{name}/loss"] = loss
            for k, v in similarity_stats(online.z_a, online.z_b).items():
                metrics[f"{name}/{k}"] = v
            for k, v in extra.items():
                metrics[f"{name}/{k}"] = tf.cast(v, tf.float32)
            shared = {id(p): f for (p, _), f in zip(sharing, forward.shared)}
            for plugin in by_term:
                features = LevelFeatures(i, name, forward.features, shared.get(id(plugin)),
                                         lambda images, i=i: self.online.branch_features(i, images, training))
                term = plugin.level_term(batch, features, training)
                if term is None:
                    continue
                total = total + tf.cast(term[0], tf.float32)
                for k, v in term[1].items():
                    metrics[f"{name}/{k}"] = tf.cast(v, tf.float32)
        metrics["loss"] = total
        return total, metrics

    # ------------------------------------------------------------------ target update
    def target_momentum(self, step: Any, total_steps: Any) -> Optional[tf.Tensor]:
        """Momentum the next :meth:`update_targets` uses (None without a target network)."""
        if self.target is None:
            return None
        return self.method.target_momentum(step, total_steps)

    def update_targets(self, step: Any = 0, total_steps: Any = 1) -> Optional[tf.Tensor]:
        """EMA of the target's trainable parameters toward the online ones; returns m.

        MoCo: fixed m = its moco_momentum setting. BYOL: m = 1 - (1 - tau_base)(cos(pi step/T) + 1)/2.
        No-op (returns None) for methods without a target. Works eagerly, in a tf.function and
        inside ``strategy.run``.
        """
        if self.target is None:
            return None
        m = self.method.target_momentum(step, total_steps)
        targets, onlines = self.ema_variable_pairs()
        return ema_update(targets, onlines, m)

    def ema_variable_pairs(self) -> Tuple[list, list]:
        """(target, online) lists of the parameters the EMA updates (trainable online weights)."""
        if self.target is None:
            return [], []
        pairs = [
            (t, o)
            for t, o in zip(self.target.weights, self.online.weights)
            if o.trainable
        ]
        return [t for t, _ in pairs], [o for _, o in pairs]

    # ------------------------------------------------------------------ checkpointing
    def checkpoint_variables(self) -> Dict[str, Any]:
        """Every variable of the model (online, predictors, target, method state) keyed by its
        Keras path, e.g. ``resnet18/stage1/block1/conv1/kernel``, ``queue_level_1/queue``."""
        out: Dict[str, Any] = {}
        for v in self.weights:
            key = v.path
            if key in out:
                raise ValueError(f"two variables share the path {key!r}; give the layers unique names")
            out[key] = v
        return out

    def _trackable_children(self, save_type: str = "checkpoint", **kwargs):
        # Keras 3 (TF backend) does not expose layers held in Python lists (ResNetStage.blocks,
        # chains of layers, ...) to tf.train.Checkpoint: a checkpoint of a plain ResNetBackbone
        # holds none of its weights. The model therefore checkpoints every variable explicitly,
        # keyed by its (deterministic) Keras path.
        if save_type != "checkpoint":
            return super()._trackable_children(save_type, **kwargs)
        return self.checkpoint_variables()

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {"spec": self.spec.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "HierarchicalContrastiveModel":
        return cls(ModelSpec.from_dict(config["spec"]), name=config.get("name"))
