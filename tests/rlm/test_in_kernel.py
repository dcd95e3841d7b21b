"""The kernel environment inside a real ipykernel: the user's variables, a runaway turn, the answer."""

from __future__ import annotations

from typing import Any

from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


def _run(kernel: Any, source: str, timeout: float = 120) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR: " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])

    reply = kernel.client.execute_interactive(source, output_hook=hook, timeout=timeout)
    assert reply["content"]["status"] == "ok", out
    return "".join(out)


def test_rlm_over_a_dataframe_in_a_real_kernel(kernel: Any, openai_server: OpenAICompatServer) -> None:
    openai_server.set_responder(ScriptedRoot([
        code("print(context.shape)\nquit()"),  # the kernel's own exiter would shut the kernel down
        code("while True:\n    pass"),  # runs in the kernel's main thread: SIGALRM must stop it
        code("df = None\nsubmit(int(context['amount'][context['city'] == 'Oslo'].sum()))"),
    ]))
    out = _run(kernel, f"""
import pandas as pd
sales = pd.DataFrame({{"city": ["Oslo", "Lima"] * 500, "amount": range(1000)}})
df = "mine"
from nbmagic.rlm.agent import RLM
res = RLM("openai-compat:test-model@{openai_server.url}", namespace=globals(), turn_timeout=1.0).query(
    "Total amount in Oslo?", context="sales")
print("ANSWER", res.answer, res.trajectory[1]["timed_out"], df, sales.shape, "res" in globals())
""")
    assert "ANSWER 249500 True mine (1000, 2) True" in out
    # quit() ended only the model's turn; the user's kernel lives on
    assert "SystemExit(None)" in _run(kernel, "print(res.trajectory[0]['output'])", timeout=30)


def test_continue_across_cells_keeps_the_subprocess_worker(kernel: Any, openai_server: OpenAICompatServer) -> None:
    """%rlm --continue in a real kernel: the worker and its variables outlive the cell; --reset ends it."""
    openai_server.set_responder(ScriptedRoot({
        "first": [code("import os\nwords = context.split()\nsubmit(os.getpid())")],
        "again": [code("import os\nsubmit((len(words), os.getpid()))")],
    }))
    _run(kernel, f"""
%load_ext nbmagic
%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"
%config NbMagic.renderer = "plain"
text = "one two three"
""")
    _run(kernel, "%rlm --repl subprocess --context text --out a first question")
    out = _run(kernel, "%rlm --continue --out b again please\nprint('PIDS', a.answer, b.answer)")
    line = next(ln for ln in out.splitlines() if ln.startswith("PIDS"))
    _, pid, rest = line.split(" ", 2)
    assert rest.startswith("(3, ") and rest.endswith(f"{pid})")  # same worker, words still defined
    out = _run(kernel, f"%rlm --reset\nimport os\nprint('ALIVE', os.path.exists('/proc/{pid}'))")
    assert "session was reset" in out and "ALIVE False" in out
