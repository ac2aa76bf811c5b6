"""Parameter-recording augmentations (KerasCV layers) and view policies.

Public API:
  AddOneViews, UniformViews, HierarchicalStrengthViews, TwoViews, build_policy
      callable on a uint8 batch [B,H,W,3], returning {"level_k": {view_a, view_b, params_a, params_b}}
  AugmentationSettings, LevelSpec
  Recording* layers (crop, flip, jitter, grayscale, blur, solarize, rotation)
  make_view_dataset: source tf.data -> deterministic, resumable view batches
"""

from hac_tf.augment.blur import RecordingGaussianBlur, apply_gaussian_blur, default_kernel_size
from hac_tf.augment.colour import (
    RecordingColorJitter,
    RecordingRandomGrayscale,
    RecordingRandomSolarize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    apply_jitter,
)
from hac_tf.augment.geometric import (
    RecordingRandomFlip,
    RecordingRandomResizedCrop,
    RecordingRandomRotation90,
    apply_crop,
    region_to_sampling_box,
)
from hac_tf.augment.params import PARAM_KEYS, PARAM_WIDTHS, encode_fields, field_width, identity_params
from hac_tf.augment.pipeline import make_view_dataset
from hac_tf.augment.policies import (
    DEFAULT_ORDER,
    GROUPS,
    AddOneViews,
    AugmentationSettings,
    HierarchicalStrengthViews,
    LevelSpec,
    TwoViews,
    UniformViews,
    ViewPolicy,
    build_policy,
)
