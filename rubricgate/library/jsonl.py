"""JSONL input files (items, pairs, probes): one reader, one set of precise errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rubricgate.errors import UsageError
from rubricgate.library.rubric_files import describe_validation_error

M = TypeVar("M", bound=BaseModel)


def read_jsonl_models(path: Path, model: type[M], kind: str, fields: str, noun: str,
                      default_id: Callable[[int], str] | None = None,
                      check: Callable[[M], object] | None = None) -> list[M]:
    """Validate every non-blank line of `path` (`-` reads stdin) as `model`.

    `kind` names the file in errors ("input file", "pair file"), `fields` what each line needs,
    `noun` what the lines are ("items", "pairs").
    A line without `id` gets `default_id(line_number)` when given; `check` may raise UsageError
    for a model that validates but cannot be used. Errors say which line and
    what is wrong, and an empty file is an error too.
    """
    models = []
    for number, data in read_jsonl_objects(path, kind, fields):
        if default_id is not None and data.get("id") is None:
            data["id"] = default_id(number)
        try:
            parsed = model.model_validate(data)
            if check is not None:
                check(parsed)
        except ValidationError as exc:
            raise UsageError(f"{path}:{number}: {describe_validation_error(exc, data)}") from None
        except UsageError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
        models.append(parsed)
    if not models:
        raise UsageError(f"{kind} {path} has no {noun}; each line needs {fields}")
    return models


def read_jsonl_objects(path: Path, kind: str, fields: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; `-` reads stdin. Unreadable files, bad JSON
    and non-object lines are UsageErrors naming the file and line."""
    if str(path) == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UsageError(f"{kind} {path} does not exist") from None
        except IsADirectoryError:
            raise UsageError(f"{kind} {path} is a folder; pass a .jsonl file") from None
        except UnicodeDecodeError:
            raise UsageError(f"{kind} {path} is not UTF-8 text; pass a .jsonl file") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}:{number}: each line must be a JSON object with {fields}")
        out.append((number, data))
    return out
