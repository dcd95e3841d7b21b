"""Which accelerator to run local models on, and in which dtype: decided in one place.

Order when nothing is asked for: CUDA (NVIDIA), ROCm (AMD, which PyTorch also calls
``cuda``), Intel XPU, Apple MPS, then the CPU. ``prefer=`` or the ``NBMAGIC_DEVICE``
environment variable pick one explicitly (``cuda``, ``cuda:1``, ``rocm``, ``xpu``, ``mps``,
``cpu`` or ``auto``); asking for one that is not there is a :class:`ConfigError`, never a
silent fall back, so a user who wanted the GPU learns that they are not on it.

dtype: bfloat16 where the hardware computes it natively (Ampere+ CUDA, ROCm with bf16,
XPU), float16 on older CUDA and on MPS, float32 on the CPU (bf16 matmuls on most CPUs
are slower than fp32, and fp16 ones are not supported everywhere).

torch is imported inside the functions: importing this module stays free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nbmagic.errors import BackendNotInstalledError, ConfigError

KINDS = ("cuda", "rocm", "xpu", "mps", "cpu")
ENV_VAR = "NBMAGIC_DEVICE"

_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


@dataclass(frozen=True)
class DeviceInfo:
    """Where a model runs: ``kind`` (cuda|rocm|xpu|mps|cpu), the torch device string,
    a human name, the dtype name chosen for it, and why this device was picked."""

    kind: str
    torch_device: str
    name: str
    dtype: str
    reason: str

    def describe(self) -> str:
        return f"{self.kind} ({self.name}, {self.dtype}): {self.reason}"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendNotInstalledError(
            "Local models need PyTorch: pip install 'nbmagic[local]'"
        ) from None
    return torch


def _cuda_kind(torch: Any) -> str:
    return "rocm" if getattr(torch.version, "hip", None) else "cuda"


def _cuda_ok(torch: Any) -> bool:
    try:
        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0
    except Exception:  # broken driver install: treat as absent
        return False


def _xpu_ok(torch: Any) -> bool:
    xpu = getattr(torch, "xpu", None)
    try:
        return bool(xpu is not None and xpu.is_available())
    except Exception:
        return False


def _mps_ok(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:
        return False


def _info(torch: Any, kind: str, index: int, reason: str) -> DeviceInfo:
    if kind in ("cuda", "rocm"):
        name = torch.cuda.get_device_name(index)
        try:
            bf16 = bool(torch.cuda.is_bf16_supported())
        except Exception:
            bf16 = False
        return DeviceInfo(kind, f"cuda:{index}", name, "bfloat16" if bf16 else "float16", reason)
    if kind == "xpu":
        try:
            name = torch.xpu.get_device_name(index)
        except Exception:
            name = "Intel XPU"
        return DeviceInfo("xpu", f"xpu:{index}", name, "bfloat16", reason)
    if kind == "mps":
        return DeviceInfo("mps", "mps", "Apple Metal (MPS)", "float16", reason)
    return DeviceInfo("cpu", "cpu", "CPU", "float32", reason)


def _parse(prefer: Any) -> tuple[str, int]:
    text = str(prefer).strip().lower()  # a torch.device reads as "cuda:0"
    kind, _, idx = text.partition(":")
    if kind == "gpu":
        kind = "cuda"
    if kind not in (*KINDS, "auto") or (idx and not idx.isdigit()):
        raise ConfigError(
            f"Unknown device {prefer!r}: use one of auto, cuda, cuda:N, rocm, xpu, mps, cpu."
        )
    return kind, int(idx or 0)


def detect_device(prefer: str | None = None) -> DeviceInfo:
    """Pick the device for local models (see the module docstring for the rules)."""
    torch = _torch()
    source = "asked for"
    if prefer is None:
        prefer = os.environ.get(ENV_VAR) or None
        source = f"set by {ENV_VAR}"
    if prefer is None or _parse(prefer)[0] == "auto":
        if _cuda_ok(torch):
            kind = _cuda_kind(torch)
            return _info(torch, kind, 0, f"{'ROCm' if kind == 'rocm' else 'CUDA'} GPU found")
        if _xpu_ok(torch):
            return _info(torch, "xpu", 0, "Intel XPU found")
        if _mps_ok(torch):
            return _info(torch, "mps", 0, "Apple MPS found")
        return _info(torch, "cpu", 0, "no GPU found (CUDA, ROCm, XPU, MPS)")

    kind, index = _parse(prefer)
    if kind in ("cuda", "rocm"):
        if not _cuda_ok(torch):
            raise ConfigError(
                f"Device {prefer!r} ({source}) is not available: this PyTorch "
                f"({torch.__version__}) sees no {'ROCm' if kind == 'rocm' else 'CUDA'} GPU. "
                "Install a GPU build of torch, or use device='cpu' / unset "
                f"{ENV_VAR}."
            )
        real = _cuda_kind(torch)
        if kind != real:
            raise ConfigError(
                f"Device {prefer!r} ({source}) is not available: the GPU here is "
                f"{real.upper() if real == 'rocm' else 'CUDA'}; use device={real!r}."
            )
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"Device {prefer!r} ({source}) is not available: only {count} GPU(s) "
                f"(cuda:0..cuda:{count - 1})."
            )
        return _info(torch, kind, index, source)
    if kind == "xpu":
        if not _xpu_ok(torch):
            raise ConfigError(
                f"Device {prefer!r} ({source}) is not available: this PyTorch sees no Intel XPU."
            )
        return _info(torch, "xpu", index, source)
    if kind == "mps":
        if not _mps_ok(torch):
            raise ConfigError(
                f"Device {prefer!r} ({source}) is not available: Apple MPS needs macOS on "
                "Apple silicon with a PyTorch built for it."
            )
        return _info(torch, "mps", 0, source)
    return _info(torch, "cpu", 0, source)


def dtype_name(dtype: str | None, info: DeviceInfo) -> str:
    """Normalise a user dtype (``bf16``, ``float16``, ``auto``, None) to a torch dtype name."""
    if dtype is None or str(dtype).lower() in ("auto", ""):
        return info.dtype
    name = _DTYPE_ALIASES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigError(f"Unknown dtype {dtype!r}: use auto, bfloat16, float16 or float32.")
    return name


def torch_dtype(name: str) -> Any:
    """The torch dtype object for a dtype name (``bfloat16`` -> ``torch.bfloat16``)."""
    torch = _torch()
    return getattr(torch, _DTYPE_ALIASES.get(name, name))
