"""hac_tf.benchmarks: what the speed and quality benchmarks measure (their command lines are
``hac-bench-train``, ``hac-profile-train``, ``hac-bench-augment`` and ``hac-bench-quality`` in
hac_tf/cli/; the figures and how they were taken are in docs/PERFORMANCE.md).

  train_step     the row presets (a config + overrides) and one training-step measurement:
                 images/s, s/step, FLOPs per step, input pipeline rate, peak RSS; the matmul peak
  op_profile     TF profiler op statistics of a training step: self time per op type and scope
  view_pipeline  source images/s of a view pipeline through tf.data (add-one vs plain KerasCV)
  quality        baseline vs hierarchical pretraining at one budget: linear-probe table
  peer_figures   a peer implementation's throughput figures (--peer_json): read, checked, matched

The colour benchmark of issue 17 is :mod:`hac_tf.science`.
"""
