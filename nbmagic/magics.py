"""``%load_ext nbmagic``: the ``%%agent``, ``%rlm`` / ``%%rlm`` and ``%nbmagic`` magics.

This module parses and wires, nothing else: options come from IPython's
``magic_arguments`` (so ``%%agent?`` shows full help), defaults from
:data:`nbmagic.config.settings` (``%config NbMagic.x = ...`` writes there),
progress goes to a renderer from :mod:`nbmagic.ui`, and the work is done by the
engines (:class:`~nbmagic.agent.core.NotebookAgent`, :class:`~nbmagic.rlm.agent.RLM`).
The engine modules are imported on first use so loading the extension stays cheap.

Every run ends one of three ways, none with a traceback: a :class:`MagicResult`
returned into ``_`` (and ``--out VAR``); an interrupt, reported in one line with the
finished part returned; or an :class:`~nbmagic.errors.NbmagicError`, printed as one
message.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Enum, Float, Int, Unicode, observe

from nbmagic import magic_args as ma
from nbmagic.agent import options as agent_options
from nbmagic.config import _SPECS, settings
from nbmagic.errors import NbmagicError, RunInterrupted
from nbmagic.rlm.settings import QueryOptions, RLMSettings
from nbmagic.secrets import redact
from nbmagic.ui.select import RENDERERS
from nbmagic.ui.state import Renderer
from nbmagic.ui.summary import MagicResult, summary_text

MAGIC_NAMES = {"line": ("agent", "rlm", "nbmagic"), "cell": ("agent", "rlm")}

_TRAIT_TYPES = {str: Unicode, int: Int, float: Float, bool: Bool}


def _setting_traits() -> dict[str, Any]:
    """One config trait per setting (generated from the settings' declarations); ``None`` means
    "not set here" (env/default apply)."""
    traits: dict[str, Any] = {}
    for name, (_default, spec) in _SPECS.items():
        if spec.choices:
            trait = Enum(spec.choices, default_value=None, allow_none=True, help=spec.help)
        else:
            trait = _TRAIT_TYPES.get(spec.kind, Unicode)(default_value=None, allow_none=True, help=spec.help)
        traits[name] = trait.tag(config=True)
    return traits


def _fail(message: str) -> None:
    """The one way a magic reports a user-facing error: one line on stderr."""
    print(f"nbmagic: {redact(message)}", file=sys.stderr, flush=True)


def _parse(func: Callable[..., Any], argstring: str) -> argparse.Namespace:
    try:
        return ma.parse_options(func.parser, argstring)  # split as a shell does: quotes removed
    except ValueError as exc:  # unbalanced quotes in the option string
        raise UsageError(f"{exc}; check the quotes in the options") from None


# --- the Magics class (also the %config target) -------------------------------------------------


@magics_class
class NbMagic(Magics):
    """Recursive LLM agents in the notebook. Configure with ``%config NbMagic.<name> = value``."""

    locals().update(_setting_traits())
    renderer = Enum(
        RENDERERS, default_value="auto", help="progress display: auto | widgets | rich | plain"
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.last: MagicResult | None = None
        self.rlm_session: Any = None  # the REPL %rlm --continue asks in (an RLMSession)
        # values from an IPython config file arrive before observers are active: write them through
        for name in _SPECS:
            value = getattr(self, name)
            if value is not None:
                settings.set(name, value, "%config")

    @observe(*_SPECS)
    def _write_through(self, change: dict[str, Any]) -> None:
        settings.set(change["name"], change["new"], "%config")

    # -- %%agent -------------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @agent_options.magic_arguments  # the options `python -m nbmagic generate` takes too
    @argument("-o", "--output", default=None, metavar="NOTEBOOK", help="write the cells to a new .ipynb instead of inserting them here")
    @argument("--confirm", action="store_true", help="ask before running each generated cell")
    @argument("--fix", action="store_true", help="correct the cell that last raised (also: %%agent fix)")
    @argument("--kernel", choices=("here", "new"), default=None, help="where the cells run: this kernel (default) or a fresh one, for code you do not trust")
    @argument("--out", default=None, metavar="VAR", help="also store the result object in variable VAR")
    @argument("--ui", choices=RENDERERS, default=None, help="progress display (default: auto)")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> MagicResult | None:
        """Plan, write and run notebook cells for a plain-language request.

        The request is the cell body (``%%agent``) or the rest of the line
        (``%agent <request>``). ``{var}`` in it is replaced by the variable's value;
        ``{In[3]}`` / ``{Out[3]}`` by an earlier cell's input / output; ``{{`` and
        ``}}`` give literal braces. The cells appear below this one (or in
        ``--output``); the result object lands in ``_``.

        ``%agent undo [RUN_ID] [--force]`` takes the last run (or RUN_ID) back: its
        cells, its variables; ``%agent runs`` lists the runs. ``--confirm`` shows
        Run / Edit / Skip / Stop for each cell in a notebook.

        Example::

            %%agent --rounds 2 --out analysis
            Load sales_data.csv and plot monthly revenue by region.
        """
        if cell is None and line.split()[:1] in (["undo"], ["runs"]):  # %agent undo [RUN] | runs
            return self._agent_command(line)
        args, text = self._split(self.agent, line, cell)
        return self._run("agent", args, text)

    def _agent_command(self, line: str) -> None:
        from nbmagic.agent.undo import subcommand

        try:
            command = subcommand(line)
            if command is not None:
                print(command(self.shell))
        except NbmagicError as exc:
            _fail(exc.message)

    # -- %rlm / %%rlm ----------------------------------------------------------------------

    @no_var_expand
    @magic_arguments()
    @argument("-c", "--context", action="append", default=None, metavar="VAR", help="variable holding the data to query (repeatable, or comma-separated)")
    @RLMSettings.magic_arguments  # the options `python -m nbmagic rlm` and RLM(...) take too
    @QueryOptions.magic_arguments
    @argument("--tool", action="append", default=None, metavar="FUNC", help="a function of the notebook the model's code may call (repeatable)")
    @argument("--continue", dest="continue_", action="store_true", help="ask a follow-up in the last %%rlm's REPL (its variables are still there)")
    @argument("--reset", action="store_true", help="end the REPL kept for --continue")
    @argument("--view", action="store_true", help="show a trajectory: the last run's, or the JSONL file named after the options")
    @argument("--out", default=None, metavar="VAR", help="also store the result object in variable VAR")
    @argument("--ui", choices=RENDERERS, default=None, help="progress display (default: auto)")
    @line_cell_magic
    def rlm(self, line: str, cell: str | None = None) -> MagicResult | None:
        """Answer a question about data too long for a prompt, with a Recursive Language Model.

        The model sees only a description of the ``--context`` variables, writes
        Python to inspect them, and calls sub-models on pieces (``llm_query``).
        Line form: ``%rlm --context text How many chapters mention whales?``;
        cell form: options on the line, question in the body. ``{var}``
        interpolation as in ``%%agent``. The answer lands in ``_``.

        The REPL of the last run stays for ``%rlm --continue <follow-up>`` until the
        next ``%rlm`` or ``%rlm --reset``; a follow-up runs with the previous question's
        settings, replaced by the options given again. ``%rlm --view [FILE.jsonl]`` shows a
        trajectory. Limits take 0 for "no limit" (``--timeout 0``).
        """
        args, text = self._split(self.rlm, line, cell)
        if args.view:
            return self._rlm_view(text)
        if args.reset:
            self._rlm_reset()
            if not text.strip():
                print("nbmagic: the RLM session was reset.", file=sys.stderr)
                return None
        return self._run("rlm", args, text)

    def _rlm_reset(self) -> None:
        session, self.rlm_session = getattr(self, "rlm_session", None), None
        if session is not None:
            session.close()

    def _rlm_view(self, text: str) -> Any:
        from nbmagic.ui.trajectory_view import TrajectoryView

        source: Any = text.strip() or self.last
        try:
            if source is None:
                raise NbmagicError("Nothing to view yet: run %rlm first, or give a file: %rlm --view run.jsonl")
            return TrajectoryView(source)
        except NbmagicError as exc:
            _fail(exc.message)
            return None

    # -- %nbmagic ----------------------------------------------------------------------------

    @line_magic
    def nbmagic(self, line: str) -> None:
        """``%nbmagic status | models | doctor | config | help``."""
        from nbmagic import magic_info

        words = line.split()
        command = words[0] if words else "help"
        handler = magic_info.COMMANDS.get(command)
        if handler is None:
            raise UsageError(f"%nbmagic {command}: unknown; use one of {', '.join(magic_info.COMMANDS)}")
        try:
            handler(self, words[1:])
        except NbmagicError as exc:
            _fail(exc.message)

    # -- plumbing ------------------------------------------------------------------------------

    def _split(self, func: Callable[..., Any], line: str, cell: str | None) -> tuple[argparse.Namespace, str]:
        try:
            options, rest = ma.split_options(line, func.parser)
        except NbmagicError as exc:  # a lone '-' before options: one line, as for other option errors
            raise UsageError(exc.message) from None
        args = _parse(func, options)
        text = rest if cell is None else "\n".join(x for x in (rest, cell) if x.strip())
        return args, text

    def _interpolate(self, text: str, ns: dict[str, Any]) -> str:
        """Fill ``{var}``; a value too large for a prompt is cut, and the user is told once."""
        cut: list[tuple[str, int]] = []
        filled = ma.interpolate(text, ns, cut=cut)
        if cut:
            _fail(ma.interpolation_warning(cut))
        return filled

    def _choose_renderer(self, args: argparse.Namespace) -> Renderer:
        from nbmagic.ui.select import make_renderer, resolve

        kind, _ = resolve(args.ui or self.renderer, self.shell)
        return make_renderer(kind)

    def _run(self, kind: str, args: argparse.Namespace, text: str) -> MagicResult | None:
        ns = self.shell.user_ns
        renderer: Renderer | None = None
        job: _AgentJob | _RlmJob | None = None
        try:
            out = ma.check_out_target(args.out, ns, getattr(self.shell, "user_ns_hidden", None))
            if kind == "agent":
                fix = bool(getattr(args, "fix", False)) or text.strip().lower() == "fix"
                request = text.strip() if fix else ma.require_text(
                    text, "request", "%%agent then, in the cell: plot monthly revenue from sales_data.csv")
                job = _AgentJob(self.shell, args, self._interpolate(request, ns), fix=fix)
            else:
                question = ma.require_text(text, "question", "%rlm --context text How many chapters mention whales?")
                job = _RlmJob(self.shell, args, self._interpolate(question, ns), owner=self)
            job.prepare()
            renderer = self._choose_renderer(args)
            renderer.start(job.title, engine=kind, model=job.model_label)
            raw = job.run(renderer, _ShownFailures(renderer))
        except (KeyboardInterrupt, RunInterrupted) as exc:
            return self._finish_interrupted(kind, renderer, getattr(exc, "partial", None), args.out)
        except NbmagicError as exc:
            message = exc.message
            if exc.partial is not None and renderer is not None and args.out:
                _sync_usage(renderer, exc.partial)
                if _store(ns, args.out, _to_result(kind, exc.partial, renderer, "failed", message)):
                    message += f" (the partial result is in {args.out})"
            _safe_close(renderer, "failed", exc.message)
            _fail(message)
            return None
        except BaseException:
            # a bug: its traceback is worth seeing, but the dashboard's ticker thread
            # and rich's live area must not outlive the run
            _safe_close(renderer, "failed", "stopped by an unexpected error")
            raise
        assert renderer is not None
        _sync_usage(renderer, raw)
        _safe_close(renderer, "done")
        result = _to_result(kind, raw, renderer, "done")
        self.last = result
        if out and not _store(ns, out, result):
            _fail(f"the result is in `_` only: {out} was bound to something else during the run.")
        return result

    def _finish_interrupted(
        self, kind: str, renderer: Renderer | None, partial: Any, out: str | None
    ) -> MagicResult | None:
        if renderer is None:
            _fail("interrupted before the run started; nothing to keep.")
            return None
        _sync_usage(renderer, partial)
        _safe_close(renderer, "interrupted", "interrupted")
        result = _to_result(kind, partial, renderer, "interrupted")
        kept = _kept(result)
        stored = bool(out) and _store(self.shell.user_ns, out, result)
        where = f"`_` and {out}" if stored else "`_`"
        _fail(f"interrupted after {result.seconds:.1f} s; kept {kept} (partial result in {where}).")
        self.last = result
        return result


# --- jobs: one per engine, so _run stays engine-agnostic ------------------------------------------------


class _AgentJob:
    """Builds the NotebookAgent and the cell sink for one ``%%agent`` run."""

    def __init__(self, shell: Any, args: argparse.Namespace, request: str, fix: bool = False) -> None:
        self.shell, self.args, self.request, self.fix = shell, args, request, fix
        self.title = "Fix the cell that last raised" if fix else request
        self.model_label = args.model or settings.model or ""

    def prepare(self) -> None:
        self.kwargs = {**ma.agent_kwargs(self.args), **agent_options.engine_kwargs(self.args)}
        if self.args.output and not str(self.args.output).endswith(".ipynb"):
            from nbmagic.errors import ConfigError

            raise ConfigError(f"--output must name a .ipynb file, got {self.args.output!r}.")

    def run(self, renderer: Renderer, on_event: Any) -> Any:
        from nbmagic.agent.core import NotebookAgent
        from nbmagic.agent.undo import run_recorded
        from nbmagic.notebook.sinks import choose_sink
        from nbmagic.ui.review import make_confirm

        confirm = make_confirm(self.shell) if self.args.confirm else None  # buttons in a notebook, else a prompt
        # the agent first: a refused option must not leave an empty --output notebook behind
        agent = NotebookAgent(**self.kwargs, confirm=confirm, on_event=on_event)
        sink = choose_sink(self.shell, self.args.output, force=self.args.force)
        kernel = getattr(self.args, "kernel", None) or "here"

        def go() -> Any:
            if self.fix:  # the cell that last raised, read from the shell's history here, not by the agent
                from nbmagic.magic_history import fix_last_error

                return fix_last_error(agent, self.shell, sink, "" if self.request.lower() == "fix" else self.request)
            if kernel == "new":
                return _in_new_kernel(agent, self.request, self.shell, sink)
            return agent.run(self.request, namespace=self.shell.user_ns, shell=self.shell, sink=sink)  # it closes the sink

        return run_recorded(go, self.shell, sink, self.title, kernel=kernel)  # for %agent undo


class _RlmJob:
    """Builds the RLM and resolves ``--context`` for one ``%rlm`` run."""

    def __init__(self, shell: Any, args: argparse.Namespace, question: str, owner: Any = None) -> None:
        self.shell, self.args, self.question, self.owner = shell, args, question, owner
        self.title = question
        self.model_label = args.model or settings.model or ""

    def prepare(self) -> None:
        from nbmagic.errors import ConfigError

        ns = self.shell.user_ns
        previous = getattr(self.owner, "rlm_session", None)
        if self.args.continue_ and previous is None:
            raise ConfigError("--continue: there is no RLM session to continue; ask a first question with %rlm.")
        # a follow-up replaces the previous run's settings with the options given again
        base = previous.rlm.settings if self.args.continue_ else None
        self.settings = RLMSettings.from_args(self.args, base)
        self.schema = QueryOptions.from_args(self.args).schema
        self.contexts = ma.resolve_contexts(self.args.context, ns, getattr(self.shell, "user_ns_hidden", None))
        from nbmagic.rlm.context import check_not_reserved

        check_not_reserved(self.contexts)
        tools = {}
        for item in self.args.tool or []:
            for name in filter(None, (n.strip() for n in item.split(","))):
                if name not in ns:
                    raise ConfigError(f"--tool {name}: no function named {name!r} in the notebook; define it first.")
                tools[name] = ns[name]
        if self.args.continue_ and not tools:
            tools = dict(previous.rlm.tools)
        self.tools = tools or None

    def run(self, renderer: Renderer, on_event: Any) -> Any:
        from nbmagic.rlm.agent import RLM

        rlm = RLM(settings=self.settings, tools=self.tools, namespace=self.shell.user_ns, on_event=on_event)
        # by name, so the REPL binds each context under the user's own variable name
        names = list(self.contexts)
        context: Any = None if not names else names[0] if len(names) == 1 else {n: n for n in names}
        if self.owner is None:
            return rlm.query(self.question, context=context, schema=self.schema)
        # the REPL stays for a follow-up (%rlm --continue) until the next %rlm or %rlm --reset
        session = self.owner.rlm_session if self.args.continue_ else None
        if session is None:
            self.owner._rlm_reset()
            session = self.owner.rlm_session = rlm.session()
        session.rlm = rlm
        return session.query(self.question, context=context, schema=self.schema)


def _in_new_kernel(agent: Any, request: str, shell: Any, sink: Any) -> Any:
    """``--kernel new``: the cells run in a fresh kernel in this folder, shut down after the run."""
    import os

    from nbmagic.agent.kernel_executor import KernelExecutor

    executor = KernelExecutor(cwd=os.getcwd())
    try:
        executor.start()
    except NbmagicError:
        if hasattr(sink, "abort"):
            sink.abort()  # no run: no empty notebook left behind
        raise
    try:
        return agent.run(request, namespace=executor, shell=shell, sink=sink)  # it closes the sink
    finally:
        executor.close()


class _ShownFailures:
    """The renderer as the engines' event handler: a display that fails is said once, on stderr
    (the run goes on; the summary still comes from the events it did take), not only logged."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self.failed = False

    def __call__(self, event: Any) -> None:
        try:
            self.renderer(event)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if not self.failed:
                self.failed = True
                _fail(f"the progress display failed on {type(event).__name__} ({type(exc).__name__}: {exc}); "
                      "the run goes on without it (try --ui plain).")


def _store(ns: dict[str, Any], name: str, result: MagicResult) -> bool:
    """``--out VAR``: store unless VAR now holds something that is not a result (checked up front too)."""
    try:
        ma.check_out_target(name, ns)
    except NbmagicError:
        return False
    ns[name] = result
    return True


def _safe_close(renderer: Renderer | None, status: str, message: str = "") -> None:
    if renderer is None:
        return
    try:
        renderer.close(status, message)
    except Exception as exc:  # a broken display must not hide the result, but the user hears of it
        _fail(f"the progress display failed to close ({type(exc).__name__}: {exc}).")


def _to_result(kind: str, raw: Any, renderer: Renderer, status: str, note: str = "") -> MagicResult:
    """Wrap an engine result (or a partial one, or nothing) with what the events showed.

    Every engine's result (RLM, RecursiveMAS, the notebook agent) is an
    :class:`~nbmagic.lifecycle.EngineResult` and is read through that protocol; one that is
    notebook cells (a :class:`~nbmagic.lifecycle.CellsResult`) shows its summary, its answer
    being one of its cells; with no result at all (an interrupt before any), the events are all
    there is.
    """
    from nbmagic.lifecycle import CellsResult, EngineResult
    from nbmagic.llm.base import Usage

    state = renderer.state
    result = MagicResult(kind=kind, status=status, raw=raw, seconds=state.elapsed, summary=summary_text(state))
    warnings: list[str] = []
    summary = None
    if isinstance(raw, EngineResult):
        result.trajectory = list(raw.steps)
        result.usage = raw.total_usage
        warnings = list(raw.warnings)
        if isinstance(raw, CellsResult):
            result.cells, result.plan, summary = list(raw.cells), list(raw.plan), raw.summary
        else:
            result.answer = raw.answer
    if kind == "rlm" and not result.trajectory:
        result.trajectory = _iterations(state)
    if kind == "agent":
        result.cells = result.cells or list(state.cells)
        result.plan = result.plan or [s.title for s in state.plan]
    if result.usage is None:
        result.usage = Usage(state.prompt_tokens, state.completion_tokens, state.calls)
    if warnings:  # prose only, or a number typed in: never shown as if computed
        typed = next((w for w in warnings if w.startswith("not computed: the answer")), None)
        note = (note + " " if note else "") + (typed[0].upper() + typed[1:] + "." if typed else
                                               "Not computed: the model never ran code that worked; "
                                               "this answer is its guess in prose.")
    messages = [m for m in (summary, note) if m]
    if state.message and status != "done":
        messages.insert(0, state.message)
    result.message = " ".join(str(m) for m in messages)
    return result


def _sync_usage(renderer: Renderer, raw: Any) -> None:
    """Let the summary show the engine's own token count (it sees calls no event reported)."""
    from nbmagic.lifecycle import EngineResult

    if not isinstance(raw, EngineResult):
        return
    usage = raw.total_usage
    state = renderer.state
    state.prompt_tokens, state.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    state.calls = usage.calls or state.calls


def _iterations(state: Any) -> list[dict[str, Any]]:
    return [
        {"iteration": it.i, "code": it.code, "output": it.output, "seconds": it.seconds, "depth": it.depth}
        for it in state.iterations
    ]


def _kept(result: MagicResult) -> str:
    if result.kind == "rlm":
        n = len(result.trajectory)
        return f"{n} finished iteration{'s' if n != 1 else ''}"
    n = len(result.cells)
    return f"{n} finished cell{'s' if n != 1 else ''}"


# --- extension entry points -----------------------------------------------------------------------


_QUESTION_LINE = re.compile(r"^(?P<indent>[ \t]*)%(?P<name>rlm|agent)(?P<rest>[ \t]+\S.*\?)[ \t]*$")


def protect_questions(lines: list[str]) -> list[str]:
    """Input transform: ``%rlm How many?`` is a question, not IPython's ``obj?`` help request.

    IPython reads any line ending in ``word?`` as a help lookup, which would turn most
    one-line questions into "Object not found". Lines starting with ``%rlm``/``%agent``
    that carry text and end in ``?`` are rewritten to an explicit ``run_line_magic``
    call; ``%rlm?`` alone still shows the help.
    """
    out = []
    for line in lines:
        m = _QUESTION_LINE.match(line.rstrip("\n"))
        if m:
            ending = "\n" if line.endswith("\n") else ""
            line = f"{m['indent']}get_ipython().run_line_magic({m['name']!r}, {m['rest'].strip()!r}){ending}"
        out.append(line)
    return out


def load_ipython_extension(shell: Any) -> None:
    """Register the magics and the ``NbMagic`` config class; announce live insertion."""
    if _instance(shell) is not None:
        return
    _drop_invalid_config(shell)
    magics = NbMagic(shell)
    shell.register_magics(magics)
    transforms = getattr(getattr(shell, "input_transformer_manager", None), "line_transforms", None)
    if transforms is not None and protect_questions not in transforms:
        transforms.append(protect_questions)
    _announce(shell)


def _drop_invalid_config(shell: Any) -> None:
    """A typo once given to ``%config NbMagic.x`` must not break every later ``%load_ext``."""
    section = getattr(shell, "config", {}).get("NbMagic")
    if not section:
        return
    traits = NbMagic.class_traits(config=True)
    for name in list(section):
        trait = traits.get(name)
        try:
            if trait is None:
                raise ValueError("no such setting")
            trait.validate(None, section[name])
        except Exception:
            print(f"nbmagic: ignoring invalid setting NbMagic.{name} = {section[name]!r}", file=sys.stderr)
            del section[name]


def unload_ipython_extension(shell: Any) -> None:
    """Remove exactly what :func:`load_ipython_extension` added."""
    magics = _instance(shell)
    if magics is None:
        return
    magics._rlm_reset()  # a kept RLM REPL (subprocess worker) ends with the extension
    table = shell.magics_manager.magics
    for kind, names in MAGIC_NAMES.items():
        for name in names:
            fn = table[kind].get(name)
            if getattr(fn, "__self__", None) is magics:
                del table[kind][name]
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    transforms = getattr(getattr(shell, "input_transformer_manager", None), "line_transforms", None)
    if transforms is not None and protect_questions in transforms:
        transforms.remove(protect_questions)
    if magics in shell.configurables:
        shell.configurables.remove(magics)


def _instance(shell: Any) -> NbMagic | None:
    found = shell.magics_manager.registry.get("NbMagic")
    return found if isinstance(found, NbMagic) else None


def _announce(shell: Any) -> None:
    """Tell the frontend extension (if any) that live cell insertion is available."""
    try:
        from nbmagic.notebook import live
    except Exception:
        return
    hook = getattr(live, "announce", None)
    if callable(hook):
        try:
            hook(shell)
        except Exception:  # pragma: no cover - best effort; the fallback sink still works
            pass
