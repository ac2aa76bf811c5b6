#!/usr/bin/env bash
# Sets up everything hac_tf needs on a fresh machine; safe to re-run.
#  - the Debian package dataset-fashion-mnist (offline Fashion-MNIST) when run as root
#  - a virtualenv in .venv with the pinned requirements and hac_tf itself (editable)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ "$(id -u)" = "0" ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "[setup] installing Debian package dataset-fashion-mnist"
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
   echo "[setup] WARNING: could not install dataset-fashion-mnist; Fashion-MNIST will come from TFDS"
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
STAMP=.venv/.requirements.sha
WANT="$(sha256sum requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing pinned requirements (first run takes ~2 minutes)"
  python -m pip install -q --upgrade pip 2>/dev/null
  python -m pip install -q -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  python -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  python -m pip check
  echo "$WANT" > "$STAMP"
fi
