"""One latent agent pass, shared by inference (:mod:`.latent_mode`) and training (:mod:`.train`).

    prompt  = chat(system = role prompt,
                   user   = question + one slot per incoming thought block + task line)
    embeds  = Emb(text before slot 1) ‖ R_out(thoughts_1) ‖ Emb(text) ‖ … ‖ Emb(text after)
    state   = prefill(embeds)                         KV cache of the whole prompt
    thoughts, state = latent_rollout(state, m, R_in)  m one-token forwards, no LM head

``thoughts`` (the agent's last-layer hidden states ``[h_1 … h_m]``) go to every agent of
the next stage; the last agent's go back to the first stage next round.

**Where the answer is decoded** is decided in one place, :func:`answer_steps`, for both
inference and training:

* with *trained* links the answering agent runs its own ``m`` latent steps and the answer
  is decoded right after them: the position training teacher-forces the answer at
  (:func:`answer_loss`), so the links learn to make it a good one;
* *training-free*, the answering agent takes no latent steps of its own: it reads the
  incoming thoughts in its prompt and decodes from the prompt's answer position (after the
  chat template's assistant header), as training-free LatentMAS does. Measured on real
  weights (SmolLM2-135M): decoding right after untrained thoughts degenerates into one
  token repeated to the length cap; from the answer position the model answers.

``R_in`` / ``R_out`` are the trained links of a :class:`~nbmagic.mas.links.LinkSet`, or else
training-free ones (:class:`~nbmagic.mas.links.Realignment`, :class:`~nbmagic.mas.links.VocabBridge`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbmagic.llm.hf import fallback_chat_text
from nbmagic.mas import latent as L
from nbmagic.mas.links import LinkSet, Realignment, VocabBridge, apply_link
from nbmagic.mas.roles import role_title

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel
    from nbmagic.mas.team import Member

SLOT = "<<nbmagic-latent-{}>>"


@dataclass
class Thoughts:
    """Latent thoughts one agent passed on: hidden states ``[B, m, d_source]``."""

    member: Member
    round: int
    hidden: Tensor


def answer_steps(links: LinkSet | None, steps: int) -> int:
    """Latent steps the answering agent takes before it decodes: ``steps`` with trained links
    (decode, and train, right after them), 0 training-free (decode at the prompt's answer
    position). The single decision of the decode position; see the module docstring."""
    return steps if links is not None else 0


# -- prompts -----------------------------------------------------------------------------


def latent_user(question: str, sources: Sequence[Thoughts], final: bool) -> str:
    """The user message with one slot per incoming thought block."""
    parts = [f"Question:\n{question.strip()}"]
    for k, src in enumerate(sources):
        parts.append(
            f"Latent thoughts from the {role_title(src.member.role)} ({src.member.name}): "
            + SLOT.format(k)
        )
    parts.append("Now give the final answer to the question." if final else "Think through your part of the problem.")
    return "\n\n".join(parts)


def segments(model: HFChatModel, system: str, user: str, slots: int) -> list[list[int]]:
    """Token ids of the chat prompt cut at the slots: ``slots + 1`` lists (chat template or fallback)."""
    tok = model.tokenizer
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    prefix: list[int] = []
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        text = fallback_chat_text(msgs, True)
        if tok.bos_token_id is not None:
            prefix = [int(tok.bos_token_id)]
    pieces: list[str] = []
    for k in range(slots):
        before, sep, text = text.partition(SLOT.format(k))
        if not sep:  # a template that drops the user text: thoughts go at the end of the prompt
            text = before
            break
        pieces.append(before)
    pieces.append(text)
    out = [list(tok(p, add_special_tokens=False)["input_ids"]) if p else [] for p in pieces]
    out[0] = prefix + out[0]
    while len(out) < slots + 1:
        out.insert(-1, [])
    return out


def build_inputs(model: HFChatModel, rows: Sequence[tuple[list[list[int]], list[Tensor]]]) -> tuple[Tensor, Tensor]:
    """Rows of (segments, thought blocks ``[m, d]`` already in this model's space) ->
    left-padded embeddings ``[R, L, d]`` and mask ``[R, L]``. Thought blocks keep their graph."""
    seqs: list[Tensor] = []
    for segs, blocks in rows:
        flat = [i for s in segs for i in s]
        emb = model.embed_ids(torch.tensor([flat], dtype=torch.long))[0] if flat else None
        parts: list[Tensor] = []
        pos = 0
        for k, seg in enumerate(segs):
            if seg:
                parts.append(emb[pos : pos + len(seg)])  # type: ignore[index]
                pos += len(seg)
            if k < len(blocks):
                parts.append(blocks[k].to(model.dtype))
        seqs.append(torch.cat(parts, dim=0))
    width = max(s.shape[0] for s in seqs)
    d = seqs[0].shape[-1]
    padded, masks = [], []
    for s in seqs:
        pad = width - s.shape[0]
        padded.append(torch.cat([s.new_zeros((pad, d)), s], dim=0) if pad else s)
        masks.append(torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(s.shape[0], dtype=torch.long)]))
    return torch.stack(padded), torch.stack(masks).to(padded[0].device)


# -- links ---------------------------------------------------------------------------------


class LinkProvider:
    """The inner link of an agent and the outer link of a hop: trained if given, else training-free
    (computed once per model and kept in its :func:`~nbmagic.mas.links.model_cache`)."""

    def __init__(self, links: LinkSet | None) -> None:
        self.links = links

    def inner(self, m: Member) -> nn.Module:
        if self.links is not None:
            return self.links.inner_for(m.index)
        return self._realign(m.model)

    def outer(self, src: Member, dst: Member) -> nn.Module:
        if self.links is not None:
            return self.links.outer_for(src.index, dst.index)
        if src.model is dst.model:
            return self._realign(dst.model)
        return VocabBridge.cached(src.model, dst.model)

    @staticmethod
    def _realign(model: HFChatModel) -> nn.Module:
        with torch.inference_mode(False), torch.no_grad():
            return Realignment.from_model(model)


class RowLinks(nn.Module):
    """Different links for different rows of one batch (agents of a stage batched together)."""

    def __init__(self, links: Sequence[nn.Module]) -> None:
        super().__init__()
        self.links = list(links)

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([link(h[i : i + 1]) for i, link in enumerate(self.links)], dim=0)


def incoming_blocks(prov: LinkProvider, sources: Sequence[Thoughts], dst: Member) -> list[Tensor]:
    """Each source's thoughts mapped by its outer link into ``dst``'s embedding space: ``[B, m, d_dst]``."""
    return [apply_link(prov.outer(src.member, dst), src.hidden, dst.model.dtype) for src in sources]


# -- the pass --------------------------------------------------------------------------------


def think(
    model: HFChatModel,
    rows: Sequence[tuple[list[list[int]], list[Tensor]]],
    steps: int,
    link: nn.Module,
    on_step: Callable[[int, int], None] | None = None,
    prefixes: dict[Any, L.LatentState] | None = None,
) -> tuple[Tensor, L.LatentState]:
    """One agent pass for a batch of rows: prefill the prompts, then ``steps`` latent thoughts.

    With ``prefixes`` (inference, one row), the prompt text before the first thought slot —
    system prompt and question, the same for an agent in every round — is read once and its
    KV cache reused (forked) in later rounds; only the thoughts and the text after them are new.
    """
    if prefixes is not None and len(rows) == 1 and len(rows[0][0]) > 1 and rows[0][0][0]:
        segs, blocks = rows[0]
        key = (id(model), tuple(segs[0]))
        base = prefixes.get(key)
        if base is None:
            ids = torch.tensor([segs[0]], dtype=torch.long, device=model.torch_device)
            base = prefixes[key] = L.prefill(model, model.embed_ids(ids), torch.ones_like(ids))
        embeds, mask = build_inputs(model, [([[], *segs[1:]], blocks)])
        state = L.prefill(model, embeds, mask, L.fork(base))
    else:
        embeds, mask = build_inputs(model, rows)
        state = L.prefill(model, embeds, mask)
    return L.latent_rollout(model, state, steps, link, on_step)


def answer_loss(model: HFChatModel, state: L.LatentState, answers: Sequence[Sequence[int]]) -> Tensor:
    """Cross-entropy of the answers teacher-forced at the decode position ``state`` ends at.

    The first answer token is predicted from the state's last hidden state (the last
    thought, see :func:`answer_steps`), the others from the answer tokens before them (fed
    left-padded on top of the cache).
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
