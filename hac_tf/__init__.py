"""hac_tf: hierarchical augmentation-invariant contrastive pretraining for TF/Keras 3.

Subpackages (one concept each, see README.md):
  data        dataset sources (TFDS, image folders, offline Fashion-MNIST, coloured Fashion-MNIST)
  augment     parameter-recording augmentation layers and view policies
  models      multi-depth backbones, stage branches, embedding MLP, projector/predictor
  losses      contrastive loss functions and Keras loss layers
  methods     base methods (SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins) and the multi-depth model
  training    config schema, strategies, optimizers, the train loop, checkpoints
  evaluation  kNN monitor, linear/multi-task probes
  export      SavedModel export for TF Serving and downstream loading
  cli         the console scripts (hac-train, hac-evaluate, hac-export, ...)
"""

from hac_tf._version import __version__  # noqa: F401  (single source: hac_tf/_version.py)
