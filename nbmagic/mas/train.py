"""Training RecursiveMAS links; the models stay frozen.

Only the links learn (one inner link per agent, one outer link per hop of the pattern).

* **Inner loop** (per agent, plain text): ``1 − cos(R_in(h_t), Emb(x_{t+1}))``: the inner
  link learns to turn the hidden state at position t into the embedding of the token that
  follows, so latent thoughts land where real input embeddings live.
* **Outer loop** (the whole system): cross-entropy of the answer, teacher-forced right
  after the final agent's latent thoughts in the last round, through every round and agent.

The outer loop runs the frozen models WITH autograd on: their parameters have
``requires_grad=False`` but the activations between links stay on the graph, so the loss
reaches every link, the first agent's inner link of round 1 included (running frozen models
under ``no_grad``, as the seed article does, would leave all but the last link untrained).
``gradient_checkpointing=True`` recomputes each agent pass in the backward pass instead of
keeping its activations: memory of one pass instead of all of them.

AdamW, linear warmup then cosine decay, gradient clipping (1.0), mini-batches.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from nbmagic.errors import ConfigError, RunInterrupted
from nbmagic.mas import latent as L
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
from nbmagic.mas.hf_latent import answer_loss
from nbmagic.mas.links import LinkSet, embedding_norm

if TYPE_CHECKING:
    from nbmagic.llm.hf import HFChatModel
    from nbmagic.mas.team import Member, Team


class System(Protocol):
    """What training needs of a system (a :class:`~nbmagic.mas.system.RecursiveMAS`): its
    team, and a place for the links it trains."""

    team: Team
    links: LinkSet | None


@dataclass
class Example:
    """One training item: a question, its answer, and optional intermediate texts by field."""

    question: str
    answer: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 1
    lr: float = 3e-4
    batch_size: int = 4
    warmup: float = 0.1  # fraction of outer steps spent warming up
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    inner_steps: int = 0  # cosine-alignment steps per agent before the outer loop
    inner_lr: float = 1e-3
    max_answer_tokens: int = 64
    max_text_tokens: int = 256
    gradient_checkpointing: bool = False
    link_type: str = "ln"
    seed: int = 0
    max_steps: int | None = None

    def validate(self) -> None:
        """Refuse settings that would crash late (after the models loaded) or train backwards."""
        for name in ("epochs", "batch_size", "max_answer_tokens", "max_text_tokens"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1.")
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ConfigError("max_steps must be at least 1 (or left unset).")
        if self.inner_steps < 0:
            raise ConfigError("inner_steps must be 0 or more.")
        if self.lr <= 0 or self.inner_lr <= 0:
            raise ConfigError("Learning rates must be positive.")
        if self.grad_clip <= 0:
            raise ConfigError("grad_clip must be positive (a negative clip would flip the gradients).")
        if not 0 <= self.warmup <= 1:
            raise ConfigError("warmup is a fraction of the outer steps, from 0 to 1.")


@dataclass
class TrainReport:
    links: LinkSet
    inner_losses: dict[str, list[float]]
    outer_losses: list[float]
    seconds: float
    config: TrainConfig

    def summary(self) -> dict[str, Any]:
        return {
            "outer_steps": len(self.outer_losses),
            "first_loss": self.outer_losses[0] if self.outer_losses else None,
            "last_loss": self.outer_losses[-1] if self.outer_losses else None,
            "inner_steps": {k: len(v) for k, v in self.inner_losses.items()},
            "seconds": round(self.seconds, 2),
            "parameters": self.links.num_parameters(),
        }


# -- data ----------------------------------------------------------------------------------


def load_jsonl(path: str | Path) -> list[Example]:
    """Examples from a JSONL file with ``question`` and ``answer`` (other string fields kept)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"No dataset at {p}: give a JSONL file with one {{\"question\", \"answer\"}} per line.")
    out: list[Example] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{p}:{n} is not valid JSON ({exc.msg}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise ConfigError(f"{p}:{n} needs string fields 'question' and 'answer'.")
        if not row["question"].strip() or not row["answer"].strip():
            raise ConfigError(f"{p}:{n} has an empty question or answer.")
        extra = {k: v for k, v in row.items() if k not in ("question", "answer") and isinstance(v, str) and v.strip()}
        out.append(Example(row["question"], row["answer"], extra))
    if not out:
        raise ConfigError(f"{p} holds no examples.")
    return out


# -- links ---------------------------------------------------------------------------------


def new_links(team: Team, link_type: str = "ln") -> LinkSet:
    """Fresh trainable links for ``team`` (near-identity; LN output scale = embedding norm)."""
    norms: dict[int, float] = {}
    for m in team.members:
        if id(m.model) not in norms:
            norms[id(m.model)] = embedding_norm(m.model)
    links = LinkSet(
        link_type,
        [int(m.model.hidden_size) for m in team.members],
        team.plan.edges(),
        [norms[id(m.model)] for m in team.members],
    )
    return links.to(team.members[0].model.torch_device)


def freeze_models(team: Team) -> None:
    for m in team.members:
        m.model.model.requires_grad_(False)


# -- losses --------------------------------------------------------------------------------


def inner_loss(model: HFChatModel, link: torch.nn.Module, texts: Sequence[str], max_tokens: int = 256) -> Tensor:
    """Mean ``1 − cos(R_in(h_t), Emb(x_{t+1}))`` over the real positions of ``texts``.

    The hidden states do not depend on the link, so the frozen forward runs without a
    graph here; the gradient only needs the link's own computation.
    """
    tok = model.tokenizer
    ids = [list(tok(t, add_special_tokens=False)["input_ids"])[:max_tokens] for t in texts]
    ids = [x for x in ids if len(x) >= 2]
    if not ids:
        raise ConfigError("Inner-loop texts need at least two tokens each.")
    pad = tok.pad_token_id or 0
    batch, mask = L.left_pad(ids, pad, model.torch_device)
    with torch.no_grad():
        hidden, _ = L.extend(model, model.embed_ids(batch), mask)
        target = model.embed_ids(batch[:, 1:]).float()
    pred = link(hidden[:, :-1].float())
    valid = (mask[:, :-1] * mask[:, 1:]).bool()
    cos = F.cosine_similarity(pred, target, dim=-1)
    return (1 - cos)[valid].mean()


def _answer_ids(model: HFChatModel, answers: Sequence[str], max_tokens: int) -> list[list[int]]:
    tok = model.tokenizer
    eos = tok.eos_token_id
    out = []
    for a in answers:
        ids = list(tok(a, add_special_tokens=False)["input_ids"])[:max_tokens]
        out.append([*ids, eos] if eos is not None else ids or [tok.pad_token_id or 0])
    return out


def outer_loss(
    team: Team,
    links: LinkSet,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    gradient_checkpointing: bool = False,
    max_answer_tokens: int = 64,
) -> Tensor:
    """Cross-entropy of ``answers`` after the full recursion over ``questions`` (a batch)."""
    prov = LinkProvider(links)
    plan, members, total, steps = team.plan, team.members, team.rounds, team.latent_steps
    final_model = members[plan.final].model
    targets = _answer_ids(final_model, answers, max_answer_tokens)
    feedback: list[Thoughts] = []
    loss: Tensor | None = None
    for r in range(1, total + 1):
        incoming = feedback
        for stage in plan.stages:
            outs: list[Thoughts] = []
            for i in stage:
                m = members[i]
                final = r == total and i == plan.final
                own = answer_steps(links, steps) if final else steps  # the decode position inference uses
                result = _agent_pass(prov, m, questions, incoming, own, final, targets, gradient_checkpointing)
                if final:
                    loss = result
                outs.append(Thoughts(m, r, result))
            incoming = outs
        feedback = incoming
    assert loss is not None
    return loss


def _agent_pass(
    prov: LinkProvider,
    m: Member,
    questions: Sequence[str],
    incoming: list[Thoughts],
    steps: int,
    final: bool,
    targets: list[list[int]],
    use_checkpoint: bool,
) -> Tensor:
    backend = latent_backend(m.model)
    segs = [segments(backend, m.system, latent_user(q, incoming, final), len(incoming)) for q in questions]
    blocks = incoming_blocks(prov, incoming, m)
    inner = prov.inner(m)

    def run(*blocks_in: Tensor) -> Tensor:
        rows = [(segs[b], [blk[b] for blk in blocks_in]) for b in range(len(questions))]
        thoughts, state = think(backend, rows, steps, inner)
        return answer_loss(m.model, state, targets) if final else thoughts

    if use_checkpoint:
        return checkpoint(run, *blocks, use_reentrant=False)
    return run(*blocks)


# -- the loop -------------------------------------------------------------------------------


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to 0 at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def _texts_for(m: Member, examples: Sequence[Example]) -> list[str]:
    """Plain text for an agent's inner loop: questions, answers, and fields named after its role."""
    texts = []
    for ex in examples:
        own = [v for k, v in ex.extra.items() if k.lower() in (m.role, m.name.lower())]
        texts.extend([ex.question, ex.answer, *(own or ex.extra.values())])
    return texts


def _inner_texts(m: Member, examples: Sequence[Example], max_tokens: int) -> list[str]:
    """:func:`_texts_for` less the texts too short for a next-token pair."""
    tok = m.model.tokenizer
    texts = [t for t in _texts_for(m, examples) if len(tok(t, add_special_tokens=False)["input_ids"][:max_tokens]) >= 2]
    if not texts:
        raise ConfigError(f"No text for {m.name}'s inner loop has two tokens or more: use --inner-steps 0.")
    return texts


def train_links(
    mas: System,
    examples: Sequence[Example],
    config: TrainConfig | None = None,
    *,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    links: LinkSet | None = None,
) -> TrainReport:
    """Train ``mas``'s links on ``examples``; the system uses them afterwards (``mas.links``).

    Starts from ``links``, else from the checkpoint ``mas`` loaded (keeping its link type), else fresh.
    """
    cfg = config or TrainConfig()
    team = mas.team
    if team.mode != "latent" or any(m.model.backend != "hf" for m in team.members):
        raise ConfigError("Training links needs latent mode with every agent on a local hf: model (gradients flow through "
                          "transformers; a gguf: model can use the trained links afterwards).")
    if not examples:
        raise ConfigError("No training examples.")
    cfg.validate()
    log = on_log or (lambda _row: None)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    freeze_models(team)
    if links is None:
        if mas.links is not None:  # continue from the loaded checkpoint, in its link type
            cfg = dataclasses.replace(cfg, link_type=mas.links.link_type)
        links = new_links(team, cfg.link_type)
        if mas.links is not None:  # (it may hold hops this pattern does not use: those stay behind)
            own = links.state_dict()
            links.load_state_dict({k: v for k, v in mas.links.state_dict().items() if k in own})
    links.train()
    links.requires_grad_(True)
    t0 = time.perf_counter()

    # texts of one token teach the inner loop nothing, and a batch drawn only from them would
    # have no pairs: leave them out now (not a random crash at some step)
    inner_texts = {m.index: _inner_texts(m, examples, cfg.max_text_tokens) for m in team.members} if cfg.inner_steps else {}
    inner_losses: dict[str, list[float]] = {}
    outer_losses: list[float] = []
    try:
        for m in team.members if cfg.inner_steps else []:
            link = links.inner_for(m.index)
            opt = torch.optim.AdamW(link.parameters(), lr=cfg.inner_lr, weight_decay=cfg.weight_decay)
            texts = inner_texts[m.index]
            inner_losses[m.name] = []
            for step in range(cfg.inner_steps):
                batch = [texts[rng.randrange(len(texts))] for _ in range(cfg.batch_size)]
                loss = inner_loss(m.model, link, batch, cfg.max_text_tokens)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(link.parameters(), cfg.grad_clip)
                opt.step()
                inner_losses[m.name].append(loss.item())
                log({"phase": "inner", "agent": m.name, "step": step + 1, "total": cfg.inner_steps, "loss": inner_losses[m.name][-1]})

        per_epoch = math.ceil(len(examples) / cfg.batch_size)
        total = per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            total = min(total, int(cfg.max_steps))
        warmup = round(cfg.warmup * total)
        params = [p for p in links.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
        step = 0
        order = list(range(len(examples)))
        while step < total:
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                if step >= total:
                    break
                batch = [examples[i] for i in order[start : start + cfg.batch_size]]
                loss = outer_loss(
                    team, links, [e.question for e in batch], [e.answer for e in batch],
                    gradient_checkpointing=cfg.gradient_checkpointing, max_answer_tokens=cfg.max_answer_tokens,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                lr = opt.param_groups[0]["lr"]
                opt.step()
                sched.step()
                step += 1
                outer_losses.append(loss.item())
                log({"phase": "outer", "step": step, "total": total, "loss": outer_losses[-1], "lr": lr,
                     "grad_norm": float(norm)})
    except KeyboardInterrupt:  # keep what was trained: the caller may save it (the CLI does)
        links.eval()
        links.requires_grad_(False)
        report = TrainReport(links, inner_losses, outer_losses, time.perf_counter() - t0, cfg)
        raise RunInterrupted(
            f"Training interrupted after {len(outer_losses)} outer steps; the links trained so far are "
            "on the error's .partial (a TrainReport).", partial=report,
        ) from None

    links.eval()
    links.requires_grad_(False)
    mas.links = links
    return TrainReport(links, inner_losses, outer_losses, time.perf_counter() - t0, cfg)

