"""One latent agent pass, shared by inference (:mod:`.latent_mode`) and training (:mod:`.train`).

    prompt  = chat(system = role prompt,
                   user   = question + one slot per incoming thought block + task line)
    parts   = ids(text before slot 1) ‖ R_out(thoughts_1) ‖ ids(text) ‖ … ‖ ids(text after)
    state   = prefill(parts)                          KV cache of the whole prompt
    thoughts, state = latent_steps(state, m, R_in)    m one-token forwards

``thoughts`` (the agent's last-layer hidden states ``[h_1 … h_m]``) go to every agent of
the next stage; the last agent's go back to the first stage next round.

Everything here talks to a :class:`~nbmagic.llm.latent.LatentBackend` (:func:`latent_backend`):
transformers (torch tensors, :mod:`.hf_latent`) or llama.cpp (numpy arrays,
:mod:`nbmagic.llm.latent_llamacpp`). This module imports neither torch nor numpy, so a
training-free latent run on a GGUF model never loads torch.

**Where the answer is decoded** is decided in one place, :func:`answer_steps`, for both
inference and training:

* with *trained* links the answering agent runs its own ``m`` latent steps and the answer
  is decoded right after them: the position training teacher-forces the answer at
  (:func:`~.hf_latent.answer_loss`), so the links learn to make it a good one;
* *training-free*, the answering agent takes no latent steps of its own: it reads the
  incoming thoughts in its prompt and decodes from the prompt's answer position (after the
  chat template's assistant header), as training-free LatentMAS does. Measured on real
  weights (SmolLM2-135M): decoding right after untrained thoughts degenerates into one
  token repeated to the length cap; from the answer position the model answers.

``R_in`` / ``R_out`` are the trained links of a :class:`~nbmagic.mas.links.LinkSet` (torch
modules, applied per step on either backend), or else training-free ones: realignment from
the model's own embedding tables (:class:`~nbmagic.mas.links.Realignment` on transformers,
:class:`~nbmagic.mas.realign.NumpyRealignment` on llama.cpp) and, between transformers
models of different widths, :class:`~nbmagic.mas.links.VocabBridge`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbmagic.errors import ConfigError
from nbmagic.mas.roles import role_title

if TYPE_CHECKING:
    from nbmagic.llm.latent import LatentBackend, Link
    from nbmagic.mas.links import LinkSet
    from nbmagic.mas.team import Member

SLOT = "<<nbmagic-latent-{}>>"


@dataclass
class Thoughts:
    """Latent thoughts one agent passed on: hidden states ``[B, m, d_source]`` (backend arrays)."""

    member: Member
    round: int
    hidden: Any


def answer_steps(links: LinkSet | None, steps: int) -> int:
    """Latent steps the answering agent takes before it decodes: ``steps`` with trained links
    (decode, and train, right after them), 0 training-free (decode at the prompt's answer
    position). The single decision of the decode position; see the module docstring."""
    return steps if links is not None else 0


def latent_backend(model: Any) -> LatentBackend:
    """The latent interface of a loaded chat model (one per model, made on first use), or a
    :class:`ConfigError` saying why the model has none."""
    backend = getattr(model, "backend", "")
    if backend == "hf":
        from nbmagic.mas.hf_latent import HFLatent

        return HFLatent.of(model)
    if backend in ("gguf", "llamacpp") and hasattr(model, "latent"):
        return model.latent()  # type: ignore[no-any-return]
    raise ConfigError(
        f"{backend}:{getattr(model, 'name', model)} has no hidden states to think with (a remote model): "
        "latent mode needs a local gguf: or hf: model. Use mode='text'."
    )


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


def segments(backend: LatentBackend, system: str, user: str, slots: int) -> list[list[int]]:
    """Token ids of the chat prompt cut at the slots: ``slots + 1`` lists (chat template or fallback)."""
    text, prefix = backend.chat_text([{"role": "system", "content": system}, {"role": "user", "content": user}])
    pieces: list[str] = []
    for k in range(slots):
        before, sep, text = text.partition(SLOT.format(k))
        if not sep:  # a template that drops the user text: thoughts go at the end of the prompt
            text = before
            break
        pieces.append(before)
    pieces.append(text)
    out = [backend.tokenize(p) if p else [] for p in pieces]
    out[0] = list(prefix) + out[0]
    while len(out) < slots + 1:
        out.insert(-1, [])
    return out


def interleave(segs: Sequence[list[int]], blocks: Sequence[Any]) -> list[Any]:
    """``ids_0, block_0, ids_1, block_1, …, ids_n``: one prompt row as prefill parts."""
    parts: list[Any] = []
    for k, seg in enumerate(segs):
        if seg:
            parts.append(seg)
        if k < len(blocks):
            parts.append(blocks[k])
    return parts


# -- links ---------------------------------------------------------------------------------


class LinkProvider:
    """The inner link of an agent and the outer link of a hop, as callables on the agents'
    backend arrays: trained if given (torch modules), else training-free (computed once per
    model and kept with it)."""

    def __init__(self, links: LinkSet | None) -> None:
        self.links = links

    def inner(self, m: Member) -> Link:
        backend = latent_backend(m.model)
        if self.links is not None:
            return backend.trained(self.links.inner_for(m.index))
        return backend.realignment()

    def outer(self, src: Member, dst: Member) -> Link:
        b_src, b_dst = latent_backend(src.model), latent_backend(dst.model)
        if self.links is not None:
            if b_src.kind != b_dst.kind:
                raise ConfigError(f"{src.name} ({b_src.kind}) and {dst.name} ({b_dst.kind}) run on different "
                                  "backends: latent thoughts cannot cross them. Use one backend for every agent.")
            return b_dst.trained(self.links.outer_for(src.index, dst.index))
        if src.model is dst.model:
            return b_dst.realignment()
        return b_dst.bridge_from(b_src)


def incoming_blocks(prov: LinkProvider, sources: Sequence[Thoughts], dst: Member) -> list[Any]:
    """Each source's thoughts mapped by its outer link into ``dst``'s embedding space: ``[B, m, d_dst]``."""
    backend = latent_backend(dst.model)
    return [backend.apply_link(prov.outer(src.member, dst), src.hidden) for src in sources]


# -- the pass --------------------------------------------------------------------------------


def think(
    backend: LatentBackend,
    rows: Sequence[tuple[list[list[int]], list[Any]]],
    steps: int,
    link: Link | None,
    on_step: Callable[[int, int], None] | None = None,
    prefixes: dict[Any, Any] | None = None,
) -> tuple[Any, Any]:
    """One agent pass for a batch of rows (segments, thought blocks ``[m, d]``): prefill the
    prompts, then ``steps`` latent thoughts; returns thoughts ``[R, steps, d]`` and the state.

    With ``prefixes`` (inference, one row), the prompt text before the first thought slot —
    system prompt and question, the same for an agent in every round — is read once and its
    KV cache reused (forked) in later rounds; only the thoughts and the text after them are new.
    """
    if prefixes is not None and len(rows) == 1 and len(rows[0][0]) > 1 and rows[0][0][0]:
        segs, blocks = rows[0]
        key = (id(backend), tuple(segs[0]))
        base = prefixes.get(key)
        if base is None:
            base = prefixes[key] = backend.prefill([[segs[0]]])
        state = backend.prefill([interleave([[], *segs[1:]], blocks)], backend.fork(base))
    else:
        state = backend.prefill([interleave(segs, blocks) for segs, blocks in rows])
    return backend.latent_steps(state, steps, link, on_step)
