"""The capped output buffer: generated code may print megabytes, only the head and tail are kept.

Holding everything only to cut it later would cost memory (and, in the RLM worker,
a pipe transfer), so the middle is dropped as it arrives and only counted. The
tail matters as much as the head: a loop stopped by its time limit shows what it
printed last.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from typing import Any

from nbmagic.text import TRUNCATION_MARKER


class CappedWriter(io.TextIOBase):
    """A text sink that keeps at most ``limit`` characters: the first and the last halves."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(2, int(limit))
        self._head_limit = self.limit // 2
        self._tail_limit = self.limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.total = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        with self._lock:
            self.total += n
            room = self._head_limit - self._head_len
            if room > 0:
                self._head.append(s[:room])
                self._head_len += min(room, n)
                s = s[room:]
            if s:
                if len(s) >= self._tail_limit:
                    self._tail.clear()
                    s = s[-self._tail_limit :]
                    self._tail_len = 0
                self._tail.append(s)
                self._tail_len += len(s)
                while self._tail_len - len(self._tail[0]) >= self._tail_limit:
                    self._tail_len -= len(self._tail.popleft())
        return n

    @property
    def dropped(self) -> int:
        """Characters written but not kept."""
        return max(0, self.total - self.limit)

    def getvalue(self) -> str:
        """The captured text, with a truncation marker if anything was dropped."""
        with self._lock:
            head = "".join(self._head)
            tail = "".join(self._tail)
            if self.total <= self.limit:
                return head + tail
            tail = tail[-self._tail_limit :]
            omitted = self.total - len(head) - len(tail)
            return head + TRUNCATION_MARKER.format(n=omitted) + tail
