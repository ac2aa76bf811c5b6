#!/usr/bin/env bash
# Sets up everything hac_tf needs on a fresh machine; safe to re-run.
#  - the Debian package dataset-fashion-mnist (offline Fashion-MNIST) when run as root
#  - a virtualenv in .venv with the pinned requirements and hac_tf itself (editable)
# Python: $PYTHON if set, else python3.11 when present, else python3.12 or python3.13.
# Stops with a message naming the step when an install step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. scripts/pythons.sh
if [ -z "${PYTHON:-}" ]; then
  for v in $SUPPORTED_PYTHONS; do
    PYTHON="$(find_python "$v" || true)"
    [ -n "$PYTHON" ] && break
  done
fi
if [ -z "${PYTHON:-}" ] || ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))'; then
  echo "[setup] ERROR: no supported Python found (need one of: $SUPPORTED_PYTHONS; or set PYTHON=/path/to/python3.x)" >&2
  exit 1
fi

if [ "$(id -u)" = "0" ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "[setup] installing Debian package dataset-fashion-mnist"
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
   echo "[setup] WARNING: could not install dataset-fashion-mnist; Fashion-MNIST will come from TFDS"
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv || { echo "[setup] ERROR: '$PYTHON -m venv .venv' failed" >&2; exit 1; }
fi
# shellcheck disable=SC1091
. .venv/bin/activate
STAMP=.venv/.requirements.sha
WANT="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing pinned requirements (first run takes ~2 minutes)"
  pip_or_fail setup python install -q --upgrade pip
  pip_or_fail setup python install -q -r requirements.txt
  pip_or_fail setup python install -q --no-deps -e .
  python -m pip check >/dev/null || { python -m pip check >&2; echo "[setup] ERROR: 'pip check' found inconsistent requirements (above)" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
