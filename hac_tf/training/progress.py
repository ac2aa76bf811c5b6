"""What a user watches: a progress line, metrics.jsonl and TensorBoard summaries."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressBar:
    """``step 120/938 [=====>      ] 13% | loss 1.2345 | 345.6 img/s | ETA 3m12s``.

    Redraws in place on a terminal; prints one line per update otherwise (logs, CI).
    Throughput counts source images (one source image = all of its views).
    """

    def __init__(self, total_steps: int, start_step: int, images_per_step: int, stream=None, width: int = 24):
        self.total = max(int(total_steps), 1)
        self.start = int(start_step)
        self.images_per_step = int(images_per_step)
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last_t = self.t0
        self.last_step = self.start

    def update(self, step: int, loss: float, extra: str = "") -> Dict[str, float]:
        now = time.perf_counter()
        dt = max(now - self.last_t, 1e-9)
        rate = (step - self.last_step) * self.images_per_step / dt
        overall = (step - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - step) / overall if overall > 0 else float("inf")
        frac = min(step / self.total, 1.0)
        filled = int(frac * self.width)
        bar = "=" * filled + (">" if filled < self.width else "") + " " * max(self.width - filled - 1, 0)
        line = (f"step {step}/{self.total} [{bar}] {frac * 100:3.0f}% | loss {loss:.4f} | "
                f"{rate:.1f} img/s | ETA {_fmt_time(eta)}{(' | ' + extra) if extra else ''}")
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last_t, self.last_step = now, step
        return {"images_per_sec": rate, "eta_sec": eta}

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class MetricsLog:
    """Appends one JSON object per line to ``model_dir/metrics.jsonl`` (flushed each write)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, record: Mapping) -> None:
        clean = {k: (float(v) if isinstance(v, (np.floating, np.integer, float, int)) and not isinstance(v, bool)
                     else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")


class Summaries:
    """TensorBoard scalars and image grids under ``model_dir/<name>``."""

    def __init__(self, logdir: Optional[str]):
        self.writer = tf.summary.create_file_writer(logdir) if logdir else None

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.scalar(k, float(v))
        self.writer.flush()

    def view_grid(self, step: int, batch: Mapping, max_images: int = 8) -> None:
        """One image per level: rows = source images, columns = (view a | view b)."""
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for name in sorted(k for k in batch if k.startswith("level_")):
                a = np.asarray(batch[name]["view_a"][:max_images])
                b = np.asarray(batch[name]["view_b"][:max_images])
                pairs = np.concatenate([a, b], axis=2)  # [n, H, 2W, 3]
                grid = np.concatenate(list(pairs), axis=0)[None]  # [1, nH, 2W, 3]
                tf.summary.image(f"views/{name}", np.clip(grid, 0, 1), step=step)
        self.writer.flush()
