"""The live protocol against a real kernel; this test's client plays the frontend.

It sends execute requests the way JupyterLab does (``metadata.cellId``), answers
the load-time ``hello`` comm, and reads the cells the kernel publishes on iopub.
"""

from __future__ import annotations

import textwrap
from typing import Any

from nbmagic.notebook.live import PROTOCOL, TARGET

RUN_AND_DELIVER = textwrap.dedent(
    """\
    from nbmagic.notebook.cells import code_cell, markdown_cell, provenance, stream
    from nbmagic.notebook.live import frontend_present
    from nbmagic.notebook.sinks import choose_sink
    print("present", frontend_present())
    sink = choose_sink(get_ipython())
    print("sink", type(sink).__name__)
    sink.deliver(markdown_cell("# Plan", metadata=provenance(step=1, mode="text")))
    print("between cells")
    sink.deliver(code_cell("x = 2\\nprint(x)", outputs=[stream("stdout", "2\\n")]))
    print(sink.close())
    """
)


def execute(kc: Any, code: str, metadata: dict | None = None, session: str | None = None,
            timeout: float = 60) -> tuple[dict, list[dict]]:
    """Send an execute request like a frontend; return (reply, iopub messages) for it."""
    msg = kc.session.msg(
        "execute_request",
        {"code": code, "silent": False, "store_history": True, "user_expressions": {},
         "allow_stdin": False, "stop_on_error": True},
        metadata=metadata or {},
    )
    if session:
        msg["header"]["session"] = session
    kc.shell_channel.send(msg)
    published = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg["msg_id"]:
            continue
        published.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg["msg_id"]:
            return reply, published


def send_comm(kc: Any, msg_type: str, comm_id: str, data: dict) -> None:
    kc.shell_channel.send(kc.session.msg(msg_type, {"comm_id": comm_id, "data": data}))


def stdout(published: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in published if m["msg_type"] == "stream")


def test_handshake_then_cells_arrive_live_with_the_cell_id(kernel):
    kc = kernel.client
    reply, published = execute(kc, "from nbmagic.notebook import live\nprint(live.announce())")
    assert reply["content"]["status"] == "ok", reply["content"]
    hello = [m for m in published if m["msg_type"] == "comm_open"]
    assert len(hello) == 1 and hello[0]["content"]["target_name"] == TARGET
    assert hello[0]["content"]["data"]["type"] == "hello"
    assert hello[0]["content"]["data"]["protocol"] == PROTOCOL
    # The frontend's answer; the kernel reads it now that it is idle.
    send_comm(kc, "comm_msg", hello[0]["content"]["comm_id"],
              {"type": "ready", "protocol": PROTOCOL, "version": "test", "app": "test-client"})

    reply, published = execute(kc, RUN_AND_DELIVER, metadata={"cellId": "cell-A"})
    assert reply["content"]["status"] == "ok", reply["content"]
    kinds = [m["msg_type"] for m in published if m["msg_type"] in ("stream", "comm_open", "comm_msg")]
    text = stdout(published)
    assert "present True" in text and "sink LiveNotebookSink" in text

    opened = next(m for m in published if m["msg_type"] == "comm_open")
    assert opened["content"]["target_name"] == TARGET
    assert opened["content"]["data"] == {
        "type": "deliver", "protocol": PROTOCOL, "cell_id": "cell-A", "session": kc.session.session,
    }  # fmt: skip
    comm_id = opened["content"]["comm_id"]
    bodies = [m["content"]["data"] for m in published
              if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id]
    assert [b["type"] for b in bodies] == ["cell", "cell", "done"]
    md, code = bodies[0]["cell"], bodies[1]["cell"]
    assert (md["cell_type"], md["source"], md["metadata"]) == (
        "markdown", "# Plan", {"nbmagic": {"step": 1, "mode": "text"}},
    )  # fmt: skip
    assert code["cell_type"] == "code" and code["source"] == "x = 2\nprint(x)"
    assert code["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "2\n"}]
    assert bodies[2]["count"] == 2
    # Each cell was published as soon as it was delivered, while the cell ran on:
    # the first cell message comes before "between cells" was printed.
    first_cell = next(i for i, m in enumerate(published)
                      if m["msg_type"] == "comm_msg" and m["content"]["data"]["type"] == "cell")
    between = next(i for i, m in enumerate(published)
                   if m["msg_type"] == "stream" and "between cells" in m["content"]["text"])
    assert first_cell < between
    assert kinds.index("comm_open") < kinds.index("comm_msg")
    assert "2 cells inserted below the running cell (1 code, 1 markdown)." in text

    # The frontend closes the delivery comm with its count; read once idle.
    send_comm(kc, "comm_close", comm_id, {"type": "closed", "inserted": 2})
    _, published = execute(kc, "print('ack', sink.acknowledged)")
    assert "ack 2" in stdout(published)

    # A different client (another tab, VS Code) never answered hello: not present.
    _, published = execute(kc, "print('other', frontend_present())",
                           metadata={"cellId": "cell-B"}, session="another-client")
    assert "other False" in stdout(published)
    # Same client but no cell id (a console): nowhere to insert, not present.
    _, published = execute(kc, "print('console', frontend_present())")
    assert "console False" in stdout(published)


def test_marker_alone_is_enough_and_absence_falls_back_to_next_input(kernel):
    kc = kernel.client
    marker = {"frontend": "0.1.0", "protocol": PROTOCOL}
    # No announce(): the per-request marker says the extension is in this frontend.
    _, published = execute(kc, RUN_AND_DELIVER, metadata={"cellId": "c1", "nbmagic": marker})
    assert "present True" in stdout(published)
    opened = [m for m in published if m["msg_type"] == "comm_open"]
    assert [m["content"]["data"]["cell_id"] for m in opened] == ["c1"]

    # Neither marker nor handshake (VS Code, classic notebook, Colab): next input.
    reply, published = execute(kc, RUN_AND_DELIVER, metadata={"cellId": "c2"})
    text = stdout(published)
    assert "present False" in text and "sink NextInputSink" in text
    assert not [m for m in published if m["msg_type"].startswith("comm")]
    payloads = reply["content"]["payload"]
    assert payloads == [{
        "source": "set_next_input", "replace": False,
        "text": "# # Plan\n\nx = 2\nprint(x)\n",
    }]  # fmt: skip
    assert "placed in one new code cell below" in text
    assert "JupyterLab 4 or Notebook 7" in text  # the hint line
