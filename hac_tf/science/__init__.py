"""hac_tf.science: the colour benchmark of issue 17 (does the hierarchy keep what augmentation destroys?).

  rows        the named rows (config overrides over a base config) and which train
  budget      training budgets (steps, source images, FLOPs, wall-clock seconds) -> steps,
              FLOPs per training step from TF's profiler
  encoders    the evaluated features of a model: stage1..4 and the projector output
  runner      one (row, seed, budget): train, measure (hac_tf/evaluation/colour_measures.py),
              write one JSON; existing JSONs are skipped (resumable)
  summary     the table (mean +- std over seeds) and the PNG (garment accuracy vs colour error)

The command line is ``hac-bench-science`` (hac_tf/cli/bench_science.py, tools/bench_science.py);
the decision rules and commands are in docs/RESULTS.md.
"""
