"""The transformers side of the latent interface: :class:`HFLatent`, and training's answer loss.

:class:`HFLatent` implements :class:`~nbmagic.llm.latent.LatentBackend` for an
:class:`~nbmagic.llm.hf.HFChatModel` on top of :mod:`nbmagic.mas.latent` (torch tensors,
left-padded batches, ``DynamicCache``):

    prefill(rows)     parts -> Emb(ids) ‖ rows ‖ …, left-padded to ``[R, L, d]`` + mask ``[R, L]``
    latent_steps      :func:`~nbmagic.mas.latent.latent_rollout` (no LM head, one forward a step)
    decode            :func:`~nbmagic.mas.latent.decode_with_usage`
    fork              :func:`~nbmagic.mas.latent.fork` (layer objects copied, tensors shared)

Nothing here turns autograd off except :meth:`HFLatent.session` (``torch.inference_mode``,
inference runs only): training drives the same prefill and latent steps with gradients
flowing from the thoughts back to every link (:func:`answer_loss`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nbmagic.errors import ConfigError
from nbmagic.llm.hf import fallback_chat_text
from nbmagic.llm.latent import DecodeResult
from nbmagic.mas import latent as L
from nbmagic.mas.links import Realignment, VocabBridge, apply_link, model_cache

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel


class HFLatent:
    """Latent access to a transformers model (see the module docstring); one per model."""

    kind = "hf"

    def __init__(self, model: HFChatModel) -> None:
        self.model = model
        self.hidden_size = int(model.hidden_size)

    @classmethod
    def of(cls, model: HFChatModel) -> HFLatent:
        cache = model_cache(model)
        if "latent_backend" not in cache:
            cache["latent_backend"] = cls(model)
        return cache["latent_backend"]  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        with torch.inference_mode():
            yield

    # -- text ----------------------------------------------------------------------------

    def chat_text(self, messages: Sequence[dict[str, str]]) -> tuple[str, list[int]]:
        tok = self.model.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True), []
        bos = tok.bos_token_id
        return fallback_chat_text(list(messages), True), ([int(bos)] if bos is not None else [])

    def tokenize(self, text: str) -> list[int]:
        return list(self.model.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # -- the five operations ----------------------------------------------------------------

    def prefill(self, rows: Sequence[Sequence[Any]], state: L.LatentState | None = None) -> L.LatentState:
        embeds, mask = build_inputs(self.model, rows)
        return L.prefill(self.model, embeds, mask, state)

    def latent_steps(
        self, state: L.LatentState, steps: int, link: Any, on_step: Callable[[int, int], None] | None = None
    ) -> tuple[Tensor, L.LatentState]:
        return L.latent_rollout(self.model, state, steps, link, on_step)

    def decode(
        self,
        state: L.LatentState,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        on_token: Callable[[str], None] | None = None,
    ) -> DecodeResult:
        return L.decode_with_usage(self.model, state, None, None, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, stop=stop, on_token=on_token)

    def fork(self, state: L.LatentState) -> L.LatentState:
        return L.fork(state)

    def release(self, state: Any) -> None:
        return None  # the cache goes with its last reference

    # -- links and tables ---------------------------------------------------------------------

    def realignment(self) -> Realignment:
        with torch.inference_mode(False), torch.no_grad():
            return Realignment.from_model(self.model)

    def bridge_from(self, source: Any) -> VocabBridge:
        if not isinstance(source, HFLatent):
            raise ConfigError("Latent thoughts cannot pass between a llama.cpp and a transformers model: "
                              "use one backend for every agent, or mode='text'.")
        return VocabBridge.cached(source.model, self.model)

    def trained(self, module: Any) -> Any:
        return module

    def apply_link(self, link: Any, x: Tensor) -> Tensor:
        return apply_link(link, x, self.model.dtype)

    def input_rows(self, ids: Sequence[int]) -> Tensor:
        with torch.no_grad():
            return self.model.embed_ids(torch.tensor([list(ids)], dtype=torch.long))[0].float()


def build_inputs(model: HFChatModel, rows: Sequence[Sequence[Any]]) -> tuple[Tensor, Tensor]:
    """Rows of parts (token id lists, thought blocks ``[m, d]`` already in this model's space)
    -> left-padded embeddings ``[R, L, d]`` and mask ``[R, L]``. Thought blocks keep their graph."""
    seqs: list[Tensor] = []
    for parts in rows:
        flat = [int(i) for p in parts if not isinstance(p, Tensor) for i in p]
        emb = model.embed_ids(torch.tensor([flat], dtype=torch.long))[0] if flat else None
        pieces: list[Tensor] = []
        pos = 0
        for p in parts:
            if isinstance(p, Tensor):
                pieces.append(p.to(model.dtype))
            elif len(p):
                pieces.append(emb[pos : pos + len(p)])  # type: ignore[index]
                pos += len(p)
        if not pieces:
            raise ConfigError("A prompt in the batch is empty: give every row at least one token.")
        seqs.append(torch.cat(pieces, dim=0))
    width = max(s.shape[0] for s in seqs)
    d = seqs[0].shape[-1]
    padded, masks = [], []
    for s in seqs:
        pad = width - s.shape[0]
        padded.append(torch.cat([s.new_zeros((pad, d)), s], dim=0) if pad else s)
        masks.append(torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(s.shape[0], dtype=torch.long)]))
    return torch.stack(padded), torch.stack(masks).to(padded[0].device)


def answer_loss(model: HFChatModel, state: L.LatentState, answers: Sequence[Sequence[int]]) -> Tensor:
    """Cross-entropy of the answers teacher-forced at the decode position ``state`` ends at.

    The first answer token is predicted from the state's last hidden state (the last
    thought, see :func:`~nbmagic.mas.agent_pass.answer_steps`), the others from the answer
    tokens before them (fed left-padded on top of the cache).
    """
    head = model.model.get_output_embeddings()
    first_logits = head(state.last_hidden).float()  # [B, V]
    first = torch.tensor([a[0] for a in answers], device=first_logits.device)
    losses = [F.cross_entropy(first_logits, first, reduction="sum")]
    count = len(answers)
    width = max(len(a) for a in answers) - 1
    if width > 0:
        pad = model.tokenizer.pad_token_id or 0
        ids, mask = L.left_pad([list(a[:-1]) for a in answers], pad, model.torch_device)
        targets = torch.full((len(answers), width), -100, dtype=torch.long)
        for row, a in enumerate(answers):
            if len(a) > 1:
                targets[row, width - len(a) + 1 :] = torch.tensor(list(a[1:]), dtype=torch.long)
        hidden, _ = L.extend(model, model.embed_ids(ids), mask, state)
        logits = head(hidden).float()
        targets = targets.to(logits.device)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                      ignore_index=-100, reduction="sum"))
        count += int((targets != -100).sum())
    return torch.stack(losses).sum() / count
