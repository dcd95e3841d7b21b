"""A quantized GGUF's first chat, tried in a child process before the kernel risks it.

llama.cpp's CPU kernels are chosen when the library is compiled. A *native* build carries
instructions of the machine it was built on (AVX-512, AMX, ...); on a CPU that advertises
but cannot run them, the first matrix product on quantized weights dies with SIGILL and
takes the Python process with it. In a notebook that is the user's kernel and every
variable in it, with no message at all.

So before a quantized file is loaded in-process, a short generation runs in a child
process. A child that dies of a signal becomes one clear :class:`BackendCrashError`
naming the rebuild that fixes it; a child that succeeds is remembered (keyed by the
llama.cpp library and the model file) so the check costs about a second once, not per load.
F32/F16 files never reach the quantized kernels and skip the check.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbmagic.errors import NbmagicError

#: general.file_type values that need no quantized kernel (F32, F16)
_UNQUANTIZED = {"0", "1"}

REBUILD_HINT = (
    "Rebuild llama-cpp-python portable: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --no-cache-dir "
    "--force-reinstall --no-deps llama-cpp-python (add -DGGML_CUDA=on, -DGGML_HIP=on, -DGGML_METAL=on "
    "or -DGGML_SYCL=on for a GPU; --no-cache-dir matters: pip's wheel cache ignores CMAKE_ARGS)."
)

_CHILD = """
import sys
import llama_cpp
path, n_gpu_layers = sys.argv[1], int(sys.argv[2])
llm = llama_cpp.Llama(path, n_ctx=256, n_gpu_layers=n_gpu_layers, verbose=False)
out = llm.create_completion("Hello", max_tokens=2, temperature=0)
print(repr(out["choices"][0]["text"]))
"""


class BackendCrashError(NbmagicError):
    """The native library crashed (in a child process) on this model file."""


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    seconds: float
    message: str
    signal_name: str | None = None


def is_quantized(metadata: dict[str, str]) -> bool:
    """Whether the file's weights need llama.cpp's quantized kernels (unknown type: assume so)."""
    file_type = metadata.get("general.file_type")
    return file_type is None or file_type not in _UNQUANTIZED


def smoke_test(
    path: str | os.PathLike[str], *, n_gpu_layers: int = 0, timeout: float = 120.0, python: str | None = None
) -> SmokeResult:
    """Load ``path`` and generate two tokens in a child process; never raises for a crash.

    ``python`` is the interpreter to run the child with (this one by default).
    """
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [python or sys.executable, "-c", _CHILD, str(path), str(n_gpu_layers)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return SmokeResult(False, time.perf_counter() - t0, f"no reply within {timeout:.0f} s")
    seconds = time.perf_counter() - t0
    if proc.returncode == 0:
        return SmokeResult(True, seconds, f"generated {proc.stdout.strip()}")
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        what = (
            "an instruction this CPU cannot run (the build is native to another CPU)"
            if name == "SIGILL"
            else "a crash inside llama.cpp"
        )
        return SmokeResult(False, seconds, f"llama.cpp died with {name}: {what}. {REBUILD_HINT}", name)
    said = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return SmokeResult(False, seconds, f"the test load failed: {said}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _library_key() -> str:
    """Identity of the installed llama.cpp build (its shared library's path, size and time)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    folder = Path(spec.origin).parent if spec and spec.origin else None
    parts = []
    if folder is not None:
        for lib in sorted(folder.glob("lib/*")) or sorted(folder.glob("*.so")):
            st = lib.stat()
            parts.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts) or "unknown"


def _marker(path: Path, n_gpu_layers: int) -> Path:
    from nbmagic.llm.gguf_hf import cache_root

    st = path.stat()
    raw = f"{_library_key()}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{n_gpu_layers != 0}"
    key = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache_root() / "gguf-preflight" / f"{key}.ok"


def ensure_safe(
    path: Path, metadata: dict[str, str], *, n_gpu_layers: int = 0, python: str | None = None
) -> None:
    """Raise :class:`BackendCrashError` if a quantized ``path`` crashes llama.cpp in a child process."""
    if not is_quantized(metadata):
        return
    marker = _marker(path, n_gpu_layers)
    if marker.exists():
        return
    result = smoke_test(path, n_gpu_layers=n_gpu_layers, python=python)
    if result.signal_name is not None:
        raise BackendCrashError(f"gguf:{path}: a test generation in a separate process crashed: {result.message}")
    if result.ok:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(result.message, encoding="utf-8")
        except OSError:
            pass  # unwritable cache: the check simply runs again next time
    # a failure that is not a crash (a timeout, a load error) is left to the in-process load,
    # whose own error message is more precise
