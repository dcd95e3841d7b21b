"""UiEvents in a real ipykernel: a comm message sent while the cell runs is handled inside it,
and a cell queued meanwhile still runs afterwards, once, in order."""

from __future__ import annotations

import queue
import time

WAIT_CELL = """
import comm
from nbmagic.notebook.ui_events import UiEvents
got = []
channel = comm.create_comm(target_name="nbmagic-test", data={"hello": 1})
channel.on_msg(lambda m: got.append(m["content"]["data"]))
events = UiEvents()
print("available", events.available)
ok = events.wait(lambda: bool(got), timeout=60)
print("GOT", ok, got, "deferred", events.deferred)
"""


def _iopub_until(kc, predicate, timeout=60.0):
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        seen.append(msg)
        if predicate(msg):
            return msg, seen
    raise AssertionError(f"timed out; saw {[m['msg_type'] for m in seen]}")


def test_a_comm_message_reaches_the_running_cell_and_a_queued_cell_runs_after(kernel):
    kc = kernel.client
    first = kc.execute(WAIT_CELL)
    opened, seen = _iopub_until(kc, lambda m: m["msg_type"] == "comm_open")
    comm_id = opened["content"]["comm_id"]
    second = kc.execute("print('second cell ran')")  # queued while the first one waits
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"clicked": "Run"}}))
    _, rest = _iopub_until(kc, lambda m: m["msg_type"] == "status" and m["parent_header"].get("msg_id") == second
                           and m["content"]["execution_state"] == "idle")
    text = {first: "", second: ""}
    for m in seen + rest:
        if m["msg_type"] == "stream":
            text[m["parent_header"]["msg_id"]] = text.get(m["parent_header"]["msg_id"], "") + m["content"]["text"]
    assert "available True" in text[first]
    assert "GOT True [{'clicked': 'Run'}] deferred 1" in text[first]  # handled inside the running cell
    assert text[second] == "second cell ran\n"  # not lost, not run early, run once
    order = [m["parent_header"].get("msg_id") for m in seen + rest if m["msg_type"] == "execute_input"]
    assert order == [first, second]
