"""hac_tf.training.devices: the run line on this CPU machine, and the unused-GPU warning from
injected detection results (no GPU needed)."""

import os

import tensorflow as tf

from hac_tf.training import devices


def test_run_line_names_cpu_strategy_replicas_precision():
    line = devices.describe_run(tf.distribute.get_strategy(), "mixed_bfloat16")
    assert line.startswith("running on ") and " CPU" in line
    assert "| strategy: default (one device) | 1 replica | precision: mixed_bfloat16" in line
    if not tf.config.list_physical_devices("GPU"):
        assert " GPU" not in line.split("|")[0]
    one = devices.describe_run(tf.distribute.OneDeviceStrategy("/cpu:0"), "float32")
    assert "| strategy: OneDeviceStrategy | 1 replica | precision: float32" in one


def test_cpu_model_name_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) CPU @ 2.20GHz\n")
    assert devices.cpu_model_name(str(info)) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert devices.cpu_model_name(str(tmp_path / "missing")) is None


def test_gpu_warning_only_when_a_gpu_is_present_but_unused():
    message = devices.gpu_unused_warning(nvidia_present=True, tf_gpu_count=0, cuda_visible_devices=None)
    assert 'pip install "hac_tf[and-cuda]"' in message and "system CUDA" in message
    assert devices.gpu_unused_warning(nvidia_present=False, tf_gpu_count=0, cuda_visible_devices=None) is None
    assert devices.gpu_unused_warning(nvidia_present=True, tf_gpu_count=2, cuda_visible_devices=None) is None
    for hidden in ("", "-1"):  # GPUs hidden on purpose
        assert devices.gpu_unused_warning(nvidia_present=True, tf_gpu_count=0, cuda_visible_devices=hidden) is None
    assert devices.gpu_unused_warning(nvidia_present=True, tf_gpu_count=0, cuda_visible_devices="0") is not None


def test_nvidia_detection_from_the_driver_directory(tmp_path, monkeypatch):
    gpus = tmp_path / "gpus"
    gpus.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on PATH
    assert devices.nvidia_gpu_present(str(gpus)) is False
    (gpus / "0000:00:04.0").mkdir()
    assert devices.nvidia_gpu_present(str(gpus)) is True
    assert devices.nvidia_gpu_present(str(tmp_path / "no_driver")) is False
