"""Latent mode's inference driver: the RecursiveMAS recursion with latent thoughts.

Every round, stage by stage, each agent runs one agent pass (:mod:`.agent_pass`): its
prompt with the incoming thoughts spliced in, then its latent steps; the thoughts go to the
next stage, the last stage's back to the first stage next round. The last agent of the
last round decodes the answer (streamed) at the position :func:`~.agent_pass.answer_steps`
decides: right after its own latent thoughts with trained links, at its prompt's answer
position training-free.

Agents of one stage on the same model run as one batch (mixture's specialists think side
by side: a left-padded batch on transformers, one llama.cpp sequence per agent). An agent's
prompt text before its first thought slot is read once and its KV cache reused in later
rounds. Everything goes through the models' :class:`~nbmagic.llm.latent.LatentBackend`, each
inside its ``session()`` (``torch.inference_mode`` on transformers; exclusive use and a cache
emptied at the end, Ctrl-C included, on llama.cpp). No torch import here: a training-free run
on a GGUF model never loads it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbmagic.events import LatentStep, Notice, RoundFinished, RoundStarted, TextDelta
from nbmagic.mas.agent_pass import (
    LinkProvider,
    Thoughts,
    answer_steps,
    incoming_blocks,
    latent_backend,
    latent_user,
    segments,
    think,
)
from nbmagic.mas.text import follow_tool_calls

if TYPE_CHECKING:
    from nbmagic.mas.links import LinkSet
    from nbmagic.mas.team import Bookkeeper, Member, Team


def run_latent(team: Team, links: LinkSet | None, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    """Run every round in latent mode (inside every backend's session); return (answer, rounds)."""
    with contextlib.ExitStack() as stack:
        seen: set[int] = set()
        for m in team.members:
            backend = latent_backend(m.model)
            if id(backend) not in seen:
                seen.add(id(backend))
                stack.enter_context(backend.session())
        return _run(team, links, question, book, limit)


class RowLinks:
    """Different links for different rows of one batch (agents of a stage batched together):
    row ``i`` goes through ``links[i]``, rows are concatenated back (torch or numpy)."""

    def __init__(self, links: Sequence[Callable[[Any], Any]]) -> None:
        self.links = list(links)

    def __call__(self, h: Any) -> Any:
        outs = [link(h[i : i + 1]) for i, link in enumerate(self.links)]
        if hasattr(outs[0], "new_zeros"):  # torch tensors
            import torch

            return torch.cat(outs, dim=0)
        import numpy as np

        return np.concatenate(outs, axis=0)


def _run(team: Team, links: LinkSet | None, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    prov = LinkProvider(links)
    if links is not None:
        for w in links.warnings:
            book.event(Notice(f"links: {w}", "warning"))
    feedback: list[Thoughts] = []
    answer = ""
    prefixes: dict[Any, Any] = {}
    for r in range(1, team.rounds + 1):
        book.event(RoundStarted(r, team.rounds))
        incoming = feedback
        for stage in team.plan.stages:
            outs: list[Thoughts] = []
            for group in _groups([team.members[i] for i in stage]):
                final = r == team.rounds and group[0].index == team.plan.final
                steps = answer_steps(links, team.latent_steps) if final else team.latent_steps
                thoughts, pending = _group_pass(team, prov, book, group, question, incoming, r, steps, final,
                                                prefixes)
                outs.extend(thoughts)
                if pending is not None:  # the last agent of the last round: decode the answer
                    answer = _decode_answer(team, book, pending, limit, r, question)
            incoming = outs
        feedback = incoming
        book.rounds_done = r
        book.event(RoundFinished(r, team.rounds))
    return answer, team.rounds


@dataclass
class _Pending:
    """The final agent at its decode position, before its answer."""

    member: Member
    state: Any
    started: float
    prompt_tokens: int
    steps: int
    entry: dict[str, Any]


def _groups(stage: list[Member]) -> list[list[Member]]:
    """Agents of a stage that share a model, batched together; in stage order."""
    groups: dict[int, list[Member]] = {}
    for m in stage:
        groups.setdefault(id(m.model), []).append(m)
    return list(groups.values())


def _group_pass(
    team: Team,
    prov: LinkProvider,
    book: Bookkeeper,
    group: list[Member],
    question: str,
    incoming: list[Thoughts],
    round_: int,
    steps: int,
    final: bool,
    prefixes: dict[Any, Any],
) -> tuple[list[Thoughts], _Pending | None]:
    backend = latent_backend(group[0].model)
    starts = [book.agent_started(m, round_) for m in group]
    rows, prompt_tokens = [], []
    for m in group:
        segs = segments(backend, m.system, latent_user(question, incoming, final), len(incoming))
        rows.append((segs, [b[0] for b in incoming_blocks(prov, incoming, m)]))
        prompt_tokens.append(sum(len(s) for s in segs))
    inner = [prov.inner(m) for m in group]
    link = inner[0] if all(x is inner[0] for x in inner) else RowLinks(inner)

    def on_step(k: int, n: int) -> None:
        for m in group:
            book.event(LatentStep(m.name, k, n))

    t0 = time.perf_counter()
    thoughts, state = think(backend, rows, steps, link, on_step, prefixes)
    seconds = time.perf_counter() - t0
    outs, pending = [], None
    for k, m in enumerate(group):
        entry = {"round": round_, "agent": m.name, "role": m.role, "latent_steps": steps,
                 "sees": [f"{s.member.name}@{s.round}" for s in incoming], "content": "", "tokens": 0,
                 "final": final}
        book.record(entry)
        if final:
            pending = _Pending(m, state, starts[k], prompt_tokens[k], steps, entry)
        else:
            book.model_call(m, prompt_tokens[k], 0, seconds)
            book.agent_finished(m, round_, starts[k], tokens=0, latent_steps=steps)
        outs.append(Thoughts(m, round_, thoughts[k : k + 1]))
    if pending is None:
        backend.release(state)  # the thoughts are copied out; the sequences are free again
    return outs, pending


def _decode_answer(team: Team, book: Bookkeeper, p: _Pending, limit: int, round_: int, question: str) -> str:
    m = p.member
    t0 = time.perf_counter()
    backend = latent_backend(m.model)
    res = backend.decode(
        p.state, max_new_tokens=limit, temperature=team.temperature,
        on_token=lambda piece: book.event(TextDelta(m.name, piece)),
    )
    backend.release(p.state)
    answer, tokens = res.texts[0], res.tokens[0]
    book.model_call(m, p.prompt_tokens, tokens, time.perf_counter() - t0)
    book.partial_answer = answer
    conversation = [
        {"role": "system", "content": m.system},
        {"role": "user", "content": f"Question:\n{question.strip()}"},
    ]
    extra, more = follow_tool_calls(team, book, m, conversation, answer, round_, True, limit)
    answer, tokens = answer + extra, tokens + more
    p.entry.update(content=answer, tokens=tokens)
    book.agent_finished(m, round_, p.started, tokens=tokens, latent_steps=p.steps)
    return answer
