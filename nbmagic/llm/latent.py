"""The latent interface: what RecursiveMAS latent mode needs from a backend.

Latent mode never samples a token between agents. It needs five operations on a model
that keeps a KV cache, and two tables:

    state            = prefill(rows)                 rows: per row, parts in order, each part
                                                     token ids ``list[int]`` or input-embedding
                                                     rows ``[n, d]``; one KV sequence per row
    thoughts, state  = latent_steps(state, m, link)  e_t = link(h_{t-1}); h_t = model(e_t | cache)
                                                     thoughts ``[R, m, d]``, one token-forward a step
    result           = decode(state, ...)            sample from the last position's logits,
                                                     stop at end of turn / stop string / cap
    state'           = fork(state)                   the same cache on new sequences (shared prefix)
    release(state)                                   the sequences go back (no-op where a cache
                                                     is garbage-collected)

``h`` is always the last hidden state **after the final norm** (transformers'
``last_hidden_state``, llama.cpp's ``result_norm``: the output head's input), ``[R, d]``.
Input-embedding rows live in the *effective input space*: what the first decoder layer
reads for a token. Where a graph scales token embeddings inside itself (Gemma multiplies by
√d) the backend converts, so a row ``E[i]`` from :meth:`LatentBackend.input_rows` fed as an
embedding means exactly token ``i``.

Two backends implement it: transformers (:mod:`nbmagic.mas.hf_latent`, torch tensors,
left-padded batches, autograd for training) and llama.cpp
(:mod:`nbmagic.llm.latent_llamacpp`, numpy arrays, one llama.cpp sequence per row, no torch).
Arrays are the backend's own type (``Array``): links are callables on that type.

Pure Python: importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: a backend's array type: ``torch.Tensor`` for transformers, ``numpy.ndarray`` for llama.cpp
Array = Any
#: one part of a prompt row: token ids, or input-embedding rows ``[n, d]`` (effective input space)
Part = Any
#: ``link(h [R, d]) -> e [R, d']`` on the backend's arrays (None = identity)
Link = Callable[[Array], Array]


@dataclass
class DecodeResult:
    """Texts per row, generated token counts (end-of-turn token included) and why each row ended
    (``"stop"``: end of turn or a stop string; ``"length"``: the token cap)."""

    texts: list[str]
    tokens: list[int]
    finish_reasons: list[str] = field(default_factory=list)


@runtime_checkable
class LatentBackend(Protocol):
    """A model that can think in latent space; see the module docstring for the equations."""

    #: ``"hf"`` or ``"gguf"``: which array type and which training support
    kind: str
    #: ``d``: width of hidden states and input-embedding rows
    hidden_size: int

    def chat_text(self, messages: Sequence[dict[str, str]]) -> tuple[str, list[int]]:
        """The chat prompt as text (template applied, assistant header added) and the token ids
        to put before it (a BOS the template does not write itself, else ``[]``)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens in it parsed, no BOS added)."""
        ...

    def session(self) -> Any:
        """A context manager around one run: exclusive use of the latent cache, inference
        mode, and every sequence released at the end (also on Ctrl-C)."""
        ...

    def prefill(self, rows: Sequence[Sequence[Part]], state: Any = None) -> Any:
        """Read every row's parts, in order, into the cache (on top of ``state`` when given)."""
        ...

    def latent_steps(
        self, state: Any, steps: int, link: Link | None, on_step: Callable[[int, int], None] | None = None
    ) -> tuple[Array, Any]:
        """``steps`` latent thoughts per row: ``[R, steps, d]`` and the extended state."""
        ...

    def decode(
        self,
        state: Any,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        on_token: Callable[[str], None] | None = None,
    ) -> DecodeResult:
        """Generate text per row from the state's last position (greedy at temperature 0);
        ``on_token`` streams row 0. A stop string is cut off and never streamed."""
        ...

    def fork(self, state: Any) -> Any:
        """A state to branch from: extending one leaves the other as it was."""
        ...

    def release(self, state: Any) -> None:
        """Give the state's cache back (its sequences are reused)."""
        ...

    def realignment(self) -> Link:
        """The training-free inner link ``e = rescale(h·W_a)`` from the model's own tables
        (``W_a = (W_outᵀW_out + λI)⁻¹W_outᵀW_in``, rescaled to the mean input-embedding norm),
        computed once per model."""
        ...

    def bridge_from(self, source: LatentBackend) -> Link:
        """The training-free outer link from another model's hidden states into this one's inputs."""
        ...

    def trained(self, module: Any) -> Link:
        """A trained link (a torch module) as a callable on this backend's arrays."""
        ...

    def apply_link(self, link: Link | None, x: Array) -> Array:
        """``link(x)`` for ``x [..., d_src]``, in float32, as this backend's input rows."""
        ...

    def input_rows(self, ids: Sequence[int]) -> Array:
        """Effective input embeddings of ``ids``: ``[n, d]`` float32."""
        ...

