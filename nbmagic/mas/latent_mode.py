"""Latent mode: the RecursiveMAS recursion with latent thoughts instead of messages.

One *agent pass* (shared by inference and training, so both run the same graph):

    prompt  = chat(system = role prompt,
                   user   = question + one slot per incoming thought block + task line)
    embeds  = Emb(text before slot 1) ‖ R_out(thoughts_1) ‖ Emb(text) ‖ … ‖ Emb(text after)
    state   = prefill(embeds)                         KV cache of the whole prompt
    thoughts, state = latent_rollout(state, m, R_in)  m one-token forwards, no LM head

``thoughts`` (the agent's last-layer hidden states ``[h_1 … h_m]``) go to every agent of
the next stage; the last agent's go back to the first stage next round. The last agent
of the last round decodes the answer from its state, right after its latent thoughts
(training teacher-forces the answer at exactly that place: :func:`answer_loss`).

``R_in`` / ``R_out`` are the trained links of a checkpoint, or else training-free ones:
:class:`~nbmagic.mas.links.Realignment` of the model (inner hops and outer hops between
agents on the same model) and :class:`~nbmagic.mas.links.VocabBridge` (outer hops between
different models, any hidden sizes). Agents of one stage on the same model run as one
left-padded batch (mixture's specialists think side by side).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbmagic.events import LatentStep, Notice, RoundFinished, RoundStarted, TextDelta
from nbmagic.llm.hf import fallback_chat_text
from nbmagic.mas import latent as L
from nbmagic.mas.links import Realignment, VocabBridge, apply_link
from nbmagic.mas.text import follow_tool_calls, role_title

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel
    from nbmagic.mas.checkpoint import LinkSet
    from nbmagic.mas.system import Bookkeeper, Member, RecursiveMAS

SLOT = "<<nbmagic-latent-{}>>"


@dataclass
class Thoughts:
    """Latent thoughts one agent passed on: hidden states ``[B, m, d_source]``."""

    member: Member
    round: int
    hidden: Tensor


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


#: training-free links per model, computed once per loaded model (the ridge solve runs over
#: the whole vocabulary: seconds for a 150k-token model on CPU), dropped with the model
_FREE_LINKS: weakref.WeakKeyDictionary[Any, dict[Any, nn.Module]] = weakref.WeakKeyDictionary()


def free_links(model: HFChatModel) -> dict[Any, nn.Module]:
    """The training-free links computed so far with ``model`` as the source."""
    return _FREE_LINKS.setdefault(model, {})


class LinkProvider:
    """The inner link of an agent and the outer link of a hop: trained if given, else training-free."""

    def __init__(self, mas: RecursiveMAS, links: LinkSet | None) -> None:
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
        cache = free_links(src.model)
        key = ("bridge", id(dst.model))
        hit = cache.get(key)
        if hit is None or hit.__dict__["dst_ref"]() is not dst.model:  # ids may be reused
            with torch.inference_mode(False), torch.no_grad():
                hit = VocabBridge.from_models(src.model, dst.model)
            hit.__dict__["dst_ref"] = weakref.ref(dst.model)
            cache[key] = hit
        return hit

    @staticmethod
    def _realign(model: HFChatModel) -> nn.Module:
        cache = free_links(model)
        if "realign" not in cache:
            with torch.inference_mode(False), torch.no_grad():
                cache["realign"] = Realignment.from_model(model)
        return cache["realign"]


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
    """Cross-entropy of the answers teacher-forced right after the latent thoughts in ``state``.

    The first answer token is predicted from the last thought's hidden state, the others
    from the answer tokens before them (fed left-padded on top of the cache).
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


# -- inference ------------------------------------------------------------------------------


def run_latent(mas: RecursiveMAS, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    """Run every round in latent mode (under ``torch.inference_mode``); return (answer, rounds)."""
    with torch.inference_mode():
        return _run(mas, question, book, limit)


def _run(mas: RecursiveMAS, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    prov = LinkProvider(mas, mas.links)
    if mas.links is not None:
        for w in mas.links.warnings:
            book.event(Notice(f"links: {w}", "warning"))
    plan, members, total, steps = mas.plan, mas.members, mas.rounds, mas.latent_steps
    feedback: list[Thoughts] = []
    answer = ""
    prefixes: dict[Any, L.LatentState] = {}
    for r in range(1, total + 1):
        book.event(RoundStarted(r, total))
        incoming = feedback
        for stage in plan.stages:
            outs: list[Thoughts] = []
            for group in _groups([members[i] for i in stage]):
                thoughts, pending = _group_pass(mas, prov, book, group, question, incoming, r, steps, prefixes)
                outs.extend(thoughts)
                if pending is not None:  # the last agent of the last round: decode the answer
                    answer = _decode_answer(mas, book, pending, limit, r, question)
            incoming = outs
        feedback = incoming
        book.rounds_done = r
        book.event(RoundFinished(r, total))
    return answer, total


@dataclass
class _Pending:
    """The final agent between its latent thoughts and its answer."""

    member: Member
    state: L.LatentState
    started: float
    prompt_tokens: int
    entry: dict[str, Any]


def _groups(stage: list[Member]) -> list[list[Member]]:
    """Agents of a stage that share a model, batched together; in stage order."""
    groups: dict[int, list[Member]] = {}
    for m in stage:
        groups.setdefault(id(m.model), []).append(m)
    return list(groups.values())


def _group_pass(
    mas: RecursiveMAS,
    prov: LinkProvider,
    book: Bookkeeper,
    group: list[Member],
    question: str,
    incoming: list[Thoughts],
    round_: int,
    steps: int,
    prefixes: dict[Any, L.LatentState],
) -> tuple[list[Thoughts], _Pending | None]:
    model = group[0].model
    final = round_ == mas.rounds and group[0].index == mas.plan.final
    starts = [book.agent_started(m, round_) for m in group]
    rows, prompt_tokens = [], []
    for m in group:
        segs = segments(model, m.system, latent_user(question, incoming, final), len(incoming))
        rows.append((segs, [b[0] for b in incoming_blocks(prov, incoming, m)]))
        prompt_tokens.append(sum(len(s) for s in segs))
    inner = [prov.inner(m) for m in group]
    link = inner[0] if all(x is inner[0] for x in inner) else RowLinks(inner)

    def on_step(k: int, n: int) -> None:
        for m in group:
            book.event(LatentStep(m.name, k, n))

    t0 = time.perf_counter()
    thoughts, state = think(model, rows, steps, link, on_step, prefixes)
    seconds = time.perf_counter() - t0
    outs, pending = [], None
    for k, m in enumerate(group):
        entry = {"round": round_, "agent": m.name, "role": m.role, "latent_steps": steps,
                 "sees": [f"{s.member.name}@{s.round}" for s in incoming], "content": "", "tokens": 0,
                 "final": final}
        book.record(entry)
        if final:
            pending = _Pending(m, state, starts[k], prompt_tokens[k], entry)
        else:
            book.model_call(m, prompt_tokens[k], 0, seconds)
            book.agent_finished(m, round_, starts[k], tokens=0, latent_steps=steps)
        outs.append(Thoughts(m, round_, thoughts[k : k + 1]))
    return outs, pending


def _decode_answer(mas: RecursiveMAS, book: Bookkeeper, p: _Pending, limit: int, round_: int,
                   question: str) -> str:
    m = p.member
    t0 = time.perf_counter()
    res = L.decode_with_usage(
        m.model, p.state, None, None, max_new_tokens=limit, temperature=mas.temperature,
        on_token=lambda piece: book.event(TextDelta(m.name, piece)),
    )
    answer, tokens = res.texts[0], res.tokens[0]
    book.model_call(m, p.prompt_tokens, tokens, time.perf_counter() - t0)
    book.partial_answer = answer
    conversation = [
        {"role": "system", "content": m.system},
        {"role": "user", "content": f"Question:\n{question.strip()}"},
    ]
    extra, more = follow_tool_calls(mas, book, m, conversation, answer, round_, True, limit)
    answer, tokens = answer + extra, tokens + more
    p.entry.update(content=answer, tokens=tokens)
    book.agent_finished(m, round_, p.started, tokens=tokens, latent_steps=mas.latent_steps)
    return answer
