"""The notebook agent's prompts, in one place.

Each prompt carries a fixed heading (``PLAN_HEADING``, ``CODE_HEADING``,
``FIX_HEADING``) so that logs, trajectories and scripted test models can tell
the three kinds of request apart without guessing. The wording asks for the
two shapes :mod:`nbmagic.agent.codegen` parses: a numbered list of steps, and
a short markdown explanation followed by one fenced ``python`` block.
"""

from __future__ import annotations

PLAN_HEADING = "## Plan the notebook"
CODE_HEADING = "## Write the cell for step"
FIX_HEADING = "## The cell failed"

SYSTEM = (
    "You are a careful data scientist working inside a live Jupyter notebook. "
    "You write short, correct, plain Python cells (no IPython magics, no pip installs) that run "
    "in the user's kernel, where the variables listed in the context already exist. "
    "Never delete or overwrite the user's existing variables: create new names instead. "
    "Use pandas for tables and matplotlib for plots (call plt.show() after a plot)."
)


def plan_prompt(request: str, context: str, max_steps: int) -> str:
    """The question handed to RecursiveMAS: a plan, not code."""
    return (
        f"{PLAN_HEADING}: {request}\n\n"
        f"{context}\n\n"
        f"Break the request into at most {max_steps} notebook steps, in order. Each step becomes "
        "one markdown cell and one code cell. Answer with a numbered list only, one short "
        "imperative sentence per step (for example `1. Load the CSV file into a DataFrame`). "
        "Do not write code."
    )


def code_prompt(
    request: str, context: str, plan: list[str], index: int, done: list[str]
) -> str:
    """Ask for one step's cell: markdown explanation plus one python block."""
    steps = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(plan))
    finished = "\n".join(done) if done else "(none yet)"
    return (
        f"{CODE_HEADING}\n\n"
        f"Request: {request}\n\n"
        f"{context}\n\n"
        f"Plan:\n{steps}\n\n"
        f"Cells already run in this session (their variables exist):\n{finished}\n\n"
        f"Step {index + 1} of {len(plan)}: {plan[index]}\n\n"
        "Answer with one or two sentences of markdown explaining the step, then exactly one "
        "fenced code block:\n```python\n# code for this step only\n```\n"
        "End the block with the expression to show (a table, a value) if there is one."
    )


def fix_prompt(code: str, error: str, *, timed_out: bool, timeout: float) -> str:
    """Feed a failure back: the code that ran and the (ANSI-free, truncated) error."""
    why = (
        f"It ran longer than {timeout:g} s and was interrupted; make it finish quickly "
        "(no infinite loops, smaller work)."
        if timed_out
        else "It raised an error."
    )
    return (
        f"{FIX_HEADING}\n\n{why}\n\nCode:\n```python\n{code}\n```\n\nError:\n```\n{error}\n```\n\n"
        "Answer with a one-line markdown note on the fix, then the complete corrected cell as "
        "exactly one fenced ```python block."
    )


def malformed_prompt() -> str:
    """When the reply had no code block."""
    return (
        f"{FIX_HEADING}\n\nYour answer had no ```python code block. Answer again: one or two "
        "sentences of markdown, then exactly one fenced ```python block with the code."
    )
