"""The cheap plan: a request split into parts and explicit instructions, without a model call.

A request such as ``Analyze sales.csv: the top 5 products by revenue and a monthly
revenue trend plot`` holds two deliverables. Asked as one step, a small model
does one of them (or neither); asked part by part, each cell has one job and its
output can be checked against that job. The split is deterministic (punctuation,
lists and ``and`` before a new deliverable), so it costs nothing before the first
cell; a model's plan (``--planner mas``) may replace it for remote models.

Sentences that *instruct* rather than ask (``Print the answer as `Answer: <n>```,
``Round to 2 decimals``, ``Use the median``) are kept verbatim as
:attr:`Request.instructions`: they reach the cell that answers, never a title.

Shapes::

    split_request("Analyze a.csv: the top 5 products by revenue and a monthly revenue trend plot")
    -> Request(parts=[Part("Top 5 products by revenue", kind="table"),
                      Part("Monthly revenue trend plot", kind="plot")], instructions=[])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: words that start a new deliverable after "and" / a comma
_DELIVERABLE = (
    r"(?:a|an|the|its|their|also|then)?\s*(?:plot|chart|graph|histogram|bar|line|scatter|table|list|count|number|"
    r"average|mean|median|total|sum|top|bottom|monthly|weekly|daily|yearly|annual|trend|distribution|correlation|"
    r"breakdown|summary|share|percentage|ratio|rank|ranking|comparison|pivot|heatmap|boxplot|box)\b"
)
_VERB = (r"(?:plot|show|compute|calculate|list|count|find|draw|make|report|give|print|create|build|visuali[sz]e|"
         r"compare|rank|summari[sz]e|identify|determine|estimate|fit|which|what|how|tell|state|say|name|plot)\b")
_SPLIT_AND = re.compile(rf",?\s+(?:and|plus|as well as)\s+(?=(?:{_DELIVERABLE}|{_VERB}))", re.I)
_SPLIT_COMMA = re.compile(rf",\s+(?=(?:{_VERB}))", re.I)
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|\([a-z0-9]\)|[a-z][.)]|[-*•])\s+(.+)$", re.I)
_INLINE_ITEM = re.compile(r"(?:^|\s)\(?(?:\d{1,2}|[a-h])\)\s+", re.I)
#: a sentence that tells how, not what: kept verbatim for the answering cell
_INSTRUCTION = re.compile(
    r"^\s*(?:please\s+)?(?:print|output|format|write|answer|report the answer|round|use|using|express|give the answer|"
    r"return|display the answer|the answer|your answer|do not|don't|only|make sure|ensure|assume|ignore|exclude|"
    r"include|treat|consider|count .* as|end with)\b|\b(?:decimal|rounded|round to|exactly|format|answer line|"
    r"in the form|as follows|print(?:ed)? as|method|percent sign)\b", re.I)
_PREFIX = re.compile(r"^\s*(?:please\s+)?(?:analy[sz]e|using|use|with|from|in|load|read|open|for)\b[^:\n]{0,160}?"
                     r"(?::|(?<=\.csv|\.tsv|\.txt)|(?<=json|xlsx),)\s*", re.I)
#: a piece that only loads a file the agent loads itself
_LOAD_ONLY = re.compile(r"^\s*(?:load|read|open|import)\b[^,;]*$", re.I)
_QUOTED = re.compile(r"`([^`\n]{2,120})`|\"([^\"\n]{2,120})\"|'([^'\n]{4,120})'")
_FILE = re.compile(r"[\w./-]+\.(?:csv|tsv|json|jsonl|parquet|xlsx|txt)\b", re.I)

MAX_TITLE = 60


@dataclass(frozen=True)
class Part:
    """One deliverable: a short title, its words from the request, and what output answers it."""

    title: str
    text: str
    kind: str = "other"  # plot | table | count | number | name | list | other


@dataclass(frozen=True)
class Request:
    """A request read without a model: its parts in order and its explicit instructions."""

    text: str
    parts: list[Part]
    instructions: list[str] = field(default_factory=list)
    answer_line: str | None = None  # an exact line the request wants printed, e.g. "Answer: <n>"

    @property
    def multi(self) -> bool:
        return len(self.parts) > 1


def part_kind(text: str) -> str:
    """What kind of output answers ``text``: a figure, a table, a count, a number, a name."""
    t = text.lower()
    if re.search(r"\b(plot|chart|graph|histogram|visuali[sz]|heatmap|boxplot|scatter|draw)\w*", t):
        return "plot"
    if re.search(r"\bhow many\b|\bnumber of\b|\bcount\b(?! of the)", t):
        return "count"
    if re.search(r"\b(top|bottom)\s+\d+|\btable\b|\blist\b|\bper\b|\bby (?:each|every)\b|\bbreakdown\b|\beach\b", t):
        return "table"
    if re.search(r"\bwhich\b|\bwho\b|\bwhat (?:is the name|product|region|city|month)", t):
        return "name"
    if re.search(r"\b(average|mean|median|total|sum|percentage|share|ratio|correlation|std|standard deviation|"
                 r"variance|min|max|minimum|maximum|rate|how much)\b", t):
        return "number"
    return "other"


def short_title(text: str) -> str:
    """A heading from a part's words: no file names, no leading article, at most ~60 characters."""
    t = re.sub(r"(?:\s+(?:in|from|of|using|for))?\s*" + _FILE.pattern, "", text, flags=re.I)
    t = re.sub(r"\s+", " ", t).strip(" .,;:-")
    t = re.sub(r"\s+([?!])", r"\1", t)
    t = re.sub(r"^(?:please|also|then|and)\s+", "", t, flags=re.I)
    t = re.sub(r"^(?:the|a|an)\s+", "", t, flags=re.I)
    t = re.sub(r"\s+(?:in|from|of)\s*$", "", t)
    if len(t) > MAX_TITLE:
        cut = t[:MAX_TITLE].rsplit(" ", 1)[0]
        t = cut.rstrip(" ,;:-") + "…"
    return (t[:1].upper() + t[1:]) if t else "Analysis"


def answer_line(text: str) -> str | None:
    """The exact line a request asks to print (``Answer: <n>``), read from a quoted format."""
    for m in _QUOTED.finditer(text):
        quoted = next(g for g in m.groups() if g)
        before = text[max(0, m.start() - 80): m.start()].lower()
        if re.search(r"print|output|format|line|answer|form|report|end with|as\s*$", before) and (
                ":" in quoted or "<" in quoted or "{" in quoted or re.search(r"\bX\b|\bN\b|\.\.\.", quoted)):
            return quoted.strip()
    return None


def _sentences(text: str) -> list[str]:
    """Sentences and lines; abbreviations like ``e.g.`` and numbers like ``2.5`` do not end one."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        pieces = re.split(r"(?<=[.!?])\s+(?=[A-Z(`\"'])", line.strip())
        out.extend(p.strip() for p in pieces if p.strip())
    return out


def _split_deliverables(sentence: str) -> list[str]:
    """One question sentence into its deliverables: ``;``, inline ``(a) … (b)``, ``and a plot``."""
    pieces: list[str] = []
    for chunk in re.split(r";\s*", sentence):
        items = [i for i in _INLINE_ITEM.split(chunk) if i.strip()]
        for item in items if len(items) > 1 else [chunk]:
            for sub in _SPLIT_AND.split(item):
                pieces.extend(s for s in _SPLIT_COMMA.split(sub))
    pieces = [p.strip(" ,.;") for p in pieces if len(p.strip(" ,.;").split()) >= 2]
    return pieces or [sentence.strip()]


def split_request(text: str, *, max_parts: int = 6) -> Request:
    """Read ``text`` into parts and instructions (see the module docs); never fails.

    A request that holds one deliverable comes back as one part whose text is the
    whole question (instructions included), so nothing is lost by splitting.
    """
    body = text.strip()
    lines = [ln for ln in body.splitlines() if ln.strip()]
    listed = [m.group(1).strip() for ln in lines if (m := _LIST_ITEM.match(ln))]
    head = _PREFIX.sub("", lines[0]) if lines else ""
    questions: list[str] = []
    instructions: list[str] = []
    sentences = _sentences(body) if len(listed) < 2 else [ln for ln in lines if not _LIST_ITEM.match(ln)]
    for i, s in enumerate(sentences):
        s_body = _PREFIX.sub("", s) if i == 0 else s
        if i > 0 and _INSTRUCTION.search(s_body) and not re.search(r"\?\s*$", s_body):
            instructions.append(s)
        elif s_body.strip():
            questions.append(s_body)
    pieces: list[str] = list(listed)
    if len(listed) < 2:
        pieces = []
        for q in questions:
            pieces.extend(_split_deliverables(q) if len(questions) <= 2 else [q])
    elif head and not _LIST_ITEM.match(lines[0]) and not questions:
        pass
    pieces = [p for p in pieces if p.strip() and not (_LOAD_ONLY.match(p) and _FILE.search(p))][:max_parts]
    if len(pieces) <= 1:
        only = " ".join(questions).strip() or head or body
        parts = [Part(short_title(only), body, part_kind(only))]
    else:
        parts = [Part(short_title(p), p, part_kind(p)) for p in pieces]
    return Request(body, parts, instructions, answer_line(body))
