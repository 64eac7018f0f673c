"""Finds the shipped `prompts/` and `rubrics/` folders in a wheel or a source checkout alike."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from rubricgate.errors import UsageError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@cache
def shipped_dir(name: str) -> Path:
    """Path of a shipped data folder (`prompts` or `rubrics`).

    A wheel carries them under `rubricgate/_data/`; a checkout or editable install has them
    beside the package.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise UsageError(f"shipped folder {name!r} not found next to {_PACKAGE_DIR}; reinstall rubricgate")
