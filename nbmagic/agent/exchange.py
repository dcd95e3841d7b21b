"""How the Reflector's refinement reaches the Tool-caller: one function, one place to switch.

Each round the tool-caller writes a cell, the kernel runs it, and the reflector
judges what the kernel showed (:mod:`.reflector`). When the cell is not accepted,
the reflector's refinement goes back to the tool-caller. In **text** mode that is
a chat turn: the tool-caller's own reply, then the refinement as the next user
message (the deliberation loop of :mod:`nbmagic.mas.deliberation`, with the kernel as
the Python tool). **Latent** mode (hidden states spliced into the tool-caller's
prompt, :mod:`nbmagic.mas.latent`) runs on ``hf:`` and, through
:mod:`nbmagic.llm.latent_llamacpp`, on ``gguf:`` models, but the exchange stays text,
for two measured reasons: the reflector is exact rules over the kernel's outputs (it has
no hidden states to pass), and in the RecursiveMAS evaluation latent collaboration
answered fewer questions than text on both local models (README, "Measured").
:func:`exchange_mode` is the switch that a winning measurement would flip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Messages = list[dict[str, str]]
MODES = ("auto", "text", "latent")


#: whether the loop splices a reflector's latent thoughts into the tool-caller's prompt: no, because
#: the reflector is rules (no hidden states) and latent lost to text where it was measured (see above).
#: Planning with ``--planner mas`` uses RecursiveMAS, latent where its ``mode`` says so.
LATENT_READY = False


def exchange_mode(model: Any, wanted: str = "auto") -> str:
    """``text`` or ``latent`` for this model; ``auto`` is text until latent is ready and measured."""
    if wanted == "latent" and LATENT_READY and getattr(model, "supports_latent", False):
        return "latent"
    return "text"


def exchange(base: Messages, reply: str, refinement: str, *, mode: str = "text",
             fit: Callable[[Messages, str, str], Messages] | None = None) -> Messages:
    """The tool-caller's next prompt: its base prompt, its last reply, the reflector's refinement.

    ``fit`` (the run's window budget) shrinks the reply and the base prompt first when the
    three do not fit the model's window.
    """
    if mode not in ("text", "latent"):
        raise ValueError(f"exchange mode must be text or latent, not {mode!r}")
    if fit is not None:
        return fit(base, reply, refinement)
    return [*base, {"role": "assistant", "content": reply}, {"role": "user", "content": refinement}]
