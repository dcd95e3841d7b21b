"""In a real ipykernel: generated cells cannot end the kernel, a time limit holds against code
that swallows it, and a real interrupt ends such code (issue 13)."""

from __future__ import annotations

import json
import queue
import re
import time

import pytest

from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"

SETUP = """
import os, json
os.chdir({path!r})
from nbmagic.agent.core import NotebookAgent
from nbmagic.errors import RunInterrupted
MODEL = "openai-compat:test-model@{url}"
keep = 41
"""

RUN = """
res = NotebookAgent(MODEL, planner="single", cell_timeout={timeout}, max_fixes=0).run({request!r}, shell=get_ipython())
code = [c for c in res.cells if c.cell_type == "code"]
print(json.dumps({{"failed": res.failed_steps, "seconds": res.seconds,
    "enames": [o.get("ename") for c in code for o in c.outputs if o["output_type"] == "error"],
    "evalues": [o.get("evalue") for c in code for o in c.outputs if o["output_type"] == "error"]}}))
"""


def _execute(kc, code, timeout=120):
    msgs = []
    reply = kc.execute_interactive(code, output_hook=msgs.append, timeout=timeout)
    stdout = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
    return reply["content"], stdout


def _every_cell(*codes: str):
    """The scripted model, with each code block it writes replaced by the next of ``codes`` (the last repeats)."""
    works = make_responder("works")
    given = iter(codes)
    last = [codes[-1]]

    def respond(request):
        reply = works(request)
        text = reply if isinstance(reply, str) else reply.text
        if "```python" in text:
            last[0] = next(given, last[0])
        return re.sub(r"```python\n.*?```", lambda _m: f"```python\n{last[0]}\n```", text, flags=re.S)

    return respond


@pytest.fixture
def agent_kernel(kernel, openai_server, tmp_path):
    write_sales_csv(tmp_path / "sales.csv")
    status, _ = _execute(kernel.client, SETUP.format(path=str(tmp_path), url=openai_server.url))
    assert status["status"] == "ok"
    return kernel


def test_generated_code_cannot_end_the_kernel(agent_kernel, openai_server):
    # before: os._exit(0) in a generated cell killed the kernel and every variable with it
    openai_server.set_responder(_every_cell("import os\nos._exit(0)",
                                            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
                                            "import os\nos.abort()"))
    status, stdout = _execute(agent_kernel.client, RUN.format(timeout=30, request=REQUEST))
    assert status["status"] == "ok", status
    data = json.loads(stdout)
    assert data["failed"] and set(data["enames"]) == {"ExitBlocked"}
    assert all("would end the Python process" in v for v in data["evalues"])
    status, stdout = _execute(agent_kernel.client, "print(keep + 1, os._exit.__module__)")
    assert agent_kernel.manager.is_alive() and stdout.strip() == "42 posix"  # variables survived, guard gone


SWALLOW = "import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except:\n        pass"


def test_a_cell_timeout_holds_against_a_bare_except(agent_kernel, openai_server):
    openai_server.set_responder(_every_cell(SWALLOW))
    t0 = time.monotonic()
    status, stdout = _execute(agent_kernel.client, RUN.format(timeout=1, request=REQUEST), timeout=60)
    assert status["status"] == "ok", status
    data = json.loads(stdout)
    assert data["failed"] and set(data["enames"]) == {"CellTimeout"}
    # every cell stopped within its limit and the grace (before: the first never ended)
    assert time.monotonic() - t0 < 10 * len(data["failed"])
    assert all("executor.py" not in v for v in data["evalues"])


def test_a_real_interrupt_ends_a_loop_that_swallows_it(agent_kernel, openai_server):
    openai_server.set_responder(_every_cell("print('LOOPING', flush=True)\n" + SWALLOW))
    kc = agent_kernel.client
    msg_id = kc.execute(f"""
def show(e):
    if type(e).__name__ == "CellRun" or type(e).__name__ == "StepStarted":
        print("EVENT", type(e).__name__, flush=True)
try:
    NotebookAgent(MODEL, planner="single", cell_timeout=300, max_fixes=0, on_event=show,
                  load_files=False).run({REQUEST!r}, shell=get_ipython())  # the first cell is the loop
except RunInterrupted as exc:
    print("INTERRUPTED", exc.partial.interrupted, flush=True)
""")
    seen, interrupted_at, ended_at = "", None, None
    while ended_at is None:
        try:
            msg = kc.get_iopub_msg(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no progress from the kernel; saw {seen!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
        if interrupted_at is None and "EVENT StepStarted" in seen:
            time.sleep(2)  # the first cell is looping by now (the scripted model answers at once)
            agent_kernel.manager.interrupt_kernel()
            interrupted_at = time.monotonic()
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            ended_at = time.monotonic()
    assert interrupted_at is not None and "INTERRUPTED True" in seen
    assert "EVENT CellRun" not in seen  # it was the looping cell that the interrupt ended
    assert ended_at - interrupted_at < 10  # before: the loop swallowed Ctrl-C and only a restart ended it
    _, stdout = _execute(kc, "print(keep + 1)")
    assert stdout.strip() == "42"
