"""``--confirm``: review each generated cell before it runs.

Three ways to ask, picked by :func:`make_confirm` for where the run happens:

* **in a notebook** (a kernel whose frontend can take input, widgets installed, and
  a shell socket :class:`~nbmagic.notebook.ui_events.UiEvents` can read): a
  :class:`ReviewPanel` shows the cell with **Run / Edit / Skip / Stop** buttons. The
  ``%%agent`` cell is still running, so the panel processes the button clicks
  from inside it (see :mod:`nbmagic.notebook.ui_events`);
* **in a terminal**: today's text prompt (``y`` runs, anything else skips,
  ``stop`` stops);
* **headless** (nbclient, the CLI without a terminal): no one can answer, so every
  cell is declined, as before.

The answer is what :class:`~nbmagic.agent.core.NotebookAgent` expects of
``confirm(code)``: ``True`` (run), ``False`` (skip), the edited code (run that,
and keep it in the notebook), or :class:`ReviewStopped` raised (stop; the cells
that finished are kept, as after Ctrl-C).
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable
from typing import Any

from nbmagic.errors import RunInterrupted

__all__ = ["ReviewPanel", "ReviewStopped", "ask_in_terminal", "make_confirm", "stdin_allowed"]


class ReviewStopped(RunInterrupted):
    """The reviewer pressed Stop (or typed ``stop``): end the run, keep what finished."""

    def __init__(self) -> None:
        super().__init__("Stopped in review: the cells that finished are kept.")


def stdin_allowed(shell: Any) -> bool:
    """False when the request running now cannot take input (nbclient, papermill: headless)."""
    from nbmagic.notebook.live import parent_request

    parent = parent_request(shell)
    if not parent:  # plain IPython: a terminal, stdin is there if it is a tty
        return bool(getattr(sys.stdin, "isatty", lambda: False)())
    return bool((parent.get("content") or {}).get("allow_stdin", False))


def ask_in_terminal(code: str) -> bool:
    """The text prompt: ``y`` runs, ``stop`` stops, anything else (or no stdin) skips."""
    try:
        answer = input(f"Run this cell?\n{code}\n[y]es / [N]o / stop: ")
    except Exception:  # no stdin (nbclient answers StdinNotImplementedError): no
        return False
    answer = answer.strip().lower()
    if answer in ("stop", "s"):
        raise ReviewStopped
    return answer in ("y", "yes")


class ReviewPanel:
    """One panel per cell: the code, and Run / Edit / Skip / Stop; blocks (processing clicks) until one is pressed.

    ``events`` is a :class:`~nbmagic.notebook.ui_events.UiEvents` (anything with
    ``wait(done, timeout)``); ``display`` shows a widget (IPython's by default).
    """

    def __init__(self, events: Any, display: Callable[[Any], Any] | None = None, *,
                 timeout: float | None = None) -> None:
        self.events = events
        self._display = display
        self.timeout = timeout
        self.count = 0

    def __call__(self, code: str) -> bool | str:
        import ipywidgets as w

        self.count += 1
        choice: list[str] = []
        title = w.HTML(f"<b>nbmagic --confirm</b>: cell {self.count}. Run it?")
        editor = w.Textarea(value=code, disabled=True, layout=w.Layout(width="100%", height=f"{min(20, 2 + code.count(chr(10)))}em"))
        editor.add_class("nbmagic-review-code")
        buttons = {name: w.Button(description=name, tooltip=tip, button_style=style)
                   for name, tip, style in (("Run", "run this cell", "success"),
                                            ("Edit", "edit the code, then Run", ""),
                                            ("Skip", "do not run this cell", "warning"),
                                            ("Stop", "stop the run; finished cells are kept", "danger"))}

        def press(name: str) -> Callable[[Any], None]:
            def handler(_button: Any) -> None:
                if name == "Edit":
                    editor.disabled = False
                    buttons["Run"].description = "Run edited"
                    return
                choice.append(name)
            return handler

        for name, button in buttons.items():
            button.add_class(f"nbmagic-review-{name.lower()}")
            button.on_click(press(name))
        panel = w.VBox([title, editor, w.HBox(list(buttons.values()))])
        panel.add_class("nbmagic-review")
        show = self._display
        if show is None:
            from IPython.display import display as show
        show(panel)
        try:
            answered = self.events.wait(lambda: bool(choice), timeout=self.timeout)
        finally:
            for button in buttons.values():
                button.disabled = True
            editor.disabled = True
        picked = choice[0] if answered else "Skip"
        edited = editor.value if editor.value != code else None
        said = {"Run": "edited and run" if edited else "run", "Skip": "skipped", "Stop": "stopped here"}[picked]
        title.value = f"<b>nbmagic --confirm</b>: cell {self.count}: {html.escape(said)}" + (
            "" if answered else " (no answer in time)")
        if picked == "Stop":
            raise ReviewStopped
        if picked == "Skip":
            return False
        return edited if edited and edited.strip() else True


def make_confirm(shell: Any) -> Callable[[str], bool | str]:
    """The ``confirm`` for ``--confirm`` here: the widget panel, the text prompt, or always-no."""
    if not stdin_allowed(shell):
        return lambda code: False  # headless: nobody can answer
    from nbmagic.notebook.ui_events import UiEvents

    events = UiEvents(shell)
    if events.available:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return ask_in_terminal
        return ReviewPanel(events)
    return ask_in_terminal
