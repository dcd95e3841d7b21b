"""Synthetic event streams, shaped like what the engines emit, for renderer tests."""

from __future__ import annotations

from nbmagic import events as ev


def agent_stream(*, interrupted_after_step: int | None = None) -> list[ev.Event]:
    """A notebook-agent run: MAS planning (2 rounds × 2 agents), a 2-step plan, one fix."""
    out: list[ev.Event] = [
        ev.RunStarted("agent", "Plot monthly revenue", "openai-compat:test-model"),
        ev.RunStarted("mas", "plan", "openai-compat:test-model"),
    ]
    for r in (1, 2):
        out.append(ev.RoundStarted(r, 2))
        for agent in ("planner", "critic"):
            out.append(ev.AgentStarted(agent, agent, "latent", round=r))
            for k in range(1, 9):
                out.append(ev.LatentStep(agent, k, 8))
            if r == 2 and agent == "critic":
                for word in ["1.", "Load", "the", "CSV\n2.", "Plot", "revenue", "per", "month"]:
                    out.append(ev.TextDelta(agent, word + " "))
            out.append(ev.AgentFinished(agent, tokens=12 if agent == "critic" and r == 2 else 0,
                                        seconds=0.5, latent_steps=8, round=r))
        out.append(ev.RoundFinished(r, 2))
    out.append(ev.ModelCall("test-model", 100, 20, 0.3))
    out.append(ev.Finished("mas", None, 2.0))
    out.append(ev.PlanReady(("Load the CSV", "Plot revenue per month")))
    for i, title in enumerate(("Load the CSV", "Plot revenue per month")):
        if interrupted_after_step is not None and i >= interrupted_after_step:
            break
        out.append(ev.StepStarted(i, 2, title))
        out.append(ev.TextDelta("coder", "```python\ndf = pd.read_csv('sales.csv')\n```"))
        if i == 1:
            out.append(ev.CellRun(i, 1, "plot()", False, "NameError: name 'plot' is not defined", 0.1))
        out.append(ev.CellRun(i, 2 if i == 1 else 1, "df.plot()", True, None, 0.2))
        out.append(ev.CellAccepted({"cell_type": "markdown", "source": f"### {title}", "metadata": {}}, i))
        out.append(ev.CellAccepted({"cell_type": "code", "source": "df.plot()", "metadata": {},
                                    "outputs": [], "execution_count": i + 1}, i))
        out.append(ev.StepFinished(i, True, 2 if i == 1 else 1))
        out.append(ev.ModelCall("test-model", 50, 10, 0.2))
    return out


def rlm_stream() -> list[ev.Event]:
    """An RLM run: three iterations, sub-calls against a budget of 10, one failed sub-call."""
    out: list[ev.Event] = [ev.RunStarted("rlm", "How many chapters mention whales?", "openai-compat:test-model")]
    out.append(ev.RlmIteration(1, "print(len(text))", "120000", 0.1))
    for n in range(1, 5):
        out.append(ev.SubCall(n, 10 - n, prompt_chars=1000, ok=n != 3))
    out.append(ev.RlmIteration(2, "chunks = [text[i:i+1000] for i in range(0, len(text), 1000)]\n"
                                  "answers = llm_query_batched(chunks)", "done: 4 answers", 1.5))
    out.append(ev.ModelCall("sub-model", 400, 40, 0.5))
    out.append(ev.RlmIteration(3, "submit('7 chapters')", "", 0.0))
    out.append(ev.Finished("rlm", None, 2.0))
    return out
