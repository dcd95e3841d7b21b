"""Local GGUF files through ``llama-cpp-python``.

All layers go to the GPU when llama.cpp was built with a GPU backend (CUDA, ROCm,
Metal, Vulkan, SYCL); if that load fails (no device at run time, out of memory),
the model is loaded again on the CPU and the reason is kept on
``offload_fallback``, so a slow model is explained rather than mysterious.

The context window defaults to what the model was trained for, capped so the KV cache fits
in a quarter of free memory (:func:`auto_n_ctx`). A quantized file is first tried in a
child process (:mod:`nbmagic.llm.gguf_preflight`): a llama.cpp build that would die with
SIGILL on this CPU becomes one clear error instead of a dead kernel.

llama.cpp's contexts are not thread-safe: calls on one model are serialised with a
lock, so ``achat`` from many tasks is safe (and runs one generation at a time).
``llama_cpp`` is imported on first use only.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import threading
from pathlib import Path
from typing import Any

from nbmagic.errors import BackendNotInstalledError, ConfigError, ModelNotFoundError, NbmagicError
from nbmagic.llm.base import ChatModel, ChatResult, GenerationParams, TokenCallback, Usage
from nbmagic.llm.native_logs import last_lines as _last_lines
from nbmagic.llm.native_logs import quiet_native_logs as _quiet_native_logs
from nbmagic.llm.vision import text_only

#: the context used when the file does not say how long it was trained for
DEFAULT_N_CTX = 4096
MIN_N_CTX = 256
#: ceiling of the automatic context: a 128k-token KV cache would take many GB for a 7B model
MAX_AUTO_N_CTX = 32_768
#: share of available memory the automatic context's KV cache may take
KV_MEMORY_SHARE = 0.25
INSTALL_HINT = "pip install 'nbmagic[gguf]'"
#: what llama-cpp-python raises for a bad request (ctypes' error: a wrong type reached the C API)
_GENERATION_ERRORS = (ValueError, RuntimeError, TypeError, ctypes.ArgumentError)


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"GGUF models need llama-cpp-python: {INSTALL_HINT} "
            f"(add CMAKE_ARGS=-DGGML_CUDA=on for an NVIDIA GPU). ({exc})"
        ) from None
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build has a GPU backend (False if not installed)."""
    try:
        return bool(_llama_cpp().llama_supports_gpu_offload())
    except (NbmagicError, AttributeError):
        return False


class LlamaCppModel(ChatModel):
    """A GGUF model run in-process by llama.cpp."""

    backend = "gguf"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int | None = None,
        n_gpu_layers: int | None = None,
        chat_format: str | None = None,
        default_params: dict[str, Any] | None = None,
        preflight: bool = True,
        **llama_kwargs: Any,
    ) -> None:
        super().__init__(str(path), default_params=default_params)
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            where = "is a folder, not a file" if self.path.is_dir() else "does not exist"
            raise ModelNotFoundError(
                f"gguf:{path}: {self.path} {where}. Give the path of a .gguf file "
                "(e.g. one downloaded from a Hugging Face repo's 'Files' tab)."
            )
        if n_ctx is not None and (not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 0):
            raise ConfigError(
                f"n_ctx must be a non-negative integer (0 = the model's own, None = the model's own "
                f"within memory), not {n_ctx!r}."
            )
        if n_ctx is not None and 0 < n_ctx < MIN_N_CTX:  # llama.cpp rounds small contexts up; its Python side does not
            n_ctx = MIN_N_CTX
        llama_cpp = _llama_cpp()
        #: the file's metadata (architecture, trained context, quantization, chat template)
        self.metadata = read_metadata(llama_cpp, self.path)
        if n_ctx is None:
            n_ctx = auto_n_ctx(self.metadata)
        unknown = sorted(set(llama_kwargs) - _llama_options(llama_cpp))
        if unknown:  # Llama() swallows any keyword: a typo (n_gpu_layer=) would be ignored silently
            raise ConfigError(
                f"gguf:{path} does not take {', '.join(unknown)}. Options are those of llama_cpp.Llama "
                "(n_ctx, n_gpu_layers, n_threads, n_batch, chat_format, seed, ...)."
            )
        self._lock = threading.Lock()
        #: why GPU offload was abandoned, when it was (None if not tried or it worked)
        self.offload_fallback: str | None = None
        kwargs = {"n_ctx": n_ctx, "chat_format": chat_format, "verbose": False, **llama_kwargs}
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_supported() else 0
        if preflight:  # a native build can SIGILL on quantized weights: find out in a child, not here
            from nbmagic.llm.gguf_preflight import ensure_safe

            ensure_safe(self.path, self.metadata, n_gpu_layers=n_gpu_layers)
        self.llm: Any = None
        self._latent: Any = None
        log: list[str] = []
        try:
            with _quiet_native_logs(log):
                self.llm = llama_cpp.Llama(str(self.path), n_gpu_layers=n_gpu_layers, **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            if n_gpu_layers == 0:
                raise self._load_error(exc, log) from None
            self.offload_fallback = _last_lines(log) or f"{type(exc).__name__}: {exc}"
            log.clear()
            try:
                with _quiet_native_logs(log):
                    self.llm = llama_cpp.Llama(str(self.path), n_gpu_layers=0, **kwargs)
            except (ValueError, RuntimeError, OSError) as exc2:
                raise self._load_error(exc2, log) from None
            n_gpu_layers = 0
        except TypeError as exc:  # an option of the wrong type
            raise ConfigError(f"gguf:{path}: bad option for llama.cpp: {exc}") from None
        if chat_format is not None:
            self._check_chat_format(llama_cpp, chat_format)
        #: what llama.cpp printed while loading (warnings stay out of the notebook, kept here)
        self.load_log = "".join(log)
        self.n_gpu_layers = n_gpu_layers
        self._sampling_args = _chat_completion_args(self.llm)

    def _check_chat_format(self, llama_cpp: Any, chat_format: str) -> None:
        """Refuse an unknown ``chat_format`` now, not at the first chat."""
        if chat_format in getattr(self.llm, "_chat_handlers", {}):  # from the file's own templates
            return
        try:
            llama_cpp.llama_chat_format.get_chat_completion_handler(chat_format)
        except Exception as exc:  # llama_cpp's LlamaChatCompletionHandlerNotFoundException
            self.close()
            raise ConfigError(f"gguf:{self.name}: unknown chat_format {chat_format!r}. {exc}") from None

    # -- facts ----------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        """``"gpu"`` when layers were offloaded, else ``"cpu"``."""
        return "gpu" if self.n_gpu_layers != 0 else "cpu"

    @property
    def n_ctx(self) -> int:
        return int(self._live().n_ctx())

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's own tokenizer (no BOS)."""
        if not text:
            return 0
        return len(self._live().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        """Free the model's memory; later calls raise instead of touching freed memory."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        with self._lock:
            latent, self._latent = getattr(self, "_latent", None), None
            if latent is not None:
                latent.close()
            self.llm = None
            if hasattr(llm, "close"):
                llm.close()

    # -- latent access ------------------------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        """``d``: the width of hidden states and input embeddings (0 if the file does not say)."""
        arch = self.metadata.get("general.architecture", "")
        try:
            return int(self.metadata[f"{arch}.embedding_length"])
        except (KeyError, ValueError):
            return 0

    @property
    def supports_latent(self) -> bool:  # type: ignore[override]
        """Whether latent mode covers this file's architecture (:mod:`nbmagic.llm.gguf_tables`)."""
        return self.latent_unsupported_reason is None

    @property
    def latent_unsupported_reason(self) -> str | None:
        """None when latent mode runs on this model, else why not (chat works either way)."""
        from nbmagic.llm.gguf_tables import latent_support

        return latent_support(self.metadata)

    def latent(self) -> Any:
        """The model's :class:`~nbmagic.llm.latent_llamacpp.LlamaCppLatent` (a second llama.cpp
        context on the same weights, made on first use); a :class:`ConfigError` saying why
        when the architecture is not covered."""
        with self._lock:
            self._live()
            if self._latent is None:
                from nbmagic.llm.latent_llamacpp import LlamaCppLatent

                self._latent = LlamaCppLatent(self)
            return self._latent

    def _live(self) -> Any:
        llm = self.llm
        if llm is None:
            raise ConfigError(f"gguf:{self.name} was closed; load it again with load_model('gguf:...').")
        return llm

    def __repr__(self) -> str:
        return f"<LlamaCppModel gguf:{self.name} on {self.device}>"

    # -- calls -------------------------------------------------------------------------------------

    def _chat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: TokenCallback | None
    ) -> ChatResult:
        llama_cpp = _llama_cpp()
        counter = _StepCounter()
        kwargs = self._kwargs(params)
        user_procs = kwargs.pop("logits_processor", None) or []
        kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([counter, *user_procs])
        self._check_fits(messages, params)
        with self._lock:
            llm = self._live()
            if on_token is not None:
                return self._stream(llm, messages, kwargs, on_token, counter, params)
            try:
                resp = llm.create_chat_completion(messages=messages, **kwargs)
            except _GENERATION_ERRORS as exc:
                raise self._generation_error(exc) from None
            return self._from_response(resp)

    def _stream(
        self,
        llm: Any,
        messages: list[dict[str, str]],
        kwargs: dict[str, Any],
        on_token: TokenCallback,
        counter: _StepCounter,
        params: GenerationParams,
    ) -> ChatResult:
        parts: list[str] = []
        finish: str | None = None
        try:
            chunks = llm.create_chat_completion(messages=messages, stream=True, **kwargs)
        except _GENERATION_ERRORS as exc:
            raise self._generation_error(exc) from None
        try:
            while True:
                try:  # only llama.cpp's errors are mapped: what on_token raises is the caller's
                    chunk = next(chunks)
                except StopIteration:
                    break
                except _GENERATION_ERRORS as exc:
                    err = self._generation_error(exc)
                    err.partial = "".join(parts)
                    raise err from None
                for choice in chunk.get("choices", ()):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        parts.append(piece)
                        on_token(piece)
                    finish = choice.get("finish_reason") or finish
        finally:
            chunks.close()  # still under the lock: the next call starts on a finished generation
        # llama-cpp-python sends no usage when streaming: count what the sampler saw
        completion = counter.steps
        if finish == "stop" and not params.stop and completion:
            completion -= 1  # the end-of-sequence token is sampled but not part of the reply
        return ChatResult(
            text="".join(parts),
            model=self.name,
            usage=Usage(counter.prompt_tokens, completion),
            finish_reason=finish,
        )

    def _from_response(self, resp: dict[str, Any]) -> ChatResult:
        choice = resp["choices"][0]
        usage = resp.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            model=self.name,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            finish_reason=choice.get("finish_reason"),
        )

    def _kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs = params.standard()
        unknown = sorted(k for k in params.extra if k not in self._sampling_args)
        if unknown:
            raise ConfigError(
                f"gguf:{self.name} does not take {', '.join(unknown)}. "
                f"It takes: {', '.join(sorted(self._sampling_args))}."
            )
        kwargs.update(params.extra)
        return kwargs

    def _check_fits(self, messages: list[dict[str, str]], params: GenerationParams) -> None:
        """Refuse clearly when the prompt cannot fit (llama.cpp's own error is cryptic)."""
        # contents plus a few tokens of chat template per message; llama.cpp itself shortens
        # max_tokens to what is left, so only a prompt that cannot fit at all is refused
        prompt = sum(self.count_tokens(text_only(m["content"])) + 4 for m in messages)
        if prompt >= self.n_ctx:
            raise ConfigError(
                f"gguf:{self.name}: the prompt (~{prompt} tokens) does not fit the context window "
                f"of {self.n_ctx} tokens. Shorten it, or load the model with a larger n_ctx "
                "(load_model('gguf:...', n_ctx=16384))."
            )

    # -- errors -------------------------------------------------------------------------------------

    def _load_error(self, exc: BaseException, log: list[str]) -> NbmagicError:
        size = self.path.stat().st_size if self.path.exists() else 0
        said = _last_lines(log)
        return ConfigError(
            f"gguf:{self.name}: llama.cpp could not load {self.path} ({size:,} bytes): {exc}"
            + (f" (llama.cpp said: {said})" if said else "")
            + ". "
            "The file may be truncated or corrupt (download it again), not a GGUF model, or use an "
            "architecture this llama-cpp-python is too old for (pip install -U llama-cpp-python)."
        )

    def _generation_error(self, exc: BaseException) -> NbmagicError:
        text = str(exc)
        if isinstance(exc, TypeError | ctypes.ArgumentError):  # e.g. seed="7" reaching the C API
            return ConfigError(f"gguf:{self.name}: a generation option has the wrong type ({text}).")
        if "context" in text.lower() or "exceed" in text.lower() or "broadcast" in text.lower():
            return ConfigError(
                f"gguf:{self.name}: the conversation does not fit the context window of "
                f"{self.n_ctx} tokens ({text}). Load the model with a larger n_ctx or shorten the prompt."
            )
        return NbmagicError(f"gguf:{self.name}: llama.cpp failed while generating: {text}")


class _StepCounter:
    """A logits processor that only counts: prompt length at the first step, then steps taken."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.steps == 0:
            self.prompt_tokens = len(input_ids)
        self.steps += 1
        return scores


def read_metadata(llama_cpp: Any, path: Path) -> dict[str, str]:
    """The GGUF file's key/value metadata, read without loading its weights ({} if unreadable)."""
    log: list[str] = []
    try:
        with _quiet_native_logs(log):
            vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError):
        return {}  # the real load that follows reports what is wrong with the file
    try:
        return {str(k): str(v) for k, v in (vocab.metadata or {}).items()}
    finally:
        if hasattr(vocab, "close"):
            vocab.close()


def auto_n_ctx(metadata: dict[str, str], available_bytes: int | None = None) -> int:
    """The model's trained context, capped so its KV cache takes at most a quarter of free memory.

    A 4096-token default cut real notebooks' prompts short for models trained on 8k-32k
    tokens; the full trained context of a big model, on the other hand, can need more memory
    than the machine has. The KV cache costs ``2 (K, V) x layers x kv_heads x head_dim x 2 bytes``
    (f16) per token.
    """
    arch = metadata.get("general.architecture", "")

    def num(key: str) -> int | None:
        try:
            return int(float(metadata[f"{arch}.{key}"]))
        except (KeyError, ValueError):
            return None

    trained = num("context_length")
    if not trained or trained <= 0:
        return DEFAULT_N_CTX
    n_ctx = min(trained, MAX_AUTO_N_CTX)
    layers, heads = num("block_count"), num("attention.head_count")
    kv_heads = num("attention.head_count_kv") or heads
    width = num("embedding_length")
    head_dim = num("attention.key_length") or (width // heads if width and heads else None)
    if layers and kv_heads and head_dim:
        per_token = 2 * layers * kv_heads * head_dim * 2
        free = _available_memory() if available_bytes is None else available_bytes
        if free:
            n_ctx = min(n_ctx, int(free * KV_MEMORY_SHARE) // per_token)
    return max(MIN_N_CTX, n_ctx // MIN_N_CTX * MIN_N_CTX)


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux, macOS); None where it cannot be read."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _llama_options(llama_cpp: Any) -> set[str]:
    """The keyword options ``llama_cpp.Llama`` names (it takes ``**kwargs`` too, and ignores them)."""
    params = inspect.signature(llama_cpp.Llama.__init__).parameters.values()
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD} - {"self", "model_path"}


def _chat_completion_args(llm: Any) -> frozenset[str]:
    """Keyword arguments ``create_chat_completion`` accepts beyond the standard four."""
    names = set(inspect.signature(llm.create_chat_completion).parameters)
    return frozenset(names - {"self", "messages", "stream", "temperature", "top_p", "max_tokens", "stop"})
