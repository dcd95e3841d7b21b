"""Questions with exact answers for RecursiveMAS, and the runs that score them.

Three kinds, generated from a seed (nothing downloaded):

``arithmetic``  a one-step word problem ("Mia has 12 stickers and gets 7 more. How many …?")
``fact``        a capital city ("What is the capital city of Peru?")
``choice``      multiple choice, four options, answer with the letter

The evaluation and training splits come from disjoint pools (other capitals, other
templates' number ranges, other category words) and no question text occurs in both, so
links trained on the ``train`` split are scored on questions they never saw.

Each question is answered by a *system*: ``single`` (the model alone, one chat call),
``text`` (RecursiveMAS, text messages), ``latent`` (RecursiveMAS latent, training-free) and
``latent-gguf`` (RecursiveMAS latent, training-free, through llama.cpp on the same GGUF),
``links`` (latent with a trained links checkpoint); and scored for accuracy, generated
tokens and seconds (:func:`format_table`).

Scoring (light, stated here so figures can be read): arithmetic takes the first number in
the reply that is not one of the question's own numbers (``12 + 7 = 19`` → 19, ``12 + 7 = 9``
→ 9); fact needs the capital's name as a word; choice takes the first standalone option
letter, else the one option whose text the reply names.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("arithmetic", "fact", "choice")
SYSTEMS = ("single", "text", "latent", "latent-gguf", "links")
SPLITS = ("eval", "train")

#: (country, capital): even rows are the evaluation pool, odd rows the training pool
CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Egypt", "Cairo"), ("Russia", "Moscow"),
    ("Peru", "Lima"), ("Greece", "Athens"), ("England", "London"), ("Austria", "Vienna"),
    ("Norway", "Oslo"), ("Kenya", "Nairobi"), ("Portugal", "Lisbon"), ("Sweden", "Stockholm"),
    ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Canada", "Ottawa"), ("Thailand", "Bangkok"),
    ("Cuba", "Havana"), ("Finland", "Helsinki"), ("Hungary", "Budapest"), ("Denmark", "Copenhagen"),
    ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Belgium", "Brussels"), ("Turkey", "Ankara"),
    ("India", "New Delhi"), ("Mexico", "Mexico City"), ("South Korea", "Seoul"), ("Australia", "Canberra"),
]

#: category -> members: even categories' words for evaluation, odd ones for training
CATEGORIES = {
    "fruit": (["apple", "banana", "cherry", "mango", "pear", "grape"],
              ["orange", "lemon", "peach", "plum", "melon", "kiwi"]),
    "animal": (["dog", "horse", "tiger", "rabbit", "lion", "sheep"],
               ["cat", "cow", "zebra", "mouse", "wolf", "goat"]),
    "color": (["red", "blue", "green", "yellow", "purple", "black"],
              ["white", "pink", "brown", "grey", "violet", "gold"]),
    "vehicle": (["car", "bus", "train", "bicycle", "truck", "boat"],
                ["plane", "tram", "taxi", "ship", "scooter", "van"]),
    "tool": (["hammer", "saw", "wrench", "drill", "shovel", "axe"],
             ["screwdriver", "pliers", "chisel", "rake", "file", "spanner"]),
}

#: (template, operation, number range): eval and train templates differ
ARITHMETIC = {
    "eval": [
        ("{name} has {a} stickers and gets {b} more. How many stickers does {name} have now?", "+", (5, 40)),
        ("A shelf holds {a} books. {b} books are taken away. How many books are left on the shelf?", "-", (10, 60)),
        ("There are {a} boxes with {b} pencils in each box. How many pencils are there in total?", "*", (2, 9)),
        ("What is {a} + {b}?", "+", (10, 50)),
    ],
    "train": [
        ("{name} had {a} coins and found {b} more. How many coins does {name} have?", "+", (3, 45)),
        ("A bus carries {a} people. At a stop {b} people get off. How many people are still on the bus?", "-", (12, 55)),
        ("{name} buys {a} bags with {b} apples in each bag. How many apples does {name} buy?", "*", (2, 9)),
        ("What is {a} plus {b}?", "+", (5, 60)),
        ("What is {a} minus {b}?", "-", (15, 70)),
    ],
}
NAMES = {"eval": ["Mia", "Tom", "Ana", "Leo", "Sara", "Ben"], "train": ["Ravi", "Ella", "Omar", "Lina", "Max", "Yuki"]}

NUMBER_ONLY = " Answer with the number only."
CITY_ONLY = " Answer with the city name only."
LETTER_ONLY = " Answer with the letter only."


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    answer: str  # canonical: a number, a city, a letter
    options: tuple[str, ...] = ()  # choice: the option texts, A first


# -- generation -------------------------------------------------------------------------------


def _arithmetic(rng: random.Random, split: str) -> Question:
    template, op, (low, high) = rng.choice(ARITHMETIC[split])
    while True:
        a, b = rng.randint(low, high), rng.randint(low if op == "*" else 2, high)
        if op == "-" and b >= a:
            a, b = b + rng.randint(1, 9), a
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        if value not in (a, b):  # an answer equal to an operand could not be told from an echo
            break
    text = template.format(a=a, b=b, name=rng.choice(NAMES[split])) + NUMBER_ONLY
    return Question("", "arithmetic", text, str(value))


def _fact(rng: random.Random, split: str) -> Question:
    pool = CAPITALS[0::2] if split == "eval" else CAPITALS[1::2]
    country, city = rng.choice(pool)
    text = rng.choice(["What is the capital city of {c}?", "Name the capital city of {c}."]).format(c=country)
    return Question("", "fact", text + CITY_ONLY, city)


def _choice(rng: random.Random, split: str) -> Question:
    side = 0 if split == "eval" else 1
    names = list(CATEGORIES)
    category = rng.choice(names)
    right = rng.choice(CATEGORIES[category][side])
    others = [rng.choice(CATEGORIES[c][side]) for c in rng.sample([n for n in names if n != category], 3)]
    options = [right, *others]
    rng.shuffle(options)
    letter = "ABCD"[options.index(right)]
    article = "an" if category[0] in "aeiou" else "a"
    listed = " ".join(f"{'ABCD'[i]}) {o}" for i, o in enumerate(options))
    text = f"Which of these is {article} {category}? {listed}." + LETTER_ONLY
    return Question("", "choice", text, letter, tuple(options))


_MAKERS = {"arithmetic": _arithmetic, "fact": _fact, "choice": _choice}


def make_questions(count: int, *, split: str = "eval", seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[Question]:
    """``count`` questions of ``split``, the kinds taking turns (arithmetic, fact, choice, …).

    Evaluation questions are distinct; training ones may repeat (the capital pool is small)
    but never equal an evaluation question."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    rng = random.Random(f"{split}:{seed}")
    exclude = set() if split == "eval" else {q.question for q in make_questions(60, split="eval", seed=seed)}
    out: list[Question] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < count:
        kind = kinds[len(out) % len(kinds)]
        q = _MAKERS[kind](rng, split)
        tries += 1
        if q.question in exclude or (split == "eval" and q.question in seen):  # training may repeat
            if tries > 50 * count + 100:  # the fact pool is small: let a kind repeat rather than spin
                raise ValueError(f"cannot make {count} distinct {split} questions of kinds {kinds}")
            continue
        seen.add(q.question)
        out.append(Question(f"{split}-{len(out) + 1:03d}-{kind}", q.kind, q.question, q.answer, q.options))
    return out


def training_rows(count: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``{"question", "answer"}`` rows of the training split (JSONL for ``train-links``)."""
    return [{"question": q.question, "answer": q.answer} for q in make_questions(count, split="train", seed=seed)]


# -- scoring ----------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _numbers(text: str) -> list[str]:
    return [n.rstrip("0").rstrip(".") if "." in n else n for n in _NUMBER.findall(text.replace(",", ""))]


def score(q: Question, reply: str) -> bool:
    """Whether ``reply`` answers ``q`` (rules in the module docstring)."""
    text = reply.strip()
    if q.kind == "arithmetic":
        given = set(_numbers(q.question))
        fresh = [n for n in _numbers(text) if n not in given]
        return bool(fresh) and fresh[0] == q.answer
    if q.kind == "fact":
        return re.search(rf"\b{re.escape(q.answer)}\b", text, re.IGNORECASE) is not None
    letter = re.search(r"(?<![A-Za-z])([A-D])(?![A-Za-z])", text)
    if letter:
        return letter.group(1) == q.answer
    named = [i for i, o in enumerate(q.options) if re.search(rf"\b{re.escape(o)}\b", text, re.IGNORECASE)]
    return len(named) == 1 and "ABCD"[named[0]] == q.answer


# -- running ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One question answered by one configuration."""

    system: str
    pattern: str
    rounds: int
    question_id: str
    kind: str
    reply: str
    correct: bool
    tokens: int  # generated (decoded) tokens, every agent included
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Config:
    """One column of the comparison: a system, and for RecursiveMAS a pattern and rounds."""

    system: str
    pattern: str = "-"
    rounds: int = 1

    @property
    def label(self) -> str:
        return self.system if self.system == "single" else f"{self.system} {self.pattern} r{self.rounds}"


def run_config(
    cfg: Config,
    model: Any,
    questions: list[Question],
    *,
    latent_steps: int = 16,
    max_new_tokens: int = 48,
    message_tokens: int = 64,
    links: Any = None,
    on_done: Any = None,
) -> list[Run]:
    """Answer every question with ``cfg``; a failure is a wrong answer with its error kept."""
    from nbmagic.errors import NbmagicError

    mas = None
    if cfg.system != "single":
        from nbmagic.mas.system import RecursiveMAS

        mas = RecursiveMAS(model=model, pattern=cfg.pattern, rounds=cfg.rounds, latent_steps=latent_steps,
                           mode="text" if cfg.system == "text" else "latent",
                           links=links if cfg.system == "links" else None,
                           max_new_tokens=max_new_tokens, message_tokens=message_tokens)
    runs: list[Run] = []
    for q in questions:
        t0 = time.perf_counter()
        try:
            if mas is None:
                res = model.chat([{"role": "user", "content": q.question}], temperature=0.0, max_tokens=max_new_tokens)
                reply, tokens = res.text, res.usage.completion_tokens
            else:
                out = mas.run(q.question)
                reply, tokens = out.answer, out.generated_tokens
            error = ""
        except NbmagicError as exc:
            reply, tokens, error = "", 0, exc.message
        run = Run(cfg.system, cfg.pattern, cfg.rounds, q.id, q.kind, reply, score(q, reply) if not error else False,
                  tokens, time.perf_counter() - t0, error)
        runs.append(run)
        if on_done is not None:
            on_done(run)
    return runs


def format_table(configs: list[Config], runs: list[Run]) -> str:
    """One row per configuration: accuracy (overall and per kind), tokens and seconds per question."""
    kinds = [k for k in KINDS if any(r.kind == k for r in runs)]
    head = ["system", "pattern", "rounds", "accuracy", *kinds, "gen tok/q", "s/q", "n"]
    rows = [head]
    for c in configs:
        mine = [r for r in runs if (r.system, r.pattern, r.rounds) == (c.system, c.pattern, c.rounds)]
        if not mine:
            continue
        n = len(mine)

        def acc(rs: list[Run]) -> str:
            return f"{100 * sum(r.correct for r in rs) / len(rs):.0f}%" if rs else "-"

        rows.append([
            c.system, c.pattern, "-" if c.system == "single" else str(c.rounds), acc(mine),
            *[acc([r for r in mine if r.kind == k]) for k in kinds],
            f"{sum(r.tokens for r in mine) / n:.1f}", f"{sum(r.seconds for r in mine) / n:.2f}", str(n),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))).rstrip() for row in rows)


def results_json(runs: list[Run]) -> list[dict[str, Any]]:
    return [asdict(r) for r in runs]
