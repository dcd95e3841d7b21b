"""The markdown cells: they explain the analysis, and never show the agent's prompt.

Small models echo their prompt (``Step 2 of 2: …``, ``the DataFrame exists, use it``,
``Answer with one or two sentences``) in the prose before the code block. That prose
is the user's notebook, so every sentence is checked: one that repeats six words in a
row of the prompt the model got, or carries one of the prompt's fixed phrases, is
dropped; when nothing is left, the explanation is written from the part itself.
"""

from __future__ import annotations

import re

from nbmagic.agent.parts import Part

#: phrases only the agent's prompts use
PROMPT_PHRASES = re.compile(
    r"step \d+ of \d+|^\s*step \d+\s*[:.]|use it \(do not|do not read the file|the dataframe exists|cells already run|"
    r"answer with|fenced|```|code block|write the cell|^\s*request\s*:|^\s*plan\s*:|the cell failed|"
    r"instructions from the request|explaining the step|this step only|pandas idioms|## |"
    # the fix prompts' words, which a model echoes in the prose of its fix reply
    r"does not answer the step|the cell ran\b|corrected cell|actual code|the code does nothing|"
    r"no executable statement|only comments|it showed:", re.I | re.M)
#: a chat model talking to the user instead of explaining the analysis ("I'm ready to help. What's
#: your request?", which the embedded model wrote into make run's notebook); a question never explains,
#: nor does a sentence that only introduces the code ("The cell is:", "Here is the code:")
CHATTER = re.compile(r"\?\s*$|:\s*$|^\s*(?:sure|certainly|of course|okay|ok)\b|\bI(?:'m| am) (?:ready|happy|glad) to\b|"
                     r"\blet me know\b|\bhow can I help\b|\bhope this helps\b", re.I)
_WORDS = re.compile(r"[a-z0-9_]+")
ECHO_RUN = 6
_VERB_START = re.compile(r"^(?:make|plot|show|list|count|compute|calculate|find|draw|build|create|fit|compare|"
                         r"rank|summari[sz]e|tell|give|report|print|estimate|identify|determine)\b")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i: i + n]) for i in range(len(words) - n + 1)}


def clean_explanation(text: str, prompt: str) -> str:
    """``text`` without the sentences that echo ``prompt`` (see the module docs)."""
    grams = _ngrams(prompt, ECHO_RUN)
    kept: list[str] = []
    for line in (text or "").splitlines():
        sentences = re.split(r"(?<=[.!?])\s+", line.strip())
        good = [s for s in sentences if s and not PROMPT_PHRASES.search(s) and not CHATTER.search(s)
                and not (_ngrams(s, ECHO_RUN) & grams)]
        if good:
            kept.append(" ".join(good))
    out = "\n".join(kept).strip()
    out = re.sub(r"^#+\s*", "", out)  # a heading of its own would clash with the step's
    return out if len(out) >= 12 else ""


def describe(part: Part, frames: list[str]) -> str:
    """A plain explanation written from the part, when the model's prose had none to keep."""
    data = f" from `{frames[0]}`" if len(frames) == 1 else ""
    what = part.title[:1].lower() + part.title[1:]
    what = re.sub(r"^(?:tell|show|give) me\b", "find", what)
    if _VERB_START.match(what):  # "Make a table of …" -> "We make a table of … from `sales`."
        return f"We {what.rstrip('.…')}{data}." if not what.endswith("?") else f"We {what}"
    if part.kind == "plot":
        return f"We draw {what}{data}."
    if part.kind == "count":
        return f"We count {what}{data}." if not what.startswith(("count", "how")) else f"We compute this{data}: {what}."
    return f"We compute {what}{data}." if not what.endswith("?") else f"We answer the question{data}: {part.title}"


def step_markdown(index: int, title: str, explanation: str, status: str, attempts: int, error: str | None,
                  timed_out: bool = False) -> str:
    """The markdown cell above a step's code: heading, explanation, and a note when it failed."""
    text = f"### Step {index + 1}: {title}"
    if explanation.strip():
        text += f"\n\n{explanation.strip()}"
    if status == "failed":
        why = "it timed out" if timed_out else (error or "it failed")
        text += (f"\n\n> **This step failed** after {attempts} attempt(s): {why}. "
                 "The last attempt is kept below with its error.")
    elif status == "dry-run":
        text += "\n\n*(dry run: not executed)*"
    return text
