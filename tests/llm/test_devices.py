"""Device detection on this machine (CPU-only torch), explicit choices and clear refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nbmagic.errors import ConfigError
from nbmagic.llm.devices import DeviceInfo, detect_device, dtype_name, torch_dtype


def test_auto_detects_what_torch_sees(monkeypatch):
    monkeypatch.delenv("NBMAGIC_DEVICE", raising=False)
    info = detect_device()
    assert isinstance(info, DeviceInfo)
    if torch.cuda.is_available():  # a GPU machine: CUDA or ROCm, half precision
        assert info.kind in ("cuda", "rocm") and info.torch_device.startswith("cuda")
        assert info.dtype in ("bfloat16", "float16")
    else:
        assert (info.kind, info.torch_device, info.dtype) == ("cpu", "cpu", "float32")
        assert "no GPU" in info.reason


def test_prefer_cpu_and_env_override(monkeypatch):
    assert detect_device("cpu").kind == "cpu"
    assert detect_device("CPU").torch_device == "cpu"
    assert detect_device(torch.device("cpu")).kind == "cpu"  # a torch.device is taken too
    monkeypatch.setenv("NBMAGIC_DEVICE", "cpu")
    info = detect_device()
    assert info.kind == "cpu" and "NBMAGIC_DEVICE" in info.reason
    monkeypatch.setenv("NBMAGIC_DEVICE", "auto")
    assert detect_device().kind in ("cpu", "cuda", "rocm", "xpu", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this asserts the refusal on a machine without CUDA")
def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"'cuda'.*not available.*device='cpu'"):
        detect_device("cuda")
    monkeypatch.setenv("NBMAGIC_DEVICE", "cuda:1")
    with pytest.raises(ConfigError, match="NBMAGIC_DEVICE"):
        detect_device()


def test_unavailable_mps_xpu_and_unknown_names():
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="MPS"):
            detect_device("mps")
    if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        with pytest.raises(ConfigError, match="XPU"):
            detect_device("xpu")
    with pytest.raises(ConfigError, match="Unknown device 'tpu'"):
        detect_device("tpu")
    with pytest.raises(ConfigError, match="Unknown device"):
        detect_device("cuda:x")


def test_dtype_names():
    cpu = detect_device("cpu")
    assert dtype_name(None, cpu) == "float32"
    assert dtype_name("auto", cpu) == "float32"
    assert dtype_name("bf16", cpu) == "bfloat16"
    assert dtype_name("torch.float16", cpu) == "float16"
    assert torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ConfigError, match="Unknown dtype"):
        dtype_name("int3", cpu)


def test_importing_the_hf_layer_imports_no_torch():
    code = (
        "import sys, nbmagic.llm.devices, nbmagic.llm.hf; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
