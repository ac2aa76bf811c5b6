"""hac_tf: hierarchical augmentation-invariant contrastive pretraining for TF/Keras 3.

Subpackages (one concept each, see README.md):
  data        dataset sources (TFDS, image folders, offline Fashion-MNIST, coloured Fashion-MNIST)
  augment     parameter-recording augmentation layers and view policies
  models      multi-depth backbones, stage branches, embedding MLP, projector/predictor
  losses      contrastive loss functions
  methods     the base contrastive methods and the multi-depth model
  plugins     related methods as switches on a base method (docs/PLUGINS.md)
  training    config schema, strategies, optimizers, the train loop, checkpoints
  evaluation  kNN monitor, linear/multi-task probes, colour measures
  export      SavedModel export for TF Serving, export folders and versions, loading for Keras
  downstream  transfer of an export: classification, detection and segmentation
  science     the colour benchmark (rows, budgets, runner, summary)
  benchmarks  what the speed and quality benchmarks measure (training step, op profile, views, quality)
  cli         the console scripts (hac-train, hac-evaluate, hac-export, ...)
"""

from hac_tf._version import __version__  # noqa: F401  (single source: hac_tf/_version.py)
