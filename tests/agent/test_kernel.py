"""The agent inside a real ipykernel: results land in the kernel's namespace, nothing leaks
into the cell that ran it, runaway cells time out, and a real interrupt keeps the partial result."""

from __future__ import annotations

import json
import queue

from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"

SETUP = """
import os, json
os.chdir({path!r})
from nbmagic.agent.core import NotebookAgent
from nbmagic.errors import RunInterrupted
MODEL = "openai-compat:test-model@{url}"
"""

RUN = """
res = NotebookAgent(MODEL, planner="single", cell_timeout={timeout}, max_fixes={fixes}).run({request!r}, shell=get_ipython())
code = [c for c in res.cells if c.cell_type == "code"]
print(json.dumps({{
    "ok": res.ok, "failed": res.failed_steps,
    "vars": sorted(k for k in ("sales", "top_products", "monthly") if k in get_ipython().user_ns),
    "kinds": [[o["output_type"] for o in c.outputs] for c in code],
    "png": any("image/png" in o.get("data", {{}}) for c in code for o in c.outputs),
    "enames": [o.get("ename") for c in code for o in c.outputs if o["output_type"] == "error"],
}}))
"""


def _execute(kc, code, timeout=120):
    msgs = []
    reply = kc.execute_interactive(code, output_hook=msgs.append, timeout=timeout)
    stdout = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
    shown = [m["msg_type"] for m in msgs if m["msg_type"] in ("display_data", "execute_result", "error")]
    return reply["content"], stdout, shown


def test_agent_runs_in_kernel_namespace_without_leaking(kernel, openai_server, tmp_path):
    write_sales_csv(tmp_path / "sales.csv")
    kc = kernel.client
    status, _, _ = _execute(kc, SETUP.format(path=str(tmp_path), url=openai_server.url))
    assert status["status"] == "ok"

    openai_server.set_responder(make_responder("works"))
    status, stdout, shown = _execute(kc, RUN.format(timeout=30, fixes=3, request=REQUEST))
    assert status["status"] == "ok", status
    assert shown == []  # the generated cells' outputs were captured, not shown in this cell
    data = json.loads(stdout)  # and nothing else was printed
    assert data["ok"] and data["vars"] == ["monthly", "sales", "top_products"]
    assert data["png"]  # the inline backend's figure was captured as PNG
    assert data["kinds"][1] == ["execute_result"]

    # a runaway cell: interrupted by the timeout, reported, the kernel stays usable
    openai_server.set_responder(make_responder("loop"))
    status, stdout, shown = _execute(kc, RUN.format(timeout=1, fixes=0, request=REQUEST))
    assert status["status"] == "ok" and shown == []
    data = json.loads(stdout)
    assert data["failed"] == [2] and data["enames"] == ["CellTimeout"]
    status, stdout, _ = _execute(kc, "print(6 * 7)")
    assert stdout.strip() == "42"


def test_real_interrupt_keeps_partial_cells(kernel, openai_server, tmp_path):
    write_sales_csv(tmp_path / "sales.csv")
    kc = kernel.client
    _execute(kc, SETUP.format(path=str(tmp_path), url=openai_server.url))
    openai_server.set_responder(make_responder("loop"))
    code = f"""
def show(e):
    if type(e).__name__ == "StepStarted":
        print("STEP", e.index + 1, flush=True)
try:
    NotebookAgent(MODEL, planner="single", cell_timeout=120, max_fixes=0, on_event=show).run({REQUEST!r}, shell=get_ipython())
except RunInterrupted as exc:
    print("INTERRUPTED", len(exc.partial.cells), exc.partial.interrupted, flush=True)
"""
    msg_id = kc.execute(code)
    seen = ""
    interrupted = False
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no progress from the kernel; saw {seen!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            seen += msg["content"]["text"]
            if "STEP 2" in seen and not interrupted:
                kernel.manager.interrupt_kernel()
                interrupted = True
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert "INTERRUPTED 2 True" in seen
    _, stdout, _ = _execute(kc, "print('sales' in globals(), 'top_products' in globals())")
    assert stdout.strip() == "True False"


def test_generated_exit_does_not_stop_the_kernel(kernel, openai_server, tmp_path):
    """A model writing `exit()` gets an error to fix; the user's kernel and variables survive."""
    import re

    write_sales_csv(tmp_path / "sales.csv")
    kc = kernel.client
    status, _, _ = _execute(kc, SETUP.format(path=str(tmp_path), url=openai_server.url) + "\nkeep = 41")
    assert status["status"] == "ok"
    works = make_responder("works")

    def exits(request):  # every code block the model writes becomes `exit()`
        reply = works(request)
        text = reply if isinstance(reply, str) else reply.text
        return re.sub(r"```python\n.*?```", "```python\nexit()\n```", text, flags=re.S)

    openai_server.set_responder(exits)
    status, stdout, shown = _execute(kc, RUN.format(timeout=30, fixes=0, request=REQUEST))
    assert status["status"] == "ok" and shown == []
    data = json.loads(stdout)
    # step 1 is the agent's own load of sales.csv; every cell the model wrote failed
    assert data["failed"] == [2, 3] and set(data["enames"]) == {"SystemExit"}
    status, stdout, _ = _execute(kc, "print(keep + 1)")
    assert kernel.manager.is_alive() and stdout.strip() == "42"
