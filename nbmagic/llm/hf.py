"""Local Hugging Face models through ``transformers``: chat, streaming, and latent access.

:class:`HFChatModel` is a :class:`~nbmagic.llm.base.ChatModel` (chat template, sampling,
stop strings, token streaming, exact usage from token ids) and also what latent mode needs
(:mod:`nbmagic.mas.latent`): the frozen ``model``, its ``tokenizer``, ``hidden_size``,
``chat_ids`` (the prompt as token ids) and ``embed_ids`` (the input embedding module's
output, so models that scale embeddings inside that module, like Gemma, stay right).

Models load with ``from_pretrained`` from a local folder, a GGUF file (de-quantized once into a
cached folder by :mod:`nbmagic.llm.gguf_hf`) or a hub repo id. A repo id that
is not in the local cache is downloaded once with huggingface_hub's progress bar; offline
(``HF_HUB_OFFLINE=1``) or unreachable, the user gets one :class:`NoModelAvailableError`
saying how to get a model instead of a stack of HTTP errors.

torch and transformers are imported when a model is constructed, never at import time.
"""

from __future__ import annotations

import operator
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbmagic.errors import (
    AuthenticationError,
    BackendNotInstalledError,
    ConfigError,
    ModelNotFoundError,
    NoModelAvailableError,
)
from nbmagic.llm.base import (
    ChatModel,
    ChatResult,
    GenerationParams,
    MessagesLike,
    Usage,
    apply_stop,
)
from nbmagic.llm.base import normalize_messages as _normalize
from nbmagic.llm.devices import detect_device, dtype_name, torch_dtype

DEFAULT_MAX_TOKENS = 512
INSTALL_HINT = "pip install 'nbmagic[local]'"

#: files a causal LM needs; skips other frameworks' weights (.bin/.h5/.msgpack/.onnx/.gguf)
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_model_path(name_or_path: str, *, download: bool = True) -> Path:
    """A local folder holding the model: the path itself, the hub cache, or a fresh download.

    Raises :class:`NoModelAvailableError` when the model is not on disk and cannot be fetched
    (offline, unreachable hub, ``download=False``), :class:`ModelNotFoundError` when the hub
    has no such repo and :class:`AuthenticationError` for gated repos without a token.
    """
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():  # de-quantized once, then a cached folder
        from nbmagic.llm.gguf_hf import hf_folder_for_gguf

        return hf_folder_for_gguf(path)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"hf:{name_or_path}: the folder has no config.json; point at a folder written "
                "by save_pretrained or at a hub repo id like Qwen/Qwen2.5-0.5B-Instruct."
            )
        return path
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelNotFoundError(f"hf:{name_or_path}: no such folder.")
    try:
        from huggingface_hub import errors as hub_errors
        from huggingface_hub import snapshot_download
    except ImportError:
        raise BackendNotInstalledError(
            f"hf:{name_or_path} needs huggingface_hub to download: {INSTALL_HINT}"
        ) from None

    try:  # already cached: no network at all
        return Path(snapshot_download(name_or_path, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except (hub_errors.LocalEntryNotFoundError, OSError, ValueError):
        pass
    how = (
        f"Connect to the internet once so hf:{name_or_path} can be downloaded (it is cached "
        "afterwards), download it elsewhere and pass its folder as hf:<path>, or use another "
        "model (openai:..., ollama:..., gguf:<path>)."
    )
    if not download:
        raise NoModelAvailableError(f"hf:{name_or_path} is not in the local cache. {how}")
    if _offline():
        raise NoModelAvailableError(
            f"hf:{name_or_path} is not in the local cache and HF_HUB_OFFLINE is set. {how}"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: the hub reads it at import
    print(
        f"nbmagic: downloading hf:{name_or_path} (first use; cached for next time)",
        file=sys.stderr,
        flush=True,
    )
    try:
        return Path(
            snapshot_download(
                name_or_path, allow_patterns=_HUB_PATTERNS, endpoint=endpoint, etag_timeout=15
            )
        )
    except hub_errors.GatedRepoError:
        raise AuthenticationError(
            f"hf:{name_or_path} is gated: accept its licence on huggingface.co and log in "
            "(`hf auth login` or HF_TOKEN=...)."
        ) from None
    except (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError):
        raise ModelNotFoundError(
            f"hf:{name_or_path}: no such model on the Hugging Face hub (check the spelling; "
            "private repos need HF_TOKEN)."
        ) from None
    except hub_errors.OfflineModeIsEnabled:
        raise NoModelAvailableError(
            f"hf:{name_or_path} is not in the local cache and offline mode is on. {how}"
        ) from None
    except (hub_errors.LocalEntryNotFoundError, hub_errors.HfHubHTTPError, OSError) as exc:
        where = endpoint or "https://huggingface.co"
        raise NoModelAvailableError(
            f"hf:{name_or_path} could not be downloaded from {where} "
            f"({type(exc).__name__}). {how}"
        ) from None
    except ValueError:  # huggingface_hub's HFValidationError: not a well-formed repo id
        raise ModelNotFoundError(
            f"hf:{name_or_path} is neither a folder here nor a hub repo id (owner/name, letters, "
            "digits, '-', '_' and '.'). Check the spelling or the path."
        ) from None


def _dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """``dtype=`` for transformers >= 4.56, ``torch_dtype=`` before (renamed in 4.56)."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


class TextStream:
    """Incremental detokenisation with stop strings, shared by chat and latent decode.

    Tokens go in one at a time; text comes out through ``on_token`` as soon as it is final:
    not while it ends in half a UTF-8 character, and not while its tail could still become
    a stop string (so a stop string is never streamed, even in part).

    Each token costs O(1): only a short window of ids is decoded, the way vLLM and
    transformers' streamers do it (``decode(ids[prefix:]) - decode(ids[prefix:read])``), so
    tokenizers that drop a leading space at the start of a decode (SentencePiece) stay right.
    """

    def __init__(
        self, tokenizer: Any, stop: Sequence[str] = (), on_token: Callable[[str], None] | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.on_token = on_token
        self.ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.stopped = False
        self._prefix = 0  # ids[_prefix:_read] were decoded as context for the next delta
        self._read = 0
        self._longest_stop = max((len(s) for s in self.stop), default=0)

    def _delta(self) -> str:
        """Text the ids after ``_read`` add ("" while they end in half a character)."""
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
        after = decode(self.ids[self._prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def push(self, token_id: int) -> bool:
        """Add one token; return True once a stop string has appeared."""
        if self.stopped:
            return True
        self.ids.append(int(token_id))
        delta = self._delta()
        if not delta:
            return False
        search_from = max(0, len(self.text) - self._longest_stop + 1)
        self.text += delta
        cut = min((i for s in self.stop if (i := self.text.find(s, search_from)) >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            self._emit(len(self.text))
            return True
        self._emit(len(self.text) - self._held_back(self.text))
        return False

    def finish(self) -> str:
        """No more tokens: flush what was held back (a dangling half character included)."""
        if not self.stopped and self._read < len(self.ids):
            decode = self.tokenizer.decode
            before = decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
            after = decode(self.ids[self._prefix :], skip_special_tokens=True)
            self.text += after[len(before) :]
            self._prefix = self._read = len(self.ids)
            self.text, self.stopped = apply_stop(self.text, self.stop)
        self._emit(len(self.text))
        return self.text

    def _held_back(self, text: str) -> int:
        """Length of the longest tail of ``text`` that starts some stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            chunk = self.text[self.emitted : upto]
            self.emitted = upto
            if self.on_token is not None and chunk:
                self.on_token(chunk)


def sample_next(logits: Any, temperature: float | None, top_p: float | None = None, generator: Any = None) -> Any:
    """Next token ids ``[B]`` from logits ``[B, V]``: argmax at temperature 0, else nucleus sampling."""
    import torch

    if not temperature or temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p is not None and 0 < top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def fallback_chat_text(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    """A plain transcript for tokenizers that ship no chat template (base models)."""
    parts = [f"{m['role'].capitalize()}: {m['content']}\n" for m in messages]
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


class HFChatModel(ChatModel):
    """A frozen ``transformers`` causal LM as a chat model, with latent accessors."""

    backend = "hf"
    supports_latent = True

    def __init__(
        self,
        name_or_path: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        default_params: dict[str, Any] | None = None,
        download: bool = True,
    ) -> None:
        super().__init__(str(name_or_path), default_params=default_params)
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as exc:
            raise BackendNotInstalledError(
                f"hf:{name_or_path} needs torch and transformers ({exc.name} is missing): "
                f"{INSTALL_HINT}"
            ) from None
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device_info = detect_device(device)
        self.torch_device = self.device_info.torch_device
        self.dtype = torch_dtype(dtype_name(dtype, self.device_info))
        self.path: Path | None = resolve_model_path(str(name_or_path), download=download)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.path, trust_remote_code=trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                self.path, trust_remote_code=trust_remote_code, **_dtype_kwarg(self.dtype)
            )
        except ValueError as exc:  # unknown architecture, remote code refused, ...
            raise ConfigError(f"hf:{name_or_path} cannot be loaded: {exc}") from None
        except OSError as exc:  # missing weights or tokenizer files
            raise ModelNotFoundError(f"hf:{name_or_path} is incomplete on disk: {exc}") from None
        model.to(self.torch_device)
        self._adopt(model)

    @classmethod
    def wrap(
        cls, model: Any, tokenizer: Any, *, name: str | None = None, default_params: dict[str, Any] | None = None
    ) -> HFChatModel:
        """Adopt a causal LM already in memory (e.g. loaded in the notebook) without reloading.

        The model is frozen and put in eval mode in place; it stays on its device and dtype.
        """
        self = cls.__new__(cls)
        ChatModel.__init__(
            self, name or getattr(model.config, "name_or_path", "") or type(model).__name__,
            default_params=default_params,
        )
        param = next(model.parameters())
        self.device_info = detect_device("cpu" if param.device.type == "cpu" else str(param.device))
        self.torch_device = str(param.device)
        self.dtype = param.dtype
        self.path = None
        self.tokenizer = tokenizer
        self._adopt(model)
        return self

    def _adopt(self, model: Any) -> None:
        model.eval()
        model.requires_grad_(False)
        self.model = model
        if self.tokenizer is not None and self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.hidden_size = int(model.get_input_embeddings().embedding_dim)
        self._lock = threading.RLock()

    # -- latent accessors ------------------------------------------------------------

    @property
    def decoder(self) -> Any:
        """The base transformer (no vocabulary head): its output is ``last_hidden_state``."""
        return self.model.get_decoder()

    @property
    def eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        tok_eos = self.tokenizer.eos_token_id if self.tokenizer is not None else None
        for source in (self.model.generation_config.eos_token_id, tok_eos):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return ids

    def chat_ids(
        self, messages: MessagesLike, add_generation_prompt: bool = True, **template_kwargs: Any
    ) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template (or a plain fallback).

        ``template_kwargs`` reach the template (e.g. ``enable_thinking=False`` for Qwen3).
        """
        msgs = _normalize(messages)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=add_generation_prompt, **template_kwargs
            )
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        text = fallback_chat_text(msgs, add_generation_prompt)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if bos is not None else ids

    def embed_ids(self, ids: Any) -> Any:
        """``[B, L]`` token ids -> ``[B, L, d]`` input embeddings, as the model itself embeds them."""
        import torch

        if not isinstance(ids, torch.Tensor):
            ids = torch.tensor(ids, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        return self.model.get_input_embeddings()(ids.to(self.torch_device))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass

    # -- chat --------------------------------------------------------------------------

    def _chat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: Callable[[str], None] | None
    ) -> ChatResult:
        import torch

        if self.model is None:
            raise ConfigError(f"hf:{self.name} was closed; load it again with load_model('hf:...').")
        extra = dict(params.extra)
        seed = extra.pop("seed", None)
        if seed is not None:
            try:
                seed = operator.index(seed)  # ints, numpy ints; not "7" or 7.5
            except TypeError:
                raise ConfigError(f"seed must be a whole number, not {seed!r}.") from None
        template_kwargs = extra.pop("chat_template_kwargs", None) or {}
        if not isinstance(template_kwargs, Mapping):
            raise ConfigError(f"chat_template_kwargs must be a dict, not {template_kwargs!r}.")
        ids = self.chat_ids(messages, **template_kwargs)
        max_new = int(params.max_tokens or DEFAULT_MAX_TOKENS)
        stream = TextStream(self.tokenizer, params.stop, on_token)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new}
        if params.temperature is None:  # the model's own generation_config decides
            gen_kwargs["do_sample"] = bool(self.model.generation_config.do_sample)
        else:
            gen_kwargs["do_sample"] = params.temperature > 0
            if gen_kwargs["do_sample"]:
                gen_kwargs["temperature"] = float(params.temperature)
        if gen_kwargs["do_sample"] and params.top_p is not None:
            gen_kwargs["top_p"] = float(params.top_p)
        if not gen_kwargs["do_sample"]:  # silence "temperature is set but do_sample is False"
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        gen_kwargs.update(extra)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.torch_device)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            try:
                out = self.model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=sorted(self.eos_token_ids) or None,
                    stopping_criteria=_stop_criteria(stream, len(ids)),
                    **gen_kwargs,
                )
            except (ValueError, TypeError) as exc:
                if stream.ids:  # raised mid-reply (e.g. by on_token): not about the options
                    raise
                raise ConfigError(f"hf:{self.name} refused the generation options: {exc}") from None
        new = out[0, len(ids) :].tolist()
        eos = self.eos_token_ids
        hit_eos = bool(new) and new[-1] in eos
        text = stream.finish()
        if stream.stopped or hit_eos:
            finish = "stop"
        else:
            finish = "length" if len(new) >= max_new else "stop"
        return ChatResult(
            text=text,
            model=self.name,
            usage=Usage(prompt_tokens=len(ids), completion_tokens=len(new)),
            finish_reason=finish,
        )


def _stop_criteria(stream: TextStream, prompt_len: int) -> Any:
    """Feed each new token to ``stream`` and stop generate() the step a stop string appears.

    Stopping criteria run right after each token is appended (streamers run later in
    transformers 5), so this is where streaming happens: no extra token past a stop string.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StreamAndStop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            start = prompt_len + len(stream.ids)
            for tok in input_ids[0, start:].tolist():
                stream.push(tok)
            return torch.full(
                (input_ids.shape[0],), stream.stopped, dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_StreamAndStop()])
