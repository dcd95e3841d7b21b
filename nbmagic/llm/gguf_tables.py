"""A GGUF file's embedding tables and what an input-embedding row means for its architecture.

Latent mode on llama.cpp feeds hidden states back as input-embedding rows, so it must know
two things the llama.cpp API does not tell:

* **the tables** ``W_in`` (``token_embd.weight``, ``[V, d]``) and ``W_out``
  (``output.weight``, ``[V, d]``; absent when the head is tied to ``W_in``), read straight
  from the file with the ``gguf`` package and de-quantized in row chunks
  (``gguf.quants.dequantize``: F32/F16/BF16/Q8_0/Q4_x/K-quants), for training-free
  realignment;
* **the input scale** (:data:`ARCHITECTURES`): the graph reads a token as
  ``token_scale · W_in[i]`` and an embedding row ``x`` as ``embd_scale · x``. Gemma and
  Gemma2 scale both by √d; Gemma3 scales only tokens (``ubatch.token ? √d : 1``). The
  *effective* embedding of token ``i`` (what the first layer sees, transformers'
  ``embed_tokens(ids)``) is ``token_scale · W_in[i]``, and the row to write for an
  effective vector ``e`` is ``e / embd_scale``.

Positions: latent rows take one position each. M-RoPE models (Qwen2-VL family) take several
per row and are refused, as is any architecture not in the table (its graph may scale or
reshape inputs in ways not checked here). Chat is unaffected by either refusal.

numpy and gguf only: no torch, no llama_cpp.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmagic.errors import BackendNotInstalledError, ConfigError


@dataclass(frozen=True)
class InputScale:
    """How a graph scales its inputs: ``"1"`` or ``"sqrt_d"`` for tokens and for embedding rows."""

    token: str = "1"
    embd: str = "1"

    def factors(self, d: int) -> tuple[float, float]:
        """``(token_scale, embd_scale)`` for width ``d``."""

        def value(kind: str) -> float:
            return math.sqrt(d) if kind == "sqrt_d" else 1.0

        return value(self.token), value(self.embd)


_PLAIN = InputScale()
#: architectures (``general.architecture``) whose latent inputs are covered, and how they scale.
#: Each was checked in llama.cpp's graph (src/models/<arch>.cpp): one position per row, input
#: width ``n_embd``, and the input scale given here.
ARCHITECTURES: dict[str, InputScale] = {
    **{arch: _PLAIN for arch in (
        "llama", "mistral3", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "phi3", "smollm3", "olmo2",
        "starcoder2", "stablelm", "internlm2", "exaone4", "glm4",
    )},
    "gemma": InputScale("sqrt_d", "sqrt_d"),
    "gemma2": InputScale("sqrt_d", "sqrt_d"),
    "gemma3": InputScale("sqrt_d", "1"),
}

#: llama.cpp rope types that take several positions per token (``LLAMA_ROPE_TYPE_MROPE``,
#: ``_IMROPE``, ``_VISION``)
MULTI_POSITION_ROPE = {8: "M-RoPE", 40: "interleaved M-RoPE", 24: "vision RoPE"}


def latent_scale(arch: str, rope_type: int | None = None) -> InputScale:
    """The input scale of ``arch``; a :class:`ConfigError` saying why when latent mode does not cover it."""
    if rope_type in MULTI_POSITION_ROPE:
        raise ConfigError(
            f"Latent mode does not cover the {arch} architecture: it uses {MULTI_POSITION_ROPE[rope_type]} "
            "(several positions per input row). Chat works; use mode='text' for RecursiveMAS."
        )
    scale = ARCHITECTURES.get(arch)
    if scale is None:
        raise ConfigError(
            f"Latent mode does not cover the {arch or 'unknown'} architecture yet (covered: "
            f"{', '.join(sorted(ARCHITECTURES))}). Chat works; use mode='text' for RecursiveMAS, "
            "or an hf: copy of the model for latent mode through transformers."
        )
    return scale


def latent_support(metadata: dict[str, str]) -> str | None:
    """None when a GGUF's architecture is covered, else the reason it is not (for doctor)."""
    try:
        latent_scale(metadata.get("general.architecture", ""))
    except ConfigError as exc:
        return exc.message
    return None


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise BackendNotInstalledError(
            "Latent mode on GGUF models reads the embedding tables with the gguf package: "
            "pip install 'nbmagic[gguf]'"
        ) from None
    return gguf


class GGUFTables:
    """The input and output embedding tables of one GGUF file, memory-mapped and de-quantized
    lazily, in row chunks.

    The header is walked here (keys skipped, tensor infos read) instead of with
    ``gguf.GGUFReader``, which decodes every metadata string (a 150 k-token vocabulary:
    seconds); ``gguf.quants.dequantize`` does the de-quantization.
    """

    def __init__(self, path: str | Path) -> None:
        _gguf()
        self.path = Path(path)
        try:
            self._tensors, self._data_start = _tensor_index(self.path)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{self.path}: not a readable GGUF file ({exc}).") from None
        if "token_embd.weight" not in self._tensors:
            raise ConfigError(f"{self.path} has no token_embd.weight table: latent mode needs it.")

    @property
    def tied(self) -> bool:
        """No ``output.weight``: the output head is the input table (``W_out = W_in``)."""
        return "output.weight" not in self._tensors

    @property
    def shape(self) -> tuple[int, int]:
        """``(V, d)`` of the input table (GGUF stores shapes innermost-first: reversed here)."""
        dims = self._tensors["token_embd.weight"][0]
        return int(dims[1]), int(dims[0])

    def rows(self, name: str, start: int, stop: int) -> Any:
        """Rows ``start:stop`` of table ``name`` (``token_embd`` or ``output``) as float32 ``[n, d]``."""
        import numpy as np

        gguf = _gguf()
        dims, kind, offset = self._tensors[f"{name}.weight"]
        d, v = int(dims[0]), int(dims[1])
        qtype = gguf.GGMLQuantizationType(kind)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = d // block * size
        raw = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._data_start + offset, shape=(v, row_bytes))
        chunk = np.asarray(raw[start:stop])
        if qtype == gguf.GGMLQuantizationType.F32:
            return chunk.view(np.float32).reshape(stop - start, d).copy()
        if qtype == gguf.GGMLQuantizationType.F16:
            return chunk.view(np.float16).reshape(stop - start, d).astype(np.float32)
        return np.asarray(gguf.quants.dequantize(chunk, qtype), dtype=np.float32).reshape(stop - start, d)

    def chunks(self, rows: int, size: int = 8192) -> Iterator[tuple[Any, Any]]:
        """``(W_in[k:k+size], W_out[k:k+size])`` over the first ``rows`` rows (``W_out = W_in`` when tied)."""
        for start in range(0, rows, size):
            stop = min(rows, start + size)
            w_in = self.rows("token_embd", start, stop)
            yield w_in, (w_in if self.tied else self.rows("output", start, stop))


#: byte sizes of GGUF's scalar metadata value types (8 = string, 9 = array)
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _Header:
    """A forward reader of a GGUF header: strings, scalars, skipped values."""

    def __init__(self, f: Any) -> None:
        import struct

        self.f, self.struct = f, struct

    def num(self, fmt: str) -> Any:
        return self.struct.unpack("<" + fmt, self.f.read(self.struct.calcsize("<" + fmt)))[0]

    def string(self) -> bytes:
        return self.f.read(self.num("Q"))

    def skip(self, kind: int) -> None:
        if kind == 8:
            self.f.seek(self.num("Q"), 1)
        elif kind == 9:
            inner, count = self.num("I"), self.num("Q")
            if inner in _SCALAR_SIZES:
                self.f.seek(_SCALAR_SIZES[inner] * count, 1)
            else:
                for _ in range(count):
                    self.skip(inner)
        else:
            self.f.seek(_SCALAR_SIZES[kind], 1)


def _tensor_index(path: Path) -> tuple[dict[str, tuple[list[int], int, int]], int]:
    """``{name: (dims innermost-first, ggml type, offset)}`` and where tensor data starts."""
    with open(path, "rb") as f:
        h = _Header(f)
        if f.read(4) != b"GGUF":
            raise ValueError("bad magic")
        h.num("I")
        n_tensors, n_kv = h.num("Q"), h.num("Q")
        alignment = 32
        for _ in range(n_kv):
            key, kind = h.string(), h.num("I")
            if key == b"general.alignment" and kind in (4, 5):
                alignment = int(h.num("I"))
            else:
                h.skip(kind)
        tensors = {}
        for _ in range(n_tensors):
            name = h.string().decode("utf-8")
            dims = [int(h.num("Q")) for _ in range(h.num("I"))]
            tensors[name] = (dims, int(h.num("I")), int(h.num("Q")))
        start = f.tell()
    return tensors, (start + alignment - 1) // alignment * alignment


#: ridge regulariser of training-free realignment (LatentMAS: 1e-5, float32 normal equations)
RIDGE_LAMBDA = 1e-5


class NumpyRealignment:
    """Training-free inner link on numpy arrays: ``e = rescale(h·W_a)``.

    ``W_a = (W_outᵀW_out + λI)⁻¹ W_outᵀ W_in`` (``[d, d]``, accumulated over row chunks of
    the vocabulary in float64, solved once) maps the output space onto the effective input
    space; each ``e`` is then rescaled to ``target_norm``, the mean norm of effective input
    embeddings ``token_scale · ||W_in[i]||``. Tied heads (``W_out = W_in``) give ``W_a = I``
    up to λ, so no solve is run: the rescale is what matters there.
    """

    def __init__(self, W_a: Any, target_norm: float) -> None:
        import numpy as np

        self.W_a = np.asarray(W_a, dtype=np.float32)
        self.target_norm = float(target_norm)

    @classmethod
    def from_tables(
        cls, tables: GGUFTables, rows: int, token_scale: float = 1.0, lam: float = RIDGE_LAMBDA
    ) -> NumpyRealignment:
        """Solve over the first ``rows`` rows (the real tokens) of ``tables``."""
        import numpy as np

        d = tables.shape[1]
        gram = np.zeros((d, d), np.float64)
        cross = np.zeros((d, d), np.float64)
        norm_sum = 0.0
        for w_in, w_out in tables.chunks(rows):
            w_in = w_in.astype(np.float64) * token_scale
            norm_sum += float(np.linalg.norm(w_in, axis=-1).sum())
            if not tables.tied:
                w_out = w_out.astype(np.float64)
                gram += w_out.T @ w_out
                cross += w_out.T @ w_in
        W_a = np.eye(d) if tables.tied else np.linalg.solve(gram + lam * np.eye(d), cross)
        return cls(W_a, norm_sum / max(1, rows))

    def __call__(self, h: Any) -> Any:
        import numpy as np

        e = np.asarray(h, dtype=np.float32) @ self.W_a
        norm = np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-6)
        return (e * (self.target_norm / norm)).astype(np.float32)


def read_architecture(path: str | Path) -> str:
    """``general.architecture`` from a GGUF header, without reading tensors or the vocabulary
    (it is the first key llama.cpp's writers emit, so this reads a few hundred bytes); "" if absent."""
    import struct

    try:
        with open(path, "rb") as f:
            h = _Header(f)
            if f.read(4) != b"GGUF":
                return ""
            h.num("I")
            h.num("Q")
            for _ in range(h.num("Q")):
                key, kind = h.string(), h.num("I")
                if key == b"general.architecture" and kind == 8:
                    return h.string().decode("utf-8", "replace")
                h.skip(kind)
    except (OSError, struct.error, KeyError):
        return ""
    return ""


def latent_backends(path: str | Path, backends: list[str]) -> str:
    """One line for ``doctor``: which of the installed ``backends`` run latent mode on this file."""
    parts = []
    if "gguf" in backends:
        reason = latent_support({"general.architecture": read_architecture(path)})
        parts.append("gguf (llama.cpp)" if reason is None else f"not gguf ({reason.split(':')[0]})")
    if "hf" in backends:
        parts.append("hf (transformers)")
    return "latent mode: " + (", ".join(parts) if parts else "no backend installed")
