# Sourced by scripts/setup.sh and scripts/smoke_pythons.sh: the Pythons hac_tf supports and how
# to find a working interpreter of each (on PATH, or a pyenv version that is not the active one).
# shellcheck shell=bash
SUPPORTED_PYTHONS="3.11 3.12 3.13"

# find_python 3.12 -> prints the path of a working python3.12, or nothing (status 1).
find_python() {
  local v="$1" candidate
  for candidate in "$(command -v "python$v" 2>/dev/null || true)" \
                   "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$v".*/bin/"python$v"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "import sys, venv" >/dev/null 2>&1; then
      "$candidate" -c "import sys; print(sys.executable)"
      return 0
    fi
  done
  return 1
}

# pip_or_fail <label> <python> <pip args...>: runs pip, hides the harmless "is ignored: it is
# neither a file nor a directory" notices of an unavailable extra index, shows nothing else when pip
# succeeds, and stops the script with a clear message (and pip's output) when pip fails.
pip_or_fail() {
  local label="$1" python="$2" log
  shift 2
  log="$(mktemp)"
  if ! "$python" -m pip "$@" >"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
    rm -f "$log"
    echo "[$label] ERROR: 'pip $*' failed (output above); nothing after this step was done." >&2
    exit 1
  fi
  # on success pip's chatter (e.g. setuptools' editable-install notice) is not shown
  rm -f "$log"
}
