"""RecursiveMAS links: how a hidden state becomes the next input embedding.

A frozen model's last-layer hidden state ``h`` is not an input embedding: it lives in the
output space (it is dotted with the LM head) and has a different norm. Links map it back:

* :class:`InnerLink` (same model)        ``R_in(h)  = h + W2·GELU(W1·h)``            W2 = 0 -> identity
* :class:`OuterLink` (model i -> j)      ``R_out(h) = W3·h + W2·GELU(W1·h)``         W2 = 0, W3 ≈ I
* :class:`LNInnerLink` / :class:`LNOuterLink`: the LayerNorm-wrapped forms of the released
  checkpoints, ``post_ln(x + W2·GELU(W1·pre_ln(x)))`` and ``ln_dst(W2·GELU(W1·ln_src(h)) + W3·h)``
  (hidden width 2·d_dst); the final LayerNorm's scale sets the output norm.
* :class:`Realignment` (training-free, LatentMAS): ``W_a = (W_outᵀW_out + λI)⁻¹ W_outᵀ W_in``, then
  each vector rescaled to the mean norm of real input embeddings.
* :class:`VocabBridge` (training-free, d_i ≠ d_j): realign in the source model, then a least-squares
  map between the two input-embedding tables over the tokens both vocabularies share.
* :class:`LinkSet`: every trainable link of a system (one inner link per agent, one outer link per
  hop), what training produces and a checkpoint (:mod:`nbmagic.mas.checkpoint`) stores.

Everything derived from a frozen model (its mean embedding norm, its realignment, bridges from
it) is computed once and kept in one per-model cache (:func:`model_cache`), dropped with the model.

All link math runs in float32 (:func:`apply_link` casts in and back), so bf16/fp16 models
do not lose the small residual corrections the links learn.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbmagic.errors import ConfigError

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel

RIDGE_LAMBDA = 1e-5
LINK_TYPES = ("ln", "mlp")

#: model -> what was derived from it (embedding norm, realignment, bridges): the one per-model
#: cache of the package; weak, so it goes with the model
_MODEL_CACHE: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def model_cache(model: Any) -> dict[Any, Any]:
    """The dict of values computed once for ``model`` (its weights are frozen)."""
    return _MODEL_CACHE.setdefault(model, {})


def apply_link(link: nn.Module | None, h: Tensor, out_dtype: torch.dtype) -> Tensor:
    """``link(h)`` computed in float32 and cast to the model's dtype (identity if no link)."""
    if link is None:
        return h.to(out_dtype)
    return link(h.float()).to(out_dtype)


class InnerLink(nn.Module):
    """``R_in(h) = h + W2·GELU(W1·h)``; W2 starts at zero, so the link starts as the identity."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.W1 = nn.Linear(dim, hidden or dim)
        self.W2 = nn.Linear(hidden or dim, dim)
        nn.init.xavier_uniform_(self.W1.weight, gain=0.1)
        nn.init.zeros_(self.W1.bias)
        nn.init.zeros_(self.W2.weight)
        nn.init.zeros_(self.W2.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.W2(F.gelu(self.W1(h)))


class OuterLink(nn.Module):
    """``R_out(h) = W3·h + W2·GELU(W1·h)`` from ``src_dim`` to ``dst_dim``.

    W2 starts at zero; W3 starts as the identity when the dims match and as a
    norm-preserving (semi-orthogonal) projection when they do not.
    """

    def __init__(self, src_dim: int, dst_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.src_dim, self.dst_dim = src_dim, dst_dim
        width = hidden or 2 * dst_dim
        self.W1 = nn.Linear(src_dim, width)
        self.W2 = nn.Linear(width, dst_dim)
        self.W3 = nn.Linear(src_dim, dst_dim, bias=False)
        nn.init.xavier_uniform_(self.W1.weight, gain=0.1)
        nn.init.zeros_(self.W1.bias)
        nn.init.zeros_(self.W2.weight)
        nn.init.zeros_(self.W2.bias)
        _init_projection(self.W3.weight)

    def forward(self, h: Tensor) -> Tensor:
        return self.W3(h) + self.W2(F.gelu(self.W1(h)))


class LNInnerLink(nn.Module):
    """``post_ln(x + W2·GELU(W1·pre_ln(x)))``: the released checkpoints' inner link.

    ``out_norm`` sets the post-LayerNorm scale so outputs start with about that norm
    (use the mean input-embedding norm of the model: :func:`embedding_norm`).
    """

    def __init__(self, dim: int, hidden: int | None = None, out_norm: float | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.pre_ln = nn.LayerNorm(dim)
        self.W1 = nn.Linear(dim, hidden or dim)
        self.W2 = nn.Linear(hidden or dim, dim)
        self.post_ln = nn.LayerNorm(dim)
        nn.init.xavier_uniform_(self.W1.weight, gain=0.1)
        nn.init.zeros_(self.W1.bias)
        nn.init.zeros_(self.W2.weight)
        nn.init.zeros_(self.W2.bias)
        if out_norm is not None:
            nn.init.constant_(self.post_ln.weight, out_norm / math.sqrt(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.post_ln(x + self.W2(F.gelu(self.W1(self.pre_ln(x)))))


class LNOuterLink(nn.Module):
    """``ln_dst(W2·GELU(W1·ln_src(h)) + W3·h)`` with hidden width 2·d_dst (released form)."""

    def __init__(
        self, src_dim: int, dst_dim: int, hidden: int | None = None, out_norm: float | None = None
    ) -> None:
        super().__init__()
        self.src_dim, self.dst_dim = src_dim, dst_dim
        width = hidden or 2 * dst_dim
        self.ln_src = nn.LayerNorm(src_dim)
        self.W1 = nn.Linear(src_dim, width)
        self.W2 = nn.Linear(width, dst_dim)
        self.W3 = nn.Linear(src_dim, dst_dim, bias=False)
        self.ln_dst = nn.LayerNorm(dst_dim)
        nn.init.xavier_uniform_(self.W1.weight, gain=0.1)
        nn.init.zeros_(self.W1.bias)
        nn.init.zeros_(self.W2.weight)
        nn.init.zeros_(self.W2.bias)
        _init_projection(self.W3.weight)
        if out_norm is not None:
            nn.init.constant_(self.ln_dst.weight, out_norm / math.sqrt(dst_dim))

    def forward(self, h: Tensor) -> Tensor:
        return self.ln_dst(self.W2(F.gelu(self.W1(self.ln_src(h)))) + self.W3(h))


def _init_projection(weight: Tensor) -> None:
    """Identity when square; otherwise semi-orthogonal (keeps norms when d_dst <= d_src)."""
    with torch.no_grad():
        if weight.shape[0] == weight.shape[1]:
            weight.copy_(torch.eye(weight.shape[0]))
        else:
            nn.init.orthogonal_(weight)


# -- training-free alignment --------------------------------------------------------------


def _vocab_rows(model: HFChatModel) -> int:
    """Rows of the embedding tables that are real tokens (vocab tables are often padded)."""
    rows = model.model.get_input_embeddings().weight.shape[0]
    return min(rows, len(model.tokenizer))


@torch.no_grad()
def embedding_norm(model: HFChatModel, chunk: int = 8192) -> float:
    """Mean L2 norm of real input embeddings, computed from ``embed_tokens(ids)`` outputs.

    Taking the module's output (not weight rows) keeps models that scale inside the
    embedding module (Gemma multiplies by √d) right. Remembered per loaded model (its
    embeddings are frozen): realignment, bridges and fresh links all ask for it.
    """
    cache = model_cache(model)
    if "embedding_norm" not in cache:
        n = _vocab_rows(model)
        total = 0.0
        for start in range(0, n, chunk):
            ids = torch.arange(start, min(n, start + chunk), device=model.torch_device)
            total += model.embed_ids(ids[None])[0].float().norm(dim=-1).sum().item()
        cache["embedding_norm"] = total / n
    return float(cache["embedding_norm"])


def _tied(model: HFChatModel) -> bool:
    """Input embeddings and LM head share one weight tensor (Qwen2.5 ≤ 3B, Gemma, ...)."""
    head = model.model.get_output_embeddings()
    emb = model.model.get_input_embeddings()
    return head is not None and head.weight.data_ptr() == emb.weight.data_ptr()


def _embed_rows(model: HFChatModel, ids: Tensor) -> Tensor:
    """float32 ``[n, d]``: what the embedding module outputs for ``ids``."""
    return model.embed_ids(ids.to(model.torch_device)[None])[0].float()


def _head_rows(model: HFChatModel, ids: Tensor) -> Tensor:
    """float32 ``[n, d]``: the LM-head rows (output embeddings) of ``ids``."""
    head = model.model.get_output_embeddings()
    if head is None:
        raise ConfigError(f"{model.name} has no LM head: training-free realignment needs one.")
    return head.weight[ids.to(head.weight.device)].float()


def ridge_solve(a: Tensor, b: Tensor, lam: float = RIDGE_LAMBDA) -> Tensor:
    """``argmin_X ||a·X − b||² + λ||X||²`` = ``(aᵀa + λI)⁻¹ aᵀb``, in float32."""
    return ridge_from_chunks([(a, b)], lam)


def ridge_from_chunks(chunks: Iterable[tuple[Tensor, Tensor]], lam: float = RIDGE_LAMBDA) -> Tensor:
    """:func:`ridge_solve` over row chunks ``(a_k, b_k)``: accumulates ``aᵀa`` and ``aᵀb``
    (d×d each), so a 150 k-token vocabulary never needs a float32 copy of its tables."""
    gram: Tensor | None = None
    cross: Tensor | None = None
    for a, b in chunks:
        a, b = a.float(), b.float().to(a.device)
        gram = a.T @ a if gram is None else gram + a.T @ a
        cross = a.T @ b if cross is None else cross + a.T @ b
    if gram is None or cross is None:
        raise ConfigError("Nothing to fit: no rows.")
    eye = torch.eye(gram.shape[0], device=gram.device)
    return torch.linalg.solve(gram + lam * eye, cross)


def _chunks(n: int, size: int = 8192) -> Iterator[Tensor]:
    for start in range(0, n, size):
        yield torch.arange(start, min(n, start + size))


class Realignment(nn.Module):
    """Training-free inner link: ``e = rescale(h·W_a)`` with ``W_a = (W_outᵀW_out + λI)⁻¹W_outᵀW_in``.

    ``W_a`` maps the output space onto the input space in the least-squares sense over the
    whole vocabulary (float32, accumulated in chunks). For tied embeddings the solution is I
    up to λ (times Gemma's √d, which the rescale removes), so no solve is run and the rescale
    to ``target_norm`` (the mean norm of real input embeddings) is what matters. No
    trainable parameters.
    """

    def __init__(self, W_a: Tensor, target_norm: float) -> None:
        super().__init__()
        self.register_buffer("W_a", W_a.float())
        self.register_buffer("target_norm", torch.tensor(float(target_norm)))

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: HFChatModel, lam: float = RIDGE_LAMBDA) -> Realignment:
        """Solve once per loaded model (a d×d system over the vocabulary) and remember it."""
        memo: dict[float, Realignment] = model_cache(model).setdefault("realign", {})
        if lam not in memo:
            if _tied(model):  # W_out = W_in (up to a scale the rescale removes): W_a = I, no solve
                W_a = torch.eye(model.hidden_size, device=model.torch_device)
            else:
                rows = _chunks(_vocab_rows(model))  # W_out: LM head [V, d]; W_in: embeddings [V, d]
                pairs = ((_head_rows(model, ids), _embed_rows(model, ids)) for ids in rows)
                W_a = ridge_from_chunks(pairs, lam)
            memo[lam] = cls(W_a, embedding_norm(model)).to(model.torch_device)
        return memo[lam]

    def forward(self, h: Tensor) -> Tensor:
        e = h @ self.W_a
        return e * (self.target_norm / e.norm(dim=-1, keepdim=True).clamp_min(1e-6))


class VocabBridge(nn.Module):
    """Training-free outer hop between models of different hidden sizes.

    ``e_dst = rescale(h_src · W_a^src · M)``: realign the source hidden state into the source
    model's input-embedding space, then map embeddings across with ``M = (E_srcᵀE_src + λI)⁻¹
    E_srcᵀE_dst``, least squares over the tokens both vocabularies share (matched by token
    string, so identical tokenizers share all of them), and rescale to the destination's mean
    embedding norm. Chosen over a softmax through the LM head (``p(h)·E_dst``) because it is
    one ``d_src×d_dst`` matmul per vector instead of a vocabulary-sized softmax, and stays
    linear, hence well-conditioned for gradients when the bridge is later fine-tuned.
    """

    def __init__(self, W: Tensor, target_norm: float, shared_tokens: int = 0) -> None:
        super().__init__()
        self.register_buffer("W", W.float())
        self.register_buffer("target_norm", torch.tensor(float(target_norm)))
        self.shared_tokens = shared_tokens

    @classmethod
    @torch.no_grad()
    def from_models(cls, src: HFChatModel, dst: HFChatModel, lam: float = RIDGE_LAMBDA) -> VocabBridge:
        src_ids, dst_ids = shared_token_ids(src, dst)
        need = max(src.hidden_size, dst.hidden_size)
        if len(src_ids) < need:
            raise ConfigError(
                f"{src.name} and {dst.name} share only {len(src_ids)} tokens (need at least {need}) "
                "so no training-free bridge exists between them: use agents with the same "
                "tokenizer family, or train outer links (python -m nbmagic train-links)."
            )
        W_a = Realignment.from_model(src, lam).W_a  # [d_src, d_src]
        pairs = (
            (_embed_rows(src, src_ids[k : k + 8192]), _embed_rows(dst, dst_ids[k : k + 8192]))
            for k in range(0, len(src_ids), 8192)
        )
        M = ridge_from_chunks(pairs, lam)  # [d_src, d_dst]: E_src·M ≈ E_dst over shared tokens
        return cls(W_a @ M, embedding_norm(dst), len(src_ids)).to(dst.torch_device)

    @classmethod
    def cached(cls, src: HFChatModel, dst: HFChatModel) -> VocabBridge:
        """The bridge ``src -> dst``, solved once and kept in ``src``'s :func:`model_cache`."""
        bridges: dict[int, tuple[weakref.ref[Any], VocabBridge]] = model_cache(src).setdefault("bridges", {})
        hit = bridges.get(id(dst))
        if hit is None or hit[0]() is not dst:  # an id may be reused by a later model
            with torch.inference_mode(False), torch.no_grad():
                hit = (weakref.ref(dst), cls.from_models(src, dst))
            bridges[id(dst)] = hit
        return hit[1]

    def forward(self, h: Tensor) -> Tensor:
        e = h.to(self.W.device) @ self.W
        return e * (self.target_norm / e.norm(dim=-1, keepdim=True).clamp_min(1e-6))


def shared_token_ids(src: HFChatModel, dst: HFChatModel) -> tuple[Tensor, Tensor]:
    """Ids of the tokens present in both vocabularies (same string), as aligned id tensors."""
    vs: dict[str, int] = src.tokenizer.get_vocab()
    vd: dict[str, int] = dst.tokenizer.get_vocab()
    ns, nd = _vocab_rows(src), _vocab_rows(dst)
    pairs = sorted((i, vd[t]) for t, i in vs.items() if t in vd and i < ns and vd[t] < nd)
    if not pairs:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    a, b = zip(*pairs, strict=True)
    return torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long)


def link_params(*links: Any) -> list[nn.Parameter]:
    """Trainable parameters of several links (None and parameter-free links are skipped)."""
    return [p for link in links if link is not None for p in link.parameters() if p.requires_grad]


# -- the trainable set ----------------------------------------------------------------------


def make_inner(link_type: str, dim: int, out_norm: float | None = None) -> nn.Module:
    return LNInnerLink(dim, out_norm=out_norm) if link_type == "ln" else InnerLink(dim)


def make_outer(link_type: str, src: int, dst: int, out_norm: float | None = None) -> nn.Module:
    return LNOuterLink(src, dst, out_norm=out_norm) if link_type == "ln" else OuterLink(src, dst)


class LinkSet(nn.Module):
    """Every trainable link of a system: one inner link per agent, one outer link per hop."""

    def __init__(
        self,
        link_type: str,
        dims: list[int],
        edges: list[tuple[int, int]],
        out_norms: list[float] | None = None,
    ) -> None:
        super().__init__()
        if link_type not in LINK_TYPES:
            raise ConfigError(f"Unknown link type {link_type!r}: choose one of {', '.join(LINK_TYPES)}.")
        self.link_type = link_type
        self.dims = list(dims)
        self.edges = [(int(s), int(t)) for s, t in edges]
        norms: list[float | None] = list(out_norms) if out_norms else [None] * len(dims)
        self.inner = nn.ModuleDict({str(i): make_inner(link_type, d, norms[i]) for i, d in enumerate(dims)})
        self.outer = nn.ModuleDict(
            {f"{s}_{t}": make_outer(link_type, dims[s], dims[t], norms[t]) for s, t in self.edges}
        )
        self.warnings: list[str] = []

    def inner_for(self, agent: int) -> nn.Module:
        return self.inner[str(agent)]

    def outer_for(self, source: int, target: int) -> nn.Module:
        return self.outer[f"{source}_{target}"]

    def flat_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
