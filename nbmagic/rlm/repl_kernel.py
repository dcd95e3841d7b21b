"""The ``kernel`` REPL: the root model's code runs in this process, over a layer of the user's namespace."""

from __future__ import annotations

import time
from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from nbmagic.execution import CappedWriter, CellTimeout, process_guard, time_limit
from nbmagic.execution.file_audit import CellAudit
from nbmagic.rlm.execution import LayeredNamespace, execute_code
from nbmagic.rlm.repl_base import (
    Environment,
    Helper,
    TurnOutput,
    _wrap_helper,
    end_turn,
    restore_helpers,
)


class KernelEnvironment(Environment):
    """Code runs here, in a layer over ``namespace`` (the user's variables)."""

    name = "kernel"

    def __init__(self, namespace: Mapping[str, Any] | None = None) -> None:
        self.base: Mapping[str, Any] = namespace if namespace is not None else {}
        self.ns: LayeredNamespace | None = None
        self._context_names: set[str] = set()
        self._turn = 0

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        reserved = {name: _wrap_helper(name, fn) for name, fn in helpers.items()}
        self.ns = LayeredNamespace(self.base, reserved)
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self._context_names = set(contexts)

    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        notes: list[str] = []
        restore_helpers(self.ns, notes)
        self._turn += 1
        out = CappedWriter(max_output_chars)
        t0 = time.monotonic()
        res: dict[str, Any] = {"error": None, "exited": False}
        limit = time_limit(timeout)
        audit = CellAudit(source=code)  # which files the code writes (nbmagic.execution.file_audit)
        try:
            with audit, process_guard(), limit:  # os._exit & co. must not end the user's kernel
                res = execute_code(code, self.ns, filename=f"<rlm-turn-{self._turn}>", out=out)
        except CellTimeout:
            if not limit.timed_out:
                raise  # an enclosing turn's limit (a child RLM inside a helper call)
        if limit.interrupted:
            raise KeyboardInterrupt  # Ctrl-C, even one the model's code swallowed
        timed_out = limit.timed_out  # also when the code caught the interruption and finished
        end_turn(out, self.ns, notes, timed_out=timed_out, timeout=timeout)
        return TurnOutput(
            output=out.getvalue(),
            error="TimeoutError" if timed_out else res["error"],
            seconds=time.monotonic() - t0,
            timed_out=timed_out,
            exited=res["exited"],
            notes=notes,
            files=audit.record,
        )

    def export(self) -> dict[str, Any]:
        if self.ns is None:
            return {}
        own = self.ns.own_variables(skip=self._context_names)
        inherited = getattr(self, "inherited", None)
        if inherited:  # a fork: only what it changed (an `import os` the root made too is no change)
            own = {k: v for k, v in own.items() if not (k in inherited and inherited[k] is v)}
        return own

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self._context_names |= set(contexts)

    def set_helpers(self, helpers: Mapping[str, Helper]) -> None:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name in [n for n in self.ns.reserved if n not in helpers]:  # a helper this query does not offer
            self.ns.reserved.pop(name)
            dict.pop(self.ns, name, None)
        self.ns.reserved.update({name: _wrap_helper(name, fn) for name, fn in helpers.items()})
        self.ns.restore()

    def fork(self) -> KernelEnvironment:
        """A layer over a copy of this layer's variables (a shallow copy: objects are shared, so
        in-place mutation shows in both; names the fork assigns stay in the fork)."""
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        layer = {k: v for k, v in dict.items(self.ns)
                 if k not in self.ns.reserved and not (k.startswith("__") and k.endswith("__"))}
        child = KernelEnvironment(ChainMap(layer, self.base))  # type: ignore[arg-type]
        child.ns = LayeredNamespace(child.base, dict(self.ns.reserved))
        child._context_names = set(self._context_names)
        child._turn = self._turn
        child.inherited = layer  # type: ignore[attr-defined]  # what the fork reads through (listed to it)
        return child

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name, value in values.items():
            self.ns.bind(name, value)
        return sorted(values)


# --- subprocess -------------------------------------------------------------------------
