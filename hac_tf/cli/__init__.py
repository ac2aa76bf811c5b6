"""hac_tf.cli: the console scripts (declared in pyproject.toml ``[project.scripts]``).

  hac-train           pretrain, evaluate, export          hac_tf/cli/train.py
  hac-evaluate        evaluate a training run              hac_tf/cli/evaluate.py
  hac-export          export a run's backbone              hac_tf/cli/export.py
  hac-views           draw the add-one views               hac_tf/cli/show_views.py
  hac-finetune        linear probe / fine-tune an export   hac_tf/cli/finetune.py
  hac-finetune-dense  detection + segmentation transfer    hac_tf/cli/finetune_dense.py
  hac-serving-client  query TF Serving                     hac_tf/cli/serving_client.py
  hac-prepare-data    prepare a dataset                    hac_tf/cli/prepare_data.py
  hac-bench-science   the colour benchmark (issue 17)      hac_tf/cli/bench_science.py
  hac-bench-train     training-step speed and memory       hac_tf/cli/bench_train.py
  hac-profile-train   a training step's time per op/scope  hac_tf/cli/profile_train.py
  hac-bench-augment   view-pipeline throughput             hac_tf/cli/bench_augment.py
  hac-bench-quality   baseline vs hierarchical quality     hac_tf/cli/bench_quality.py

Each module holds its absl flags (``define_flags(flag_values)``), ``main(argv) -> int`` (reads
the parsed ``absl.flags.FLAGS``; the exit status) and ``run()`` (the console-script target:
defines the flags, then ``absl.app.run(main)``). ``tools/<tool>.py`` are thin wrappers of
``run()``; what the benchmarks measure lives in :mod:`hac_tf.benchmarks`. Output is quiet by default (:mod:`hac_tf.cli.quiet`); modules import TensorFlow
only inside ``main``, after :func:`hac_tf.cli.quiet.configure_output`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Callable, List

from absl import app, flags


def run_tool(module: ModuleType, define_flags: Callable[[flags.FlagValues], None],
             main: Callable[[List[str]], int]) -> None:
    """Defines a tool's flags on ``absl.flags.FLAGS`` and runs ``main`` under ``absl.app.run``
    (exits with ``main``'s return value).

    The flags are registered as key flags of the program being run (the console script or
    ``python -m``) and ``--help`` prints ``module``'s docstring, so ``--help`` lists them.
    """
    before = set(flags.FLAGS)
    define_flags(flags.FLAGS)
    program = sys.argv[0] if sys.argv else module.__name__
    for name in sorted(set(flags.FLAGS) - before):
        flags.FLAGS.register_key_flag_for_module(program, flags.FLAGS[name])
    main_module = sys.modules.get("__main__")
    if main_module is not None:  # absl's --help prints __main__'s docstring
        main_module.__doc__ = module.__doc__
    app.run(main)
