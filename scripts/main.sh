#!/usr/bin/env bash
# The main job: set up, draw the add-one views, then pretrain the default method (SimCLR) twice on
# banded-hue Fashion-MNIST -- the one-level baseline and the hierarchical configuration (HAI as
# released: add-one views in the paper order + colour embedding) -- and print both next to a
# random-init backbone: garment accuracy and colour measures without a ceiling (hue errors in
# degrees, docs/RESULTS.md). About 10 minutes on 2 idle CPU cores; exports both backbones.
# Re-running skips what is finished and resumes an interrupted training from its last checkpoint.
#
# Settings (environment): OUT (runs/quickstart), EXPORT_DIR (saved_models), STEPS (250 per row),
# DATA_DIR (Fashion-MNIST's folder; default: the Debian package or TFDS), HAC_SKIP_SETUP=1 (use the
# current environment, no .venv). Extra arguments go to hac-bench-science (e.g. --seeds=0,1).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${HAC_SKIP_SETUP:-0}" != "1" ]; then
  bash scripts/setup.sh
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
OUT="${OUT:-runs/quickstart}"
EXPORT_DIR="${EXPORT_DIR:-saved_models}"
STEPS="${STEPS:-250}"
DATA_ARGS=()
VIEW_ARGS=()
if [ -n "${DATA_DIR:-}" ]; then
  DATA_ARGS=(--params_override="data.data_dir=$DATA_DIR")
  VIEW_ARGS=(--data_dir="$DATA_DIR")
fi
# The console scripts are quiet (no TensorFlow C++ log lines); add --verbose to see them.
hac-views --source=banded_hue_fashion_mnist --out="$OUT/views.png" --blur_probability=0.5 "${VIEW_ARGS[@]}"
hac-bench-science --base_config=banded_simclr_baseline --rows=random_init,baseline,hai --seeds=0 \
  --budget="steps:$STEPS" --out_dir="$OUT" --work_dir="$OUT" \
  --export=hai="$EXPORT_DIR/quickstart" --export=baseline="$EXPORT_DIR/quickstart_baseline" \
  "${DATA_ARGS[@]}" "$@"
# stable names for the two training runs (checkpoints, TensorBoard, metrics.jsonl)
ln -sfn "hai__steps${STEPS}__seed0/train" "$OUT/hierarchical"
ln -sfn "baseline__steps${STEPS}__seed0/train" "$OUT/baseline"
echo "views: $OUT/views.png | runs: $OUT/hierarchical, $OUT/baseline | table: $OUT/summary.md" \
     "| TensorBoard: tensorboard --logdir $OUT"
