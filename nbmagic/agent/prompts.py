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
ANSWER_HEADING = "## Answer the request"
REFINE_HEADING = "## Revise the plan"

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
    request: str, context: str, plan: list[str], index: int, done: list[str], *,
    part: str = "", notes: str = "",
) -> str:
    """Ask for one step's cell: markdown explanation plus one python block.

    ``part`` is the step's own words from the request (a multi-part request is done one
    part per cell); ``notes`` carries what the cell must respect: the loaded DataFrames
    to use, the request's explicit instructions, the exact answer line to print.
    """
    finished = "\n".join(done) if done else "(none yet)"
    answer_form = (
        "Answer with one or two sentences of markdown explaining the step, then exactly one "
        "fenced ```python code block holding the complete, runnable code for this step only "
        "(with its imports; use the exact file names and column names given above). "
        "End the block with the expression to show (a table, a value) if there is one."
    )
    if part:
        # A small model copies every step it is shown into one cell (as comments, then code), so a
        # part's prompt names no other step: the request for context, then this part, last.
        return (
            f"{CODE_HEADING}\n\n"
            f"{context}\n\n"
            f"Cells already run in this session (their variables exist):\n{finished}\n\n"
            + (f"{notes}\n\n" if notes else "")
            + f"The user's request: {request}\n\n"
            f"Step {index + 1} of {len(plan)}: {plan[index]}\n"
            f"This cell does only this part of the request: {part}\n"
            "Other cells do the other parts: show only this part's result (no other tables or plots).\n\n"
            + answer_form
        )
    steps = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(plan))
    return (
        f"{CODE_HEADING}\n\n"
        f"Request: {request}\n\n"
        f"{context}\n\n"
        f"Plan:\n{steps}\n\n"
        f"Cells already run in this session (their variables exist):\n{finished}\n\n"
        + (f"{notes}\n\n" if notes else "")
        + f"Step {index + 1} of {len(plan)}: {plan[index]}\n\n"
        + answer_form
    )


def fix_prompt(code: str, error: str, *, timed_out: bool, timeout: float, hint: str = "") -> str:
    """Feed a failure back: the code that ran, the (ANSI-free, truncated) error and, when the
    agent can tell, exactly what is missing (``hint``: an import, a package, a placeholder)."""
    why = (
        f"It ran longer than {timeout:g} s and was interrupted; make it finish quickly "
        "(no infinite loops, smaller work)."
        if timed_out
        else "It raised an error."
    )
    note = f"\n\n{hint}" if hint else ""
    return (
        f"{FIX_HEADING}\n\n{why}{note}\n\nCode:\n```python\n{code}\n```\n\nError:\n```\n{error}\n```\n\n"
        "Answer with a one-line markdown note on the fix, then the complete corrected cell as "
        "exactly one fenced ```python block."
    )


def malformed_prompt() -> str:
    """When the reply had no code block."""
    return (
        f"{FIX_HEADING}\n\nYour answer had no ```python code block. Answer again: one or two "
        "sentences of markdown, then exactly one fenced ```python block with the code."
    )


EMPTY_CELL_HINT = (
    "The cell holds no executable statement (only comments, pass or a placeholder), so it does "
    "nothing. Write the actual code."
)


def empty_prompt(code: str) -> str:
    """When the reply's code block does nothing (comments or a copied placeholder only)."""
    return (
        f"{FIX_HEADING}\n\n{EMPTY_CELL_HINT}\n\nCode:\n```python\n{code}\n```\n\n"
        "Answer with a one-line markdown note, then exactly one fenced ```python block with "
        "real code for the step."
    )


def answer_prompt(request: str, observed: str) -> str:
    """The closing question: answer the request in words from what the cells printed."""
    return (
        f"{ANSWER_HEADING}: {request}\n\n"
        f"Outputs of the cells that ran:\n{observed}\n\n"
        "Answer the request in one to three plain sentences. Use only names and numbers that "
        "appear in the outputs above, copied exactly; do not invent any. No code."
    )


def refine_prompt(request: str, done: str, remaining: list[str]) -> str:
    """After a step: revise the steps still to do from what was observed."""
    rest = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(remaining)) or "(none)"
    return (
        f"{REFINE_HEADING}: {request}\n\n"
        f"Steps done, with what they showed:\n{done}\n\n"
        f"Steps still planned:\n{rest}\n\n"
        "Given what the outputs showed (column names, values, errors), answer with the revised "
        "numbered list of the steps still to do (drop steps already done or no longer needed, fix "
        "their wording to the real names). Answer `0. nothing left` when the request is done."
    )


def fix_last_error_request(code: str, error: str) -> str:
    """The request for ``%agent fix``: correct the cell that last raised."""
    return (
        "Fix this notebook cell so that it runs without the error below; keep what it was meant to do.\n\n"
        f"The cell:\n```python\n{code}\n```\n\nIts error:\n```\n{error}\n```"
    )


def repeat_prompt(earlier: int, title: str) -> str:
    """When the reply copies a cell that already ran: say so, and what this step is."""
    return (
        f"{FIX_HEADING}\n\nThis cell only repeats step {earlier}, which already ran: its variables exist. "
        f"Write new code that does this step: {title}\n\n"
        "Answer with a one-line markdown note, then exactly one fenced ```python block; end it with the "
        "expression that shows the result."
    )


def judged_prompt(code: str, output: str, refinement: str) -> str:
    """The reflector's refinement when the cell ran but its output does not answer the part."""
    return (
        f"{FIX_HEADING}\n\nThe cell ran, but its output does not answer the step. {refinement}\n\n"
        f"Code:\n```python\n{code}\n```\n\nOutput:\n```\n{output or '(nothing)'}\n```\n\n"
        "Answer with a one-line markdown note on the change, then the complete corrected cell as "
        "exactly one fenced ```python block."
    )
