"""GBNF grammars for llama.cpp chat calls: the ``grammar`` argument, where a model takes one.

llama.cpp can constrain sampling with a GBNF grammar, so a small local model can only
write replies of a given shape (one of a few calls, a code block). Only GGUF models
loaded through llama-cpp-python take it (``create_chat_completion(grammar=...)``, which
the model layer passes through as an extra generation argument); for every other
backend :func:`grammar_params` returns ``{}`` and the caller parses a free reply instead.

A grammar is compiled once per text and kept (compiling is cheap, but a loop asks often).
"""

from __future__ import annotations

import threading
from typing import Any

_cache: dict[str, Any] = {}
_lock = threading.Lock()


def takes_grammar(model: Any) -> bool:
    """Whether ``model.chat(..., grammar=...)`` is understood (a llama-cpp-python GGUF model)."""
    return getattr(model, "backend", "") == "gguf" and "grammar" in getattr(model, "_sampling_args", ())


def grammar_params(model: Any, gbnf: str) -> dict[str, Any]:
    """``{"grammar": <compiled gbnf>}`` for a model that takes one, else ``{}``."""
    if not takes_grammar(model):
        return {}
    with _lock:
        compiled = _cache.get(gbnf)
        if compiled is None:
            from llama_cpp import LlamaGrammar  # a GGUF model is loaded: llama_cpp is installed

            compiled = _cache[gbnf] = LlamaGrammar.from_string(gbnf, verbose=False)
    return {"grammar": compiled}


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
