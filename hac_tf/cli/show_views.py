"""Writes a PNG grid of a few source images and all their views per level, annotated with the
parameters each view recorded -- the picture that explains add-one views.

Usage:
  hac-views --out=out/views.png
  hac-views --policy=strength --source=fashion_mnist --num_images=3 --image_size=32
  hac-views --source=image_folder --data_dir=/path/to/root --image_size=96
"""

from __future__ import annotations

import sys
from typing import List

from absl import flags, logging

from hac_tf.cli import run_tool
from hac_tf.cli.quiet import configure_output, define_verbose_flag, verbose_requested


def define_flags(flag_values: flags.FlagValues) -> None:
    """The flags of hac-views (same as tools/show_views.py)."""
    fv = flag_values
    flags.DEFINE_string("out", "out/views.png", "Output PNG path.", flag_values=fv)
    flags.DEFINE_string("source", "coloured_fashion_mnist", "Data source name (see hac_tf.data.build_source).",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Data directory for the source (None = its default).", flag_values=fv)
    flags.DEFINE_string("split", "train", "Split to draw images from.", flag_values=fv)
    flags.DEFINE_enum("policy", "add_one", ["add_one", "uniform", "strength", "two_view"], "View policy.",
                      flag_values=fv)
    flags.DEFINE_integer("num_images", 4, "Source images (rows).", flag_values=fv)
    flags.DEFINE_integer("image_size", 32, "View size.", flag_values=fv)
    flags.DEFINE_float("blur_probability", -1.0, "< 0: paper default (0 at <= 32 px).", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the views.", flag_values=fv)
    define_verbose_flag(fv)


def main(argv: List[str]) -> int:
    """Draws the views grid of the parsed flags; returns the exit code (1: the source failed)."""
    del argv
    f = flags.FLAGS
    configure_output(verbose_requested(f))
    from hac_tf.augment.view_grid import draw_view_grid

    try:
        out = draw_view_grid(f.source, f.out, data_dir=f.data_dir, split=f.split, policy=f.policy,
                             num_images=f.num_images, image_size=f.image_size,
                             blur_probability=None if f.blur_probability < 0 else f.blur_probability,
                             seed=f.seed)
    except (ValueError, OSError) as e:  # unknown source, missing data: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    logging.info("wrote %s", out)
    print(f"wrote {out}")
    return 0


def run() -> None:
    """Console script ``hac-views``."""
    run_tool(sys.modules[__name__], define_flags, main)


if __name__ == "__main__":
    run()
