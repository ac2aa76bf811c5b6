"""What a run runs on: one line naming the devices, the strategy, the replicas and the precision,
and a warning when the machine has an NVIDIA GPU that TensorFlow cannot use.

    describe_run(strategy, "float32")
    -> "running on 1 CPU (AMD EPYC 7B13, 2 cores) | strategy: default (one device) | 1 replica | precision: float32"
    gpu_unused_warning() -> None, or a message naming the fix (pip install "hac_tf[and-cuda]" or a system CUDA)

The warning logic takes the detection results as parameters (``nvidia_gpu_present``,
``tf_gpu_count``) so it can be checked without the hardware; by default they are detected
(``/proc/driver/nvidia/gpus`` or ``nvidia-smi -L``; ``tf.config.list_physical_devices('GPU')``).
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from typing import List, Optional

import tensorflow as tf

_STRATEGY_NAMES = {
    "_DefaultDistributionStrategy": "default (one device)",
    "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
}


def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The ``model name`` of the first CPU in ``cpuinfo`` (Linux), or None."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        return None
    return None


def _device_names(device_type: str) -> List[str]:
    """Names of the physical devices of one type (the GPU model for GPUs; the CPU model for CPUs)."""
    names = []
    for device in tf.config.list_physical_devices(device_type):
        name = None
        if device_type != "CPU":
            try:
                name = tf.config.experimental.get_device_details(device).get("device_name")
            except (ValueError, RuntimeError):
                name = None
        names.append(name or device.name.rsplit("/", 1)[-1])
    return names


def describe_devices() -> str:
    """``1 CPU (model, N cores)``, ``2 GPU (NVIDIA A100 x2) + 1 CPU (...)``, ``8 TPU + 1 CPU (...)``."""
    parts = []
    for device_type in ("TPU", "GPU"):
        names = _device_names(device_type)
        if device_type == "TPU" and not names:  # a remote TPU (Cloud TPU node): only logical devices
            names = ["TPU"] * len(tf.config.list_logical_devices("TPU"))
        if names:
            counts = collections.Counter(n for n in names if n != device_type)
            label = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in counts.items())
            parts.append(f"{len(names)} {device_type}" + (f" ({label})" if label else ""))
    cpus = tf.config.list_physical_devices("CPU")
    model = cpu_model_name()
    cores = os.cpu_count()
    detail = ", ".join(x for x in (model, f"{cores} cores" if cores else None) if x)
    parts.append(f"{len(cpus)} CPU ({detail})" if detail else f"{len(cpus)} CPU")
    return " + ".join(parts)


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """A readable name of a tf.distribute strategy (``default (one device)``, ``MirroredStrategy``, ...)."""
    name = type(strategy).__name__
    return _STRATEGY_NAMES.get(name, name)


def replica_devices(strategy: tf.distribute.Strategy) -> List[str]:
    """Short names (``CPU:0``, ``GPU:1``) of the devices this worker's replicas run on."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError, ValueError):
        return []
    return [d.rsplit("device:", 1)[-1] for d in devices]


def describe_run(strategy: tf.distribute.Strategy, precision: str) -> str:
    """The one line a run prints at start.

    Example: ``running on 1 CPU (AMD EPYC 7B13, 2 cores) | strategy: MirroredStrategy | 2 replicas
    (CPU:0, CPU:1) | precision: float32``. ``precision`` is ``train.mixed_precision`` of the config.
    """
    replicas = int(strategy.num_replicas_in_sync)
    local = replica_devices(strategy)
    where = f" ({', '.join(local)})" if local and (replicas > 1 or len(local) > 1) else ""
    return (f"running on {describe_devices()} | strategy: {strategy_name(strategy)} | "
            f"{replicas} replica{'s' if replicas != 1 else ''}{where} | precision: {precision}")


def nvidia_gpu_present(proc_dir: str = "/proc/driver/nvidia/gpus") -> bool:
    """True when the machine has an NVIDIA GPU with a loaded driver (``proc_dir`` lists one, or
    ``nvidia-smi -L`` names one)."""
    try:
        if os.listdir(proc_dir):
            return True
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def gpu_unused_warning(nvidia_present: Optional[bool] = None, tf_gpu_count: Optional[int] = None,
                       cuda_visible_devices: Optional[str] = None) -> Optional[str]:
    """A warning when an NVIDIA GPU is present but TensorFlow sees none, else None.

    Args:
      nvidia_present: whether the machine has an NVIDIA GPU; None = :func:`nvidia_gpu_present`.
      tf_gpu_count: GPUs TensorFlow can use; None = ``len(tf.config.list_physical_devices('GPU'))``.
      cuda_visible_devices: the ``CUDA_VISIBLE_DEVICES`` value; None = from the environment. A
        value that hides all GPUs ('' or '-1') is a deliberate choice: no warning.
    """
    if cuda_visible_devices is None:
        cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cuda_visible_devices is not None and cuda_visible_devices.strip() in ("", "-1"):
        return None
    if tf_gpu_count is None:
        tf_gpu_count = len(tf.config.list_physical_devices("GPU"))
    if tf_gpu_count > 0:
        return None
    if nvidia_present is None:
        nvidia_present = nvidia_gpu_present()
    if not nvidia_present:
        return None
    return ("this machine has an NVIDIA GPU but TensorFlow cannot use it, so training runs on the CPU. "
            "Install TensorFlow's CUDA libraries with: pip install \"hac_tf[and-cuda]\" (or "
            "pip install \"tensorflow[and-cuda]==" + tf.__version__ + "\"), or install a system CUDA and "
            "cuDNN matching TensorFlow " + tf.__version__ + "; check with: "
            "python -c \"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\"")

