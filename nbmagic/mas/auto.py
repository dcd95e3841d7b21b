"""What ``mode="auto"`` picks, and why: latent only where the evaluation says it is as accurate.

Latent mode is always faster and generates far fewer tokens, but on small models it is not
always as accurate as the same recursion in text. ``auto`` therefore picks latent for a
pattern only when ``python -m nbmagic.eval mas`` measured training-free latent at least as
accurate as text for it (:data:`EVIDENCE`); for patterns without a measurement it picks
text. The reason goes to the run as a :class:`~nbmagic.events.Notice` and
``RecursiveMAS.mode_reason``. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """Accuracy (%) of latent and text RecursiveMAS on one pattern, and the run that measured it."""

    latent: int
    text: int
    run: str


#: `python -m nbmagic.eval mas --questions 12 --rounds 1` on the embedded SmolLM2-135M-Instruct
#: (docs/recursive-mas.md, "Evaluation"); training-free latent, greedy, through transformers.
#: Through llama.cpp the same run gave sequential 33 % vs 50 %, mixture 25 % vs 50 %: the same choice.
EVIDENCE: dict[str, Evidence] = {
    "sequential": Evidence(42, 50, "eval mas, embedded SmolLM2-135M, 12 questions, rounds 1"),
    "mixture": Evidence(25, 58, "eval mas, embedded SmolLM2-135M, 12 questions, rounds 1"),
}


def choose_mode(pattern: str) -> tuple[str, str]:
    """``("latent" | "text", why)`` for ``mode="auto"`` when every agent could think in latent space."""
    ev = EVIDENCE.get(pattern)
    if ev is None:
        return "text", (f"text mode: no evaluation of latent {pattern} yet (python -m nbmagic.eval mas "
                        "--patterns " + pattern + "); pass mode='latent' to use it")
    if ev.latent >= ev.text:
        return "latent", f"latent mode: latent {pattern} was as accurate as text ({ev.latent}% vs {ev.text}%, {ev.run})"
    return "text", (f"text mode: latent {pattern} was less accurate than text ({ev.latent}% vs {ev.text}%, "
                    f"{ev.run}); pass mode='latent' for its speed")
