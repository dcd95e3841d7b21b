"""A long, deterministic text for the %rlm example: a research station's log.

Thousands of routine entries and, somewhere in the middle, one line that matters
(an access code). Too long to paste into a prompt comfortably; an RLM finds the
line with code and asks a sub-model to read just that sentence.

    from long_text import make_log, VAULT
    log = make_log()          # ~400 KB of text
"""

from __future__ import annotations

import random

VAULT = "QX-7731"
CODE = "640219"

_PLACES = ["north ridge", "the lab", "hangar 2", "the greenhouse", "pump station", "the weather mast", "dock B"]
_EVENTS = [
    "routine inspection, nothing to report",
    "replaced a filter; pressure back to normal",
    "snow cleared from the solar array",
    "generator ran for {h} hours",
    "supply drone arrived with {n} crates",
    "temperature {t} °C, wind {w} km/h",
    "radio check with base camp, signal clear",
    "water tank at {p}%",
]


def make_log(entries: int = 6000, seed: int = 7) -> str:
    """The whole log as one string (one entry per line); the code sits at 61% of the way."""
    rng = random.Random(seed)
    lines = []
    needle_at = int(entries * 0.61)
    for i in range(entries):
        day, hour = divmod(i, 24)
        event = rng.choice(_EVENTS).format(h=rng.randint(1, 9), n=rng.randint(2, 40),
                                           t=rng.randint(-35, 2), w=rng.randint(0, 90), p=rng.randint(20, 100))
        lines.append(f"day {day + 1:03d} {hour:02d}:00  {rng.choice(_PLACES)}: {event}")
        if i == needle_at:
            lines.append(f"day {day + 1:03d} {hour:02d}:30  security: The access code for vault {VAULT} is {CODE}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = make_log()
    print(f"{len(text):,} characters, {text.count(chr(10)):,} lines")
