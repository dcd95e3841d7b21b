"""Roles and collaboration patterns of RecursiveMAS.

A *pattern* arranges agents into *stages*: the agents of one stage run side by
side on the same input, the next stage sees all their outputs, and the single
agent of the last stage feeds the first stage of the next round (and, in the
final round, writes the answer). Everything a pattern means is in
:func:`arrange`, so text mode, latent mode and training walk the same graph.

Pure Python, no heavy imports: the CLI and the magics validate options with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbmagic.errors import ConfigError

PATTERNS = ("sequential", "mixture", "distillation", "deliberation")

#: role -> system prompt. Short on purpose: small local models follow short prompts better.
ROLE_PROMPTS: dict[str, str] = {
    "planner": (
        "You are the Planner in a team of agents that solve a problem together. "
        "Break the problem into short, concrete steps and point out what must be checked. "
        "Do not write the final answer."
    ),
    "critic": (
        "You are the Critic in a team of agents that solve a problem together. "
        "Check the plan and reasoning you receive for mistakes, gaps and wrong assumptions, "
        "and say precisely what to fix."
    ),
    "solver": (
        "You are the Solver in a team of agents that solve a problem together. "
        "Use the plan and the critique you receive, solve the problem step by step, "
        "and state the final answer clearly at the end."
    ),
    "math": (
        "You are the Mathematics specialist in a team of agents. "
        "Analyse the problem with precise mathematical reasoning."
    ),
    "code": (
        "You are the Programming specialist in a team of agents. "
        "Analyse the problem as a programmer: algorithms, code, edge cases."
    ),
    "science": (
        "You are the Science specialist in a team of agents. "
        "Analyse the problem with scientific knowledge and careful reasoning."
    ),
    "summarizer": (
        "You are the Summarizer of a team of specialists. Combine their analyses, resolve "
        "disagreements, and state one final answer clearly at the end."
    ),
    "expert": (
        "You are the Expert. Reason about the problem thoroughly and carefully, "
        "so that a less experienced colleague can learn from your reasoning."
    ),
    "learner": (
        "You are the Learner. Use the expert's reasoning you receive to give a concise, "
        "correct final answer."
    ),
    "reflector": (
        "You are the Reflector. Review the latest answer and tool results you receive. "
        "If the answer is correct and complete, reply with a line 'VERDICT: AGREE'. "
        "Otherwise reply with 'VERDICT: REVISE' and say exactly what to change."
    ),
    "tool_caller": (
        "You are the Tool-caller. You can run Python: put code in a ```python block and you "
        "will be shown its printed output. Use it to compute or check results, then state "
        "the final answer clearly at the end."
    ),
}

ROLE_ALIASES = {
    "tool-caller": "tool_caller",
    "toolcaller": "tool_caller",
    "tool": "tool_caller",
    "summariser": "summarizer",
    "mathematics": "math",
    "coder": "code",
    "programmer": "code",
    "teacher": "expert",
    "student": "learner",
}

#: The roles a pattern uses when only one model is given.
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "sequential": ("planner", "critic", "solver"),
    "mixture": ("math", "code", "science", "summarizer"),
    "distillation": ("expert", "learner"),
    "deliberation": ("reflector", "tool_caller"),
}

#: The line a reflector writes to end a deliberation.
AGREE_MARKER = "VERDICT: AGREE"


def normalize_role(role: str) -> str:
    """Lower-case, unify separators and resolve aliases (``Tool-Caller`` -> ``tool_caller``)."""
    if not isinstance(role, str) or not role.strip():
        raise ConfigError("An agent's role must be a non-empty string, e.g. 'planner' or 'solver'.")
    key = role.strip().lower().replace(" ", "_")
    return ROLE_ALIASES.get(key, ROLE_ALIASES.get(key.replace("_", "-"), key))


def check_pattern(pattern: str) -> str:
    name = pattern.strip().lower() if isinstance(pattern, str) else ""
    if name not in PATTERNS:
        raise ConfigError(f"Unknown pattern {pattern!r}: choose one of {', '.join(PATTERNS)}.")
    return name


def role_title(role: str) -> str:
    """How prompts name a role: ``tool_caller`` -> ``Tool-Caller``."""
    return role.replace("_", "-").title()


def system_prompt(role: str, instructions: str | None = None) -> str:
    """The system prompt of an agent: its role's prompt plus the user's own instructions."""
    base = ROLE_PROMPTS.get(role, f"You are the {role.replace('_', ' ')} in a team of agents.")
    return f"{base}\n\n{instructions.strip()}" if instructions and instructions.strip() else base


@dataclass(frozen=True)
class Plan:
    """Agents (by index) arranged in stages; ``stages[-1]`` holds the one answering agent."""

    pattern: str
    stages: tuple[tuple[int, ...], ...]

    @property
    def final(self) -> int:
        return self.stages[-1][0]

    def edges(self) -> list[tuple[int, int]]:
        """Every (source, target) hop thoughts travel along, the round-to-round hop included."""
        out: list[tuple[int, int]] = []
        for a, b in zip(self.stages, self.stages[1:], strict=False):
            out.extend((s, t) for s in a for t in b)
        if len(self.stages) > 1 or len(self.stages[0]) > 1:
            out.extend((self.final, t) for t in self.stages[0] if (self.final, t) not in out)
        else:  # a single agent feeds itself between rounds
            out.append((self.final, self.final))
        return out


def arrange(pattern: str, roles: list[str], known_custom: set[int] | None = None) -> Plan:
    """Check that ``roles`` fit ``pattern`` and arrange them into stages.

    ``known_custom`` holds the indices of agents that carry their own instructions, so
    their role may be any name. Raises :class:`ConfigError` with the fix otherwise.
    """
    pattern = check_pattern(pattern)
    custom = known_custom or set()
    if not roles:
        raise ConfigError("RecursiveMAS needs at least one agent (or a model for the default roles).")
    for i, role in enumerate(roles):
        if role not in ROLE_PROMPTS and i not in custom:
            raise ConfigError(
                f"Unknown role {role!r} for agent {i + 1}: use one of {', '.join(ROLE_PROMPTS)}, "
                "or give the agent instructions=... to define your own role."
            )
    n = len(roles)
    if pattern == "sequential":
        return Plan(pattern, tuple((i,) for i in range(n)))
    if pattern == "mixture":
        if n < 2:
            raise ConfigError("The mixture pattern needs at least two agents: specialists, then a summarizer.")
        summarizers = [i for i, r in enumerate(roles) if r == "summarizer"]
        if len(summarizers) > 1 or (summarizers and summarizers[0] != n - 1):
            raise ConfigError("The mixture pattern takes exactly one summarizer, as the last agent.")
        return Plan(pattern, (tuple(range(n - 1)), (n - 1,)))
    if pattern == "distillation":
        if n != 2:
            raise ConfigError("The distillation pattern takes exactly two agents: an expert, then a learner.")
        if roles[0] == "learner" and roles[1] == "expert":
            return Plan(pattern, ((1,), (0,)))
        return Plan(pattern, ((0,), (1,)))
    # deliberation
    if n != 2 or sorted(roles) != ["reflector", "tool_caller"]:
        raise ConfigError(
            "The deliberation pattern takes exactly two agents: a 'reflector' and a 'tool_caller'."
        )
    reflector = roles.index("reflector")
    return Plan(pattern, ((reflector,), (1 - reflector,)))
