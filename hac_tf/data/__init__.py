"""hac_tf.data: dataset sources.

Contract: every source returns a ``tf.data.Dataset`` of ``(image, labels)`` with ``image`` uint8
``[H, W, 3]`` and ``labels`` a dict of int32 scalars; ``with_info=True`` also returns a
`SourceInfo`. Sources have train/test splits and deterministic seeded shuffling
(``shuffle=True, seed=...``, reshuffled each epoch).

Sources:
  fashion_mnist            offline IDX files (Debian dataset-fashion-mnist), TFDS fallback
  coloured_fashion_mnist   garment x colour labels, N hues, generated in memory
  image_folder             class folders, split folders (train/val/test) or unlabelled images
                           (labels="none"), any size, bad files skipped and reported
                           (layouts: hac_tf/data/folder_layout.py)
  tfds_source              any TFDS builder
  build_source             the registry over all of them ("tfds:<builder>" for TFDS)
"""

from hac_tf.data.coloured import coloured_fashion_mnist, coloured_fashion_mnist_arrays
from hac_tf.data.fashion_mnist import CLASS_NAMES as FASHION_MNIST_CLASSES
from hac_tf.data.fashion_mnist import fashion_mnist, load_fashion_mnist_arrays
from hac_tf.data.idx import read_idx, write_idx
from hac_tf.data.image_folder import IMAGE_EXTENSIONS, decode_image_file, image_folder
from hac_tf.data.info import SourceInfo
from hac_tf.data.pipeline import batched, to_rgb_uint8
from hac_tf.data.registry import available_sources, build_source
from hac_tf.data.tfds_source import tfds_source

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "SourceInfo",
    "available_sources",
    "batched",
    "build_source",
    "coloured_fashion_mnist",
    "coloured_fashion_mnist_arrays",
    "decode_image_file",
    "fashion_mnist",
    "image_folder",
    "load_fashion_mnist_arrays",
    "read_idx",
    "tfds_source",
    "to_rgb_uint8",
    "write_idx",
]
