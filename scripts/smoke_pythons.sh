#!/usr/bin/env bash
# Installs the checkout into a fresh venv for each supported Python found on this machine other
# than the one of .venv, and runs it: import, then a 3-step hac-train with evaluation and export
# on the Fashion-MNIST test fixture. Prints one timing line per Python; fails if any run fails.
#
#   bash scripts/smoke_pythons.sh                    # 3.11 / 3.12 / 3.13, whichever are present
#   SMOKE_PYTHONS="3.13" bash scripts/smoke_pythons.sh
#
# Venvs live outside the checkout in ${TMPDIR:-/tmp}/hac_tf_smoke_<version> and are reused while
# their requirements stamp (sha256 of requirements.txt + pyproject.toml) matches; otherwise they are
# recreated and `pip install -c requirements.txt <checkout>` downloads the pinned wheels (PyPI).
# The package is installed non-editable from a copy of the working tree (tracked and untracked,
# not ignored files), so the build leaves nothing in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
# shellcheck disable=SC1091
. scripts/pythons.sh
VENV_PYTHON="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
WANT="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
ROOT="${TMPDIR:-/tmp}"
TINY="data.data_dir=$REPO/tests/fixtures/fashion_mnist,data.batch_size=16,data.shuffle_buffer=64"
TINY="$TINY,model.width_multiplier=0.125,model.embed_dim=16,model.projector_hidden_dim=32,model.projector_out_dim=16"
TINY="$TINY,train.max_steps=3,train.log_every_steps=1,eval.probe_max_train=64,eval.probe_max_test=32"
TINY="$TINY,eval.knn_max_train=64,eval.knn_max_test=32"
ran=0
for v in ${SMOKE_PYTHONS:-$SUPPORTED_PYTHONS}; do
  if [ "$v" = "$VENV_PYTHON" ] && [ -z "${SMOKE_PYTHONS:-}" ]; then
    echo "[smoke] python$v: the test suite's .venv Python, skipped"
    continue
  fi
  py="$(find_python "$v" || true)"
  if [ -z "$py" ]; then
    echo "[smoke] python$v: not found on this machine, skipped"
    continue
  fi
  venv="$ROOT/hac_tf_smoke_$v"
  work="$(mktemp -d "$ROOT/hac_tf_smoke_run_$v.XXXXXX")"
  t0=$(date +%s)
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | (mkdir -p "$work/src" && tar -xf - -C "$work/src")
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha" 2>/dev/null)" = "$WANT" ]; then
    how="reused venv"
    pip_or_fail smoke "$venv/bin/python" install -q --no-deps --force-reinstall "$work/src"
  else
    how="new venv"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    pip_or_fail smoke "$venv/bin/python" install -q --upgrade pip
    pip_or_fail smoke "$venv/bin/python" install -q -c requirements.txt "$work/src"
    "$venv/bin/python" -m pip check || { echo "[smoke] python$v: ERROR: pip check failed" >&2; exit 1; }
    echo "$WANT" > "$venv/.requirements.sha"
  fi
  t1=$(date +%s)
  (cd "$work" && TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c "import hac_tf, hac_tf.training.run; print('hac_tf', hac_tf.__version__)") \
    || { echo "[smoke] python$v: ERROR: import failed" >&2; exit 1; }
  t2=$(date +%s)
  if ! (cd "$work" && "$venv/bin/hac-train" --config_file=cfmnist_simclr_baseline --model_dir="$work/run" \
          --params_override="$TINY,export.base_dir=$work/saved_models" >"$work/train.log" 2>&1); then
    cat "$work/train.log" >&2
    echo "[smoke] python$v: ERROR: hac-train failed (log above)" >&2
    exit 1
  fi
  t3=$(date +%s)
  [ -f "$work/run/eval/results.json" ] && [ -d "$work/saved_models/run/1" ] \
    || { cat "$work/train.log" >&2; echo "[smoke] python$v: ERROR: no evaluation or export written" >&2; exit 1; }
  echo "[smoke] python$v ($("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $how): install $((t1 - t0)) s, import $((t2 - t1)) s, hac-train 3 steps + eval + export $((t3 - t2)) s: ok"
  rm -rf "$work"
  ran=$((ran + 1))
done
echo "[smoke] $ran Python(s) checked"
