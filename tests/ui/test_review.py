"""``--confirm``: the review panel's answers (real ipywidgets, clicked through their own API), the
text prompt, and headless runs that keep answering no. The browser test clicks the real buttons."""

from __future__ import annotations

import builtins

import pytest

from nbmagic.ui.review import ReviewPanel, ReviewStopped, ask_in_terminal, make_confirm

pytest.importorskip("ipywidgets")


class Clicks:
    """Stands in for UiEvents: while the panel waits, "the user" acts on the shown widgets."""

    def __init__(self, *actions):
        self.actions = list(actions)
        self.panels = []

    def show(self, panel):
        self.panels.append(panel)

    def wait(self, done, timeout=None):
        panel = self.panels[-1]
        buttons = {b.description: b for b in panel.children[2].children}
        editor = panel.children[1]
        for act in self.actions.pop(0):
            if act.startswith("type:"):
                editor.value += act[5:]
            else:
                buttons[act].click()
                buttons = {b.description: b for b in panel.children[2].children}
        return done()


def _panel(*actions):
    events = Clicks(*actions)
    return ReviewPanel(events, display=events.show), events


def test_run_skip_edit_and_stop():
    panel, events = _panel(["Run"], ["Skip"], ["Edit", "type:\ny = 2", "Run edited"], ["Stop"])
    assert panel("x = 1") is True
    assert panel("x = 1") is False
    assert panel("x = 1") == "x = 1\ny = 2"  # the edited code runs (and lands) instead
    with pytest.raises(ReviewStopped):
        panel("x = 1")
    titles = [p.children[0].value for p in events.panels]
    assert titles[0].endswith("cell 1: run") and titles[1].endswith("cell 2: skipped")
    assert titles[2].endswith("cell 3: edited and run") and titles[3].endswith("cell 4: stopped here")
    # answered panels are frozen: no second answer to a question already settled
    assert all(b.disabled for p in events.panels for b in p.children[2].children)


def test_edit_needs_the_edit_button_and_no_answer_in_time_is_skip():
    panel, events = _panel([])  # nobody answers before the timeout
    panel.timeout = 0.1
    assert panel("x = 1") is False
    assert events.panels[0].children[1].disabled  # the code cannot be edited without pressing Edit
    assert "no answer in time" in events.panels[0].children[0].value


def test_terminal_prompt(monkeypatch):
    answers = iter(["y", "", "stop"])
    monkeypatch.setattr(builtins, "input", lambda prompt: next(answers))
    assert ask_in_terminal("x = 1") is True
    assert ask_in_terminal("x = 1") is False
    with pytest.raises(ReviewStopped):
        ask_in_terminal("x = 1")


def test_headless_kernel_requests_answer_no(kernel):
    """nbclient and papermill send execute requests with allow_stdin=False: nobody can answer."""
    code = ("from nbmagic.ui.review import make_confirm\n"
            "print('ANSWER', make_confirm(get_ipython())('x = 1'))")
    seen = []
    kernel.client.execute_interactive(code, allow_stdin=False, timeout=60,
                                      output_hook=lambda m: seen.append(m["content"].get("text", "")))
    assert "ANSWER False" in "".join(seen)


def test_a_plain_shell_without_a_terminal_answers_no(ipython_shell):
    assert make_confirm(ipython_shell)("x = 1") is False  # pytest's stdin is not a terminal
