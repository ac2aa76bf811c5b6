"""What a command-line run prints: quiet by default, everything on request.

Quiet (the default of every ``hac-*`` console script) hides what TensorFlow and the libraries
below it write around our own output: TensorFlow's C++ log lines (XLA ``PredictCost`` errors,
``cuInit`` failures, "Could not find cuda drivers", oneDNN notices), absl INFO messages,
TensorFlow's Python logger below ERROR (e.g. signature renaming notices) and Python warnings.
Our own warnings (skipped bad files, NaN loss, evaluation skipped, ...) are absl WARNING-level
messages and still show, as do the progress bar, the tables and the paths a tool prints.

``--verbose`` (or an explicit absl ``--verbosity``) brings everything back.

Two mechanisms hide the C++ lines: ``TF_CPP_MIN_LOG_LEVEL=3`` (TensorFlow's own logging, e.g.
``cuInit``), and a filter on file descriptor 2 (:class:`NativeLogFilter`) for the lines logged
through absl's C++ logging, which ignores that variable (XLA/grappler's ``PredictCost``,
"Compiled cluster using XLA!"): such lines (``W0000 00:00:... file.cc:699] ...``) are dropped,
everything else written to the descriptor passes. Python's ``sys.stderr`` is pointed at the
original descriptor, so the progress bar still sees the terminal.

The C++ log level is read once, when TensorFlow is imported, so :func:`configure_output` must run
before the first ``import tensorflow`` of the process; the console scripts call it first thing
in their ``main``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import sys
import threading
import warnings
from typing import Optional

from absl import flags
from absl import logging as absl_logging

# TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR (the PredictCost/cuInit lines
# are ERROR-level, so 2 is not enough).
QUIET_TF_CPP_MIN_LOG_LEVEL = "3"
VERBOSE_FLAG = "verbose"


def define_verbose_flag(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the boolean ``--verbose`` flag shared by the console scripts."""
    flags.DEFINE_bool(VERBOSE_FLAG, False,
                      "Also show TensorFlow's C++ log lines, absl INFO messages and Python warnings "
                      "(hidden by default).", flag_values=flag_values)


def verbose_requested(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """True when the parsed flags ask for the full output: ``--verbose`` (when it is the boolean
    flag of :func:`define_verbose_flag`) or an explicit absl ``--verbosity``/``-v``."""
    if VERBOSE_FLAG in flag_values and isinstance(flag_values[VERBOSE_FLAG].value, bool):
        if flag_values[VERBOSE_FLAG].value:
            return True
    return "verbosity" in flag_values and flag_values["verbosity"].present > 0


def configure_output(verbose: bool) -> None:
    """Sets up the process's log output; call before TensorFlow is imported.

    Args:
      verbose: False: quiet (see the module docstring). True: the C++ level comes from the
        ``TF_CPP_MIN_LOG_LEVEL`` environment variable (TensorFlow's default, everything, when
        unset), absl logs INFO and above (unless ``--verbosity`` chose otherwise), Python
        warnings keep their default filters.
    """
    tf_logger = logging.getLogger("tensorflow")
    if verbose:
        if not (flags.FLAGS.is_parsed() and "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present):
            absl_logging.set_verbosity(absl_logging.INFO)
        tf_logger.setLevel(logging.INFO)
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_CPP_MIN_LOG_LEVEL
    absl_logging.set_verbosity(absl_logging.WARNING)
    tf_logger.setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    NativeLogFilter.install()


# A native (C++) log line: absl's format with a C/C++ source file (Python absl lines name .py
# files and pass), TensorFlow's own format, and absl's pre-initialisation notice.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./+-]+\.(?:cc|cpp|cxx|c|h|hpp|inc):\d+\]"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] [\w./+-]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)")


class NativeLogFilter:
    """Drops native log lines (:data:`NATIVE_LOG_LINE`) written to file descriptor 2 and passes
    everything else on to the original stderr.

    fd 2 becomes the write end of a pipe read by a daemon thread; ``sys.stderr`` is re-opened on a
    duplicate of the original descriptor (a terminal stays a terminal for the progress bar). A
    partial line is passed on when nothing follows it for ``PARTIAL_LINE_SECONDS``. At exit fd 2
    is restored and the rest of the pipe is drained. One filter per process.
    """

    PARTIAL_LINE_SECONDS = 0.2
    _installed: Optional["NativeLogFilter"] = None

    def __init__(self) -> None:
        sys.stderr.flush()
        self.original_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.read_fd = read_fd
        self.dropped = 0
        self.thread = threading.Thread(target=self._pump, name="native-log-filter", daemon=True)
        self.thread.start()
        sys.stderr = open(os.dup(self.original_fd), "w", buffering=1, encoding="utf-8",
                          errors="backslashreplace")
        handler = absl_logging.get_absl_handler().python_handler
        handler.stream = sys.stderr
        atexit.register(self.close)

    @classmethod
    def install(cls) -> "NativeLogFilter":
        """Installs the process's filter (once) and returns it."""
        if cls._installed is None:
            cls._installed = cls()
        return cls._installed

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.original_fd, data):]

    def _pass_or_drop(self, line: bytes) -> None:
        if NATIVE_LOG_LINE.match(line):
            self.dropped += 1
        else:
            self._write(line)

    def _pump(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self.read_fd], [], [], self.PARTIAL_LINE_SECONDS)
            if not ready:
                if pending:
                    self._pass_or_drop(pending)
                    pending = b""
                continue
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._pass_or_drop(line + b"\n")
        if pending:
            self._pass_or_drop(pending)

    def close(self) -> None:
        """Restores fd 2 and forwards what is left in the pipe (runs at exit)."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.original_fd, 2)  # the pipe's last write end closes: the pump sees EOF
        self.thread.join(timeout=5)
