"""Runtime detection: CPU here, Colab only when google.colab is importable."""

import sys
import types

from utils.training.runtime import detect_runtime, in_colab


def test_cpu_runtime_is_described():
    info = detect_runtime()
    assert info.device in ("cpu", "cuda", "mps")
    if info.device == "cpu":
        assert info.gpu_count == 0 and info.gpu_name == ""
        assert "CPU" in info.describe()
    assert info.cpu_count >= 1 and info.ram_gb > 0


def test_colab_detected_from_module(monkeypatch):
    assert in_colab() is False
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert in_colab() is True


def test_gpu_name_is_empty_off_gpu():
    from utils.training.runtime import gpu_name

    assert gpu_name("cpu") == "" and gpu_name("mps") == ""
