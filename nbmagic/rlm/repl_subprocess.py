"""The ``subprocess`` REPL: a persistent worker process (``python -m nbmagic.rlm.worker``) it starts and restarts."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.rlm.repl_base import Helper
from nbmagic.rlm.repl_pipe import PipedWorker
from nbmagic.secrets import env_without_secrets


def _worker_env() -> dict[str, str]:
    """The worker's environment: ours minus anything that looks like a credential."""
    env = env_without_secrets()
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["NBMAGIC_AUDIT_DIR"] = os.getcwd()  # the user's folder: the worker itself runs in a temporary one
    return env


class SubprocessEnvironment(PipedWorker):
    """Code runs in a persistent worker process with time and memory limits."""

    name = "subprocess"

    def __init__(
        self,
        *,
        memory_limit_mb: int | None = 4096,
        grace: float = 2.0,
        startup_timeout: float = 60.0,
        python: str | None = None,
    ) -> None:
        if os.name == "nt":
            raise ConfigError(
                "environment='subprocess' needs a POSIX system (Linux, macOS); use environment='kernel'."
            )
        super().__init__(memory_limit_mb=memory_limit_mb, grace=grace, python=python)
        self.startup_timeout = startup_timeout
        self.workdir: Path | None = None
        self.context_file: Path | None = None
        self._log: Any = None
        self._extra_files: list[Path] = []

    # -- lifecycle --

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        self.helpers = dict(helpers)
        self.workdir = Path(tempfile.mkdtemp(prefix="nbmagic-rlm-"))
        self.context_file = self.workdir / ".contexts.pkl"
        try:
            _pickle_to(self.context_file, contexts, "Context")
        except ConfigError:
            self.close()
            raise
        self._spawn()

    def _spawn(self) -> None:
        from multiprocessing.connection import Connection

        assert self.workdir is not None and self.context_file is not None
        parent_sock, child_sock = socket.socketpair()
        if self._log is None:
            self._log = open(self.workdir / ".worker.log", "ab")  # noqa: SIM115 - lives as long as the env
        cmd = [
            self.python,
            "-m",
            "nbmagic.rlm.worker",
            str(child_sock.fileno()),
            str(self.context_file),
            str(self.memory_limit_mb or 0),
            ",".join(self.helpers),
        ]
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                pass_fds=[child_sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=_worker_env(),
            )
        except OSError as exc:  # no such interpreter, out of processes or file descriptors
            parent_sock.close()
            raise NbmagicError(f"Could not start the RLM worker process ({self.python}): {exc.strerror or exc}") from None
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        if not self.conn.poll(self.startup_timeout):
            self._kill()
            raise NbmagicError(f"The RLM worker process did not start within {self.startup_timeout:g} s.")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            msg = ("error", f"the worker exited during startup ({self._log_tail()})")
        if msg[0] != "ready":
            self._kill()
            raise NbmagicError(f"The RLM worker process failed to start: {msg[1]}")

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._spawn()
        for path in self._extra_files:  # contexts a continued session added
            self._bind(path)

    def _log_tail(self) -> str:
        try:
            assert self.workdir is not None
            return (self.workdir / ".worker.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def close(self) -> None:
        if self.conn is not None and self.proc is not None and self.proc.poll() is None:
            try:
                self.conn.send(("close",))
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                pass
        self._kill()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        """Pickle the new contexts to a file of their own that the worker binds (a restart binds it again)."""
        assert self.workdir is not None
        extra = self.workdir / f".contexts-{len(self._extra_files) + 1}.pkl"
        _pickle_to(extra, contexts, "Context")
        self._extra_files.append(extra)
        if self.proc is None or self.proc.poll() is not None:
            self._restart()  # binds every file
        else:
            self._bind(extra)

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        """Merge a sub-agent's variables into the worker (through a file, as contexts go)."""
        assert self.workdir is not None
        path = self.workdir / f".adopt-{self._turn}-{len(values)}.pkl"
        _pickle_to(path, values, "The sub-agent's variable")
        self.conn.send(("adopt", str(path)))
        if not self.conn.poll(60):
            raise NbmagicError("The RLM worker did not take the sub-agent's variables.")
        msg = self.conn.recv()
        path.unlink(missing_ok=True)
        return list(msg[1])

    def _bind(self, path: Path) -> None:
        self.conn.send(("bind", str(path)))
        if not self.conn.poll(60) or self.conn.recv()[0] != "bound":
            raise NbmagicError("The RLM worker did not take the new contexts.")


def _pickle_to(path: Path, values: Mapping[str, Any], what: str) -> None:
    """Write ``values`` straight to a file the worker loads (a 5 GB context is not held a second
    time as bytes); one :class:`ConfigError` naming what cannot be written or pickled."""
    try:
        with open(path, "wb") as f:
            pickle.dump(dict(values), f, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:
        raise ConfigError(
            f"Could not write to {str(path.parent)!r} for the subprocess REPL: {exc.strerror or exc}. "
            "Free some space there (or set TMPDIR), or use environment='kernel'."
        ) from None
    except Exception:
        bad = [n for n, v in values.items() if not _picklable(v)]
        raise ConfigError(
            f"{what} {', '.join(map(repr, bad)) or '?'} cannot be sent to the subprocess REPL "
            "(it cannot be pickled). Use environment='kernel', or pass plain data "
            "(str, list, dict, DataFrame, a path)."
        ) from None


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return True
    except Exception:
        return False
