"""Trajectories as JSONL: one metadata line, one line per iteration, then one result line.

Lines are appended as the run goes, so a crash or a timeout still leaves every
finished iteration on disk. Every line passes through :func:`nbmagic.secrets.redact`
first: API keys never reach the file. A file that already exists is appended
to (each run starts with its own metadata line), never truncated.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.secrets import redact


class TrajectoryWriter:
    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, str | Path):
            raise ConfigError(f"trajectory_path must be a file path, got {type(path).__name__}.")
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise ConfigError(f"Cannot write the trajectory to {str(self.path)!r}: {exc.strerror or exc}") from None

    def _write(self, record: dict[str, Any]) -> None:
        line = redact(json.dumps(record, default=_jsonable, ensure_ascii=False))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def metadata(self, **fields: Any) -> None:
        self._write({"type": "metadata", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields})

    def iteration(self, record: dict[str, Any]) -> None:
        self._write({"type": "iteration", **record})

    def result(self, **fields: Any) -> None:
        """How the run ended: the answer and its flags, or the error that stopped it."""
        self._write({"type": "result", **fields})


def _jsonable(value: Any) -> Any:
    return repr(value) if not isinstance(value, str) else value


def read_trajectory(path: str | Path) -> list[dict[str, Any]]:
    """All lines of a trajectory file, parsed."""
    with open(Path(path).expanduser(), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
