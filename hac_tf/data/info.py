"""`SourceInfo`: static facts about one split of one dataset source.

Every source function accepts ``with_info=True`` and then returns ``(dataset, info)``
(the `tfds.load` convention); `build_source` forwards it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["SourceInfo"]


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Description of one split of a source.

    Attributes:
      name: registry name of the source, e.g. ``"fashion_mnist"`` or ``"tfds:cifar10"``.
      split: the split that was loaded (``"train"``, ``"test"``, ``"all"``, or a TFDS split string).
      num_examples: number of ``(image, labels)`` elements in one epoch.
      image_shape: ``(H, W, 3)``; ``H``/``W`` are ``None`` when images vary in size.
      label_names: per label key, the class names in label-id order (empty tuple when unknown).
      num_classes: per label key, the number of classes (``-1`` when unknown).
      skipped_files: files that were found but not used (image folders only), sorted.
      skip_reasons: ``{path: reason}`` for every entry of ``skipped_files``.
      origin: where the data came from (a directory, a file prefix or ``"tfds:<name>"``).
    """

    name: str
    split: str
    num_examples: int
    image_shape: tuple[int | None, int | None, int]
    label_names: Mapping[str, tuple[str, ...]]
    num_classes: Mapping[str, int]
    skipped_files: tuple[str, ...] = ()
    skip_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    origin: str = ""

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The keys of the labels dict every element carries, in a fixed order."""
        return tuple(self.num_classes)
