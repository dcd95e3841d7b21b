"""``--kernel new``: generated cells run in a fresh Jupyter kernel (real ipykernel via jupyter_client),
are delivered with that kernel's outputs, and nothing they do reaches the user's kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import pytest

from nbmagic.agent.core import NotebookAgent
from nbmagic.agent.kernel_executor import KernelExecutor
from nbmagic.testing import agent_scripts

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


@pytest.fixture(scope="module")
def executor(tmp_path_factory):
    os.environ["NBMAGIC_TEST_API_KEY"] = "sk-test-not-for-untrusted-code"
    try:
        with KernelExecutor(cwd=tmp_path_factory.mktemp("kernel")) as ex:
            yield ex
    finally:
        os.environ.pop("NBMAGIC_TEST_API_KEY", None)


def test_the_new_kernel_gets_no_api_keys(executor):
    res = executor.run("import os\nprint(sorted(k for k in os.environ if 'KEY' in k.upper()))")
    assert res.outputs[0]["text"].strip() == "[]"


def test_outputs_errors_and_state_of_a_fresh_kernel(executor):
    res = executor.run("x = 21\nprint('hi')\nx * 2")
    assert res.ok and res.outputs[0]["text"] == "hi\n"
    assert res.outputs[1]["output_type"] == "execute_result" and res.outputs[1]["data"]["text/plain"] == "42"
    res = executor.run("1 / x0")
    assert not res.ok and res.ename == "NameError" and "x0" in res.error and "\x1b[" not in res.error
    assert executor.run("print(x)").outputs[0]["text"] == "21\n"  # state persists between cells
    assert executor.namespace == {}  # nothing lands in this process


def test_a_runaway_cell_is_interrupted_and_a_swallowing_one_restarts_the_kernel(executor):
    res = executor.run("while True:\n    pass", timeout=1)
    assert res.timed_out and res.ename == "CellTimeout" and "restarted" not in res.evalue
    t0 = time.monotonic()
    res = executor.run("import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except:\n        pass", timeout=1)
    assert res.timed_out and "was restarted" in res.evalue and time.monotonic() - t0 < 30
    assert executor.run("print('alive')").outputs[0]["text"] == "alive\n"


def test_os_exit_ends_only_that_kernel(executor):
    res = executor.run("import os\nos._exit(0)")
    assert not res.ok and res.ename == "KernelDied" and "restarted" in res.evalue
    assert executor.run("print(6 * 7)").outputs[0]["text"] == "42\n"


def test_the_agent_with_kernel_new_in_a_shell_keeps_the_users_namespace_clean(
        ipython_shell, openai_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    ipython_shell.run_line_magic("load_ext", "nbmagic")
    ipython_shell.run_cell(f'%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"')
    ipython_shell.run_cell("%config NbMagic.renderer = 'plain'")
    result = ipython_shell.run_cell("%%agent --kernel new --rounds 1 -o sibling.ipynb\n" + REQUEST,
                                    store_history=True).result
    err = capsys.readouterr().err
    assert result is not None and result.status == "done", err
    code = [c for c in result.cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] for c in code[1:])  # delivered with the fresh kernel's outputs
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"])
    for name in ("sales", "top_products", "monthly"):
        assert name not in ipython_shell.user_ns  # they live in the other kernel, which is gone
    nb = nbformat.read(tmp_path / "sibling.ipynb", as_version=4)
    assert [c.source for c in nb.cells if c.cell_type == "code"] == [c["source"] for c in code]


def test_generate_kernel_new_from_the_command_line(tmp_path, openai_server):
    agent_scripts.write_sales_csv(tmp_path / "sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    env = {k: v for k, v in os.environ.items() if k not in ("NBMAGIC_MODEL", "OPENAI_API_KEY", "MPLBACKEND")}
    p = subprocess.run([sys.executable, "-m", "nbmagic", "generate", REQUEST, "-o", "out.ipynb", "--rounds", "1",
                        "--model", f"openai-compat:test-model@{openai_server.url}", "--kernel", "new", "--quiet"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and code[-1].outputs and "Traceback" not in p.stderr
    # cell execution counts are the kernel's own
    assert any(o.get("output_type") == "execute_result" for c in code for o in c.outputs)


def test_agent_with_kernel_executor_object(tmp_path, openai_server, openai_model):
    agent_scripts.write_sales_csv(tmp_path / "sales.csv")
    openai_server.set_responder(agent_scripts.make_responder("works"))
    with KernelExecutor(cwd=tmp_path) as ex:
        result = NotebookAgent(openai_model, planner="single", cell_timeout=30).run(REQUEST, ex)
        assert result.ok and result.failed_steps == []
        assert ex.run("print(type(top_products).__name__)").outputs[0]["text"].strip() in ("Series", "DataFrame")
