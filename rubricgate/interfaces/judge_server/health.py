"""Readiness: whether `GET /health` answers, and why a start failed, read from vLLM's log."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import httpx

_ERROR_LINE = re.compile(r"^(?:\(.*?\) )?(?:ERROR .*?\] )?([\w.]+(?:Error|Exception)): (.*)")
"""A raised exception's last traceback line, bare or behind vLLM's `(Process pid=N) ERROR ... ]` prefix."""


def is_healthy(url: str) -> bool:
    """True when `GET url` answers 200 now."""
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200  # no proxy for loopback
    except httpx.HTTPError:
        return False


def first_error(log_file: Path, offset: int = 0) -> str:
    """The first `...Error: message` vLLM logged after `offset`: usually the root cause."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "no log"
    for line in text.splitlines():
        match = _ERROR_LINE.search(line)
        if match:
            return f"{match.group(1)}: {match.group(2)}"[:500]
    return "no error in the log; see its last lines"


def log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        with log_file.open("rb") as handle:
            tail = deque(handle, maxlen=lines)
    except OSError:
        return "(no log)"
    return b"".join(tail).decode("utf-8", errors="replace").rstrip()
