"""Prompts fit the model's window: measured with the embedded model's own tokenizer."""

from __future__ import annotations

import pandas as pd
import pytest

from nbmagic.agent.budget import Budget, count, window
from nbmagic.agent.core import NotebookAgent
from nbmagic.agent.options import SHARED


@pytest.fixture(scope="module")
def small_window_model(embedded_gguf_path):
    """The embedded SmolLM2 with a 2048-token window: the size where ordinary prompts overflowed."""
    from nbmagic.llm.specs import load_model

    model = load_model(f"gguf:{embedded_gguf_path}", n_ctx=2048, default_params={"temperature": 0.0})
    yield model
    model.close()


@pytest.mark.real_model
def test_fit_cuts_the_least_important_part_first(small_window_model):
    model = small_window_model
    assert window(model) == model.n_ctx == 2048
    budget = Budget(model, reply_tokens=400)
    parts = {"head": "Step 2 of 3: compute the total.", "done": "x = 1\n" * 3000, "context": "col a, b\n" * 50}

    def build(p):
        return [{"role": "system", "content": "You write code."},
                {"role": "user", "content": f"{p['context']}\n{p['done']}\n{p['head']}"}]

    assert count(model, build(parts)) > 2048
    messages, cut = budget.fit(build, parts, ("done", "context"))
    assert cut == ["done"]  # the context was small enough once the earlier cells shrank
    assert count(model, messages) <= budget.prompt_tokens
    assert messages[1]["content"].endswith("Step 2 of 3: compute the total.")
    assert budget.reply_room(messages) == 400


@pytest.mark.real_model
def test_agent_run_with_a_huge_context_fits_a_small_window(small_window_model, tmp_path):
    """A wide table, long variables and a long request used to fail the whole run (ConfigError)."""
    wide = pd.DataFrame({f"measurement_column_{i:03d}": range(5) for i in range(200)})
    ns = {"wide": wide, "notes": "lorem ipsum " * 4000, **{f"v{i}": list(range(300)) for i in range(30)}}
    agent = NotebookAgent(small_window_model, planner="none", max_fixes=0, answer=False, cell_timeout=20,
                          max_tokens=200)
    result = agent.run("Show the number of columns of the DataFrame wide " + "(be brief) " * 300, ns,
                       base_dir=tmp_path)
    attempts = [t for t in result.trajectory if t["type"] == "attempt"]
    assert attempts  # the model was asked, its reply parsed or fed back: no overflow error
    cut = [t for t in result.trajectory if t["type"] == "budget"]
    assert cut and cut[0]["window"] == 2048


def test_magic_and_cli_take_the_same_agent_options():
    from nbmagic.cli import build_parser
    from nbmagic.magics import NbMagic

    generate = next(a for a in build_parser()._subparsers._group_actions[0].choices.values()
                    if any("--verify" in x.option_strings for x in a._actions))
    cli = {o for a in generate._actions for o in a.option_strings}
    magic = {o for a in NbMagic.agent.parser._actions for o in a.option_strings}
    shared = {f for flags, _ in SHARED for f in flags}
    assert shared <= cli and shared <= magic
    assert {"--planner", "--allow-install", "--stop-on-failure"} <= shared


def test_agent_magic_accepts_planner(ipython_shell):
    from IPython.core.magic_arguments import parse_argstring

    from nbmagic.magics import NbMagic

    args = parse_argstring(NbMagic.agent, "--planner single --allow-install")
    assert args.planner == "single" and args.allow_install
    with pytest.raises(Exception, match="invalid choice"):
        parse_argstring(NbMagic.agent, "--planner wizard")
