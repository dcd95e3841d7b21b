"""Latent mode through llama.cpp: the :class:`~nbmagic.llm.latent.LatentBackend` of a GGUF model.

Built on llama-cpp-python's low-level API, numpy only (no torch):

* a second llama.cpp **context on the chat model's weights** (one copy of the weights in
  memory), with ``embeddings=True``, ``pooling_type=NONE`` and a unified KV cache over up
  to :data:`MAX_SEQUENCES` sequences: one sequence per batch row, forks share cells;
* **input rows** go in through a ``llama_batch_init(n, d, 1)`` batch (``batch.embd``
  ``[n, d]`` float32, ``token`` NULL), tokens through a ``llama_batch_init(n, 0, 1)``
  batch; one input type per ``llama_decode``, positions consecutive per sequence;
* **hidden states** come back from ``llama_get_embeddings_ith`` (``result_norm``, after the
  final norm), **logits** from ``llama_get_logits_ith`` of the same decode.
  ``llama_set_embeddings`` is switched on only for calls whose every row is read back:
  with it on, llama.cpp outputs (and runs the head on) every row of a call.

Per row and step, with ``s_e`` the graph's scale of embedding rows (:mod:`.gguf_tables`):

    prefill      parts p_1 … p_k (token ids or effective rows [n, d]) -> cache;
                 the last position alone in its own call: h_0 [d], logits_0 [V]
    latent step  x_t = link(h_{t-1}) / s_e  ->  h_t = result_norm(x_t | cache)   [R, d]
    decode       y_j ~ softmax(logits_{j-1} / T) (argmax at T = 0), until end of turn

A run holds :meth:`LlamaCppLatent.session`: exclusive use of the context, every sequence
cleared when it ends (a Ctrl-C mid-rollout included), so the next run starts empty.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.llm.gguf_tables import GGUFTables, NumpyRealignment, latent_scale
from nbmagic.llm.hf import TextStream, fallback_chat_text
from nbmagic.llm.latent import DecodeResult
from nbmagic.llm.native_logs import quiet_native_logs

if TYPE_CHECKING:
    from nbmagic.llm.llamacpp import LlamaCppModel

#: sequences of the latent context (agents of a stage, forks of shared prefixes, one run)
MAX_SEQUENCES = 64
#: cells of the latent context's KV cache (a second cache next to the chat one), shared by
#: every sequence of a run: several agents' prompts, their forks and thoughts
LATENT_CTX = 8192


@dataclass
class LlamaLatentState:
    """``R`` rows, each a llama.cpp sequence ``seqs[r]`` holding ``lengths[r]`` positions;
    the last position's hidden state ``[R, d]`` and logits ``[R, V]``."""

    seqs: list[int]
    lengths: list[int]
    last_hidden: np.ndarray
    last_logits: np.ndarray

    @property
    def batch_size(self) -> int:
        return len(self.seqs)


class _Detokenizer:
    """What :class:`~nbmagic.llm.hf.TextStream` needs of a tokenizer: ``decode(ids)``."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        if not ids:
            return ""
        return bytes(self.llm.detokenize(list(ids), special=not skip_special_tokens)).decode("utf-8", "replace")


class LlamaCppLatent:
    """Latent access to a loaded :class:`~nbmagic.llm.llamacpp.LlamaCppModel` (see module docstring)."""

    kind = "gguf"

    def __init__(self, owner: LlamaCppModel) -> None:
        import llama_cpp as lc

        self.owner = owner
        self.lc = lc
        llm = owner._live()
        self.llm = llm
        model = llm._model.model
        arch = owner.metadata.get("general.architecture", "")
        scale = latent_scale(arch, int(lc.llama_model_rope_type(model)))
        d = int(lc.llama_model_n_embd(model))
        width = int(lc.llama_model_n_embd_inp(model)) if hasattr(lc, "llama_model_n_embd_inp") else d
        if width != d:
            raise ConfigError(f"Latent mode does not cover {arch}: its input rows are {width} wide, "
                              f"its hidden states {d}. Chat works; use mode='text'.")
        self.arch, self.hidden_size = arch, d
        #: the graph reads token i as token_scale·W_in[i] and an embedding row x as embd_scale·x
        self.token_scale, self.embd_scale = scale.factors(d)
        self.vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        params = lc.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = LATENT_CTX
        params.embeddings = True
        params.pooling_type = lc.LLAMA_POOLING_TYPE_NONE
        params.n_seq_max = min(MAX_SEQUENCES, int(lc.llama_max_parallel_sequences()))
        params.kv_unified = True  # forks share cells instead of copying them

        log: list[str] = []
        with quiet_native_logs(log):  # "default pooling_type is [-1], but [0] was specified"
            self.ctx = lc.llama_init_from_model(model, params)
        if not self.ctx:
            raise ConfigError(f"gguf:{owner.name}: llama.cpp could not create a latent context "
                              f"({params.n_ctx} tokens; out of memory?). Chat works; use mode='text'.")
        self.n_ctx = int(lc.llama_n_ctx(self.ctx))
        self.n_batch = int(lc.llama_n_batch(self.ctx))
        self._mem = lc.llama_get_memory(self.ctx)
        self._tok = lc.llama_batch_init(self.n_batch, 0, 1)
        self._emb = lc.llama_batch_init(self.n_batch, d, 1)
        self._rows = np.ctypeslib.as_array(self._emb.embd, shape=(self.n_batch, d))
        self._n_seq = int(params.n_seq_max)
        self._free = list(range(self._n_seq))[::-1]
        self._lock = threading.RLock()
        self._tables: GGUFTables | None = None
        self._realign: NumpyRealignment | None = None
        self._detok = _Detokenizer(llm)

    # -- life cycle ----------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Exclusive use for one run; the cache is emptied after it, whatever happened."""
        with self._lock:
            try:
                yield
            finally:
                self.reset()

    def reset(self) -> None:
        """Drop every sequence (the cache is empty afterwards)."""
        if self.ctx is not None:
            self.lc.llama_memory_clear(self._mem, True)
        self._free = list(range(self._n_seq))[::-1]

    def close(self) -> None:
        """Free the context and batches (the model's weights belong to the chat model)."""
        ctx, self.ctx = self.ctx, None
        if ctx:
            self.lc.llama_batch_free(self._tok)
            self.lc.llama_batch_free(self._emb)
            self.lc.llama_free(ctx)

    def _take(self) -> int:
        if not self._free:
            raise NbmagicError(
                f"gguf:{self.owner.name}: the latent context has no free sequence left "
                f"({MAX_SEQUENCES}); use fewer agents per stage."
            )
        return self._free.pop()

    def release(self, state: LlamaLatentState | None) -> None:
        if state is None or self.ctx is None:
            return
        for s in state.seqs:
            if s not in self._free:
                self.lc.llama_memory_seq_rm(self._mem, s, -1, -1)
                self._free.append(s)

    # -- text ----------------------------------------------------------------------------

    def chat_text(self, messages: Sequence[dict[str, str]]) -> tuple[str, list[int]]:
        template = self.owner.metadata.get("tokenizer.chat_template")
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text(tok: int) -> str:
                return self.llm._model.token_get_text(tok) if tok != -1 else ""

            fmt = Jinja2ChatFormatter(template, text(self.llm.token_eos()), text(self.llm.token_bos()))
            return fmt(messages=list(messages)).prompt, []
        bos = int(self.llm.token_bos())
        return fallback_chat_text(list(messages), True), ([bos] if bos >= 0 else [])

    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    # -- tables --------------------------------------------------------------------------

    @property
    def tables(self) -> GGUFTables:
        """The file's embedding tables (opened once)."""
        if self._tables is None:
            self._tables = GGUFTables(self.owner.path)
        return self._tables

    def realignment(self) -> NumpyRealignment:
        """Training-free inner link from this file's tables, solved once (a few seconds: the
        vocabulary's rows are de-quantized in chunks)."""
        if self._realign is None:
            rows = min(self.n_vocab, self.tables.shape[0])
            self._realign = NumpyRealignment.from_tables(self.tables, rows, self.token_scale)
        return self._realign

    def bridge_from(self, source: Any) -> Any:
        raise ConfigError(
            f"Latent thoughts between two different GGUF models ({getattr(source.owner, 'name', '?')} -> "
            f"{self.owner.name}) need trained outer links; training-free latent mode on llama.cpp "
            "runs every agent on one model. Use one gguf: model, or mode='text'."
        )

    def trained(self, module: Any) -> Callable[[np.ndarray], np.ndarray]:
        """A trained link (torch module) applied per step on numpy rows (needs torch)."""
        import torch

        def link(h: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = module(torch.from_numpy(np.ascontiguousarray(h, dtype=np.float32)))
            return out.float().numpy()

        return link

    def apply_link(self, link: Callable[[np.ndarray], Any] | None, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x if link is None else np.asarray(link(x), dtype=np.float32)

    def input_rows(self, ids: Sequence[int]) -> np.ndarray:
        """``token_scale · W_in[ids]``: ``[n, d]`` float32, what the first layer reads for those tokens."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.hidden_size), np.float32)
        order = np.argsort(ids)
        rows = np.empty((ids.size, self.hidden_size), np.float32)
        for k in order:  # row by row: quantized tables de-quantize per row block
            rows[k] = self.tables.rows("token_embd", int(ids[k]), int(ids[k]) + 1)[0]
        return rows * np.float32(self.token_scale)

    # -- the five operations ----------------------------------------------------------------

    def prefill(self, rows: Sequence[Sequence[Any]], state: LlamaLatentState | None = None) -> LlamaLatentState:
        """Read each row's parts (token id lists, effective rows ``[n, d]``) in order on its own
        sequence; the last position of a row goes alone, with its hidden state and logits read back."""
        self._live()
        if state is not None and len(rows) != state.batch_size:
            raise ConfigError(f"Batch of {len(rows)} does not match the state's {state.batch_size}.")
        if state is None:
            seqs = [self._take() for _ in rows]
            lengths = [0] * len(rows)
            hidden = np.zeros((len(rows), self.hidden_size), np.float32)
            logits = np.zeros((len(rows), self.n_vocab), np.float32)
        else:
            seqs, lengths = list(state.seqs), list(state.lengths)
            hidden, logits = state.last_hidden.copy(), state.last_logits.copy()
        for r, row in enumerate(rows):
            parts = [self._part(p) for p in row]
            parts = [p for p in parts if len(p)]
            if not parts:
                if state is None:
                    raise ConfigError("A prompt in the batch is empty: give every row at least one token.")
                continue
            *head, last = parts
            for part in [*head, last[:-1]]:
                lengths[r] = self._feed(part, seqs[r], lengths[r])
            lengths[r] = self._feed(last[-1:], seqs[r], lengths[r], output=True)
            hidden[r], logits[r] = self._read(0)
        return LlamaLatentState(seqs, lengths, hidden, logits)

    def latent_steps(
        self,
        state: LlamaLatentState,
        steps: int,
        link: Callable[[np.ndarray], Any] | None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, LlamaLatentState]:
        """``steps`` thoughts per row, all rows in one decode per step: ``[R, steps, d]``."""
        if steps < 0:
            raise ConfigError(f"latent steps must be >= 0, got {steps}.")
        self._live()
        n, d = state.batch_size, self.hidden_size
        thoughts = np.zeros((n, steps, d), np.float32)
        h, lengths = state.last_hidden.copy(), list(state.lengths)
        logits = state.last_logits.copy()
        for t in range(steps):
            e = h if link is None else np.asarray(link(h), dtype=np.float32)
            if e.shape != (n, d):
                raise ConfigError(f"A link returned {list(e.shape)} for {n} rows of width {d}.")
            b = self._emb
            self._rows[:n] = e / np.float32(self.embd_scale)
            for i in range(n):
                self._slot(b, i, state.seqs[i], lengths[i], True)
                lengths[i] += 1
            b.n_tokens = n
            self._decode(b, embeddings=True)
            last = t == steps - 1  # logits only matter where a decode may follow: after the last step
            for i in range(n):
                h[i] = self._hidden(i)
                if last:
                    logits[i] = self._logits(i)
            thoughts[:, t] = h
            if on_step is not None:
                on_step(t + 1, steps)
        return thoughts, LlamaLatentState(list(state.seqs), lengths, h, logits)

    def decode(
        self,
        state: LlamaLatentState,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        on_token: Callable[[str], None] | None = None,
        seed: int | None = None,
    ) -> DecodeResult:
        """Sample per row from the state's logits until end of turn, a stop string or the cap."""
        self._live()
        n = state.batch_size
        streams = [TextStream(self._detok, stop, on_token if r == 0 else None) for r in range(n)]
        done, reasons, counts = [False] * n, ["length"] * n, [0] * n
        logits, lengths = state.last_logits.copy(), list(state.lengths)
        rng = np.random.default_rng(seed)
        for step in range(max_new_tokens):
            picked: list[tuple[int, int]] = []
            for r in range(n):
                if done[r]:
                    continue
                tok = sample(logits[r], temperature, top_p, rng)
                counts[r] += 1
                if self.lc.llama_vocab_is_eog(self.vocab, tok) or streams[r].push(tok):
                    done[r], reasons[r] = True, "stop"
                else:
                    picked.append((r, tok))
            if not picked or step == max_new_tokens - 1:
                break
            b = self._tok
            for i, (r, tok) in enumerate(picked):
                b.token[i] = tok
                self._slot(b, i, state.seqs[r], lengths[r], True)
                lengths[r] += 1
            b.n_tokens = len(picked)
            self._decode(b, embeddings=False)
            for i, (r, _) in enumerate(picked):
                logits[r] = self._logits(i)
        return DecodeResult([s.finish() for s in streams], counts, reasons)

    def fork(self, state: LlamaLatentState) -> LlamaLatentState:
        """The same cache on fresh sequences (``llama_memory_seq_cp``: shared cells, no copy)."""
        self._live()
        seqs = []
        for s in state.seqs:
            dst = self._take()
            self.lc.llama_memory_seq_cp(self._mem, s, dst, -1, -1)
            seqs.append(dst)
        return LlamaLatentState(seqs, list(state.lengths), state.last_hidden.copy(), state.last_logits.copy())

    # -- internals ------------------------------------------------------------------------

    def _live(self) -> None:
        if self.ctx is None:
            raise ConfigError(f"gguf:{self.owner.name} was closed; load it again with load_model('gguf:...').")

    def _part(self, part: Any) -> Any:
        if isinstance(part, np.ndarray) and part.dtype.kind == "f":
            if part.ndim != 2 or part.shape[1] != self.hidden_size:
                raise ConfigError(f"Embedding rows for gguf:{self.owner.name} must be [n, {self.hidden_size}], "
                                  f"got {list(part.shape)}.")
            return part.astype(np.float32, copy=False)
        return [int(t) for t in part]

    @staticmethod
    def _slot(b: Any, i: int, seq: int, pos: int, output: bool) -> None:
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if output else 0

    def _feed(self, part: Any, seq: int, start: int, output: bool = False) -> int:
        """Decode ``part`` on ``seq`` from position ``start`` in ``n_batch`` chunks; return the next position."""
        embd = isinstance(part, np.ndarray)
        for k in range(0, len(part), self.n_batch):
            chunk = part[k : k + self.n_batch]
            b = self._emb if embd else self._tok
            if embd:
                self._rows[: len(chunk)] = chunk / np.float32(self.embd_scale)
            for i in range(len(chunk)):
                if not embd:
                    b.token[i] = chunk[i]
                self._slot(b, i, seq, start + k + i, output and k + i == len(part) - 1)
            b.n_tokens = len(chunk)
            self._decode(b, embeddings=output)
        return start + len(part)

    def _decode(self, batch: Any, *, embeddings: bool) -> None:
        self.lc.llama_set_embeddings(self.ctx, embeddings)
        rc = self.lc.llama_decode(self.ctx, batch)
        if rc == 1:
            raise ConfigError(
                f"gguf:{self.owner.name}: the latent context ({self.n_ctx} tokens) is full. "
                "Use fewer latent steps or rounds, or a shorter question."
            )
        if rc != 0:
            raise NbmagicError(f"gguf:{self.owner.name}: llama.cpp failed in a latent step (llama_decode {rc}).")

    def _logits(self, i: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _hidden(self, i: int) -> np.ndarray:
        """Hidden state (after the final norm) of output row ``i`` of the last decode."""
        ptr = self.lc.llama_get_embeddings_ith(self.ctx, i)
        if not ptr:
            raise NbmagicError(f"gguf:{self.owner.name}: llama.cpp returned no hidden state for row {i}.")
        return np.ctypeslib.as_array(ptr, shape=(self.hidden_size,)).copy()

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Hidden state and logits of output row ``i`` of the last decode."""
        return self._hidden(i), self._logits(i)


def sample(logits: np.ndarray, temperature: float | None, top_p: float | None, rng: np.random.Generator) -> int:
    """One token id from ``logits [V]``: argmax at temperature 0, else nucleus sampling."""
    if not temperature or temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and 0 < top_p < 1:
        order = np.argsort(-p)
        sorted_p = p[order]
        keep = np.cumsum(sorted_p) - sorted_p < top_p  # always keeps the top token
        p = np.zeros_like(p)
        p[order[keep]] = sorted_p[keep]
        p /= p.sum()
    return int(rng.choice(p.size, p=p))
