"""Rubric files (YAML or JSON): load with precise errors, resolve names, list the library."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rubricgate.errors import UsageError
from rubricgate.library.resources import shipped_dir
from rubricgate.models.rubric import CHECK_TYPES, Rubric

RUBRIC_SUFFIXES = (".yaml", ".yml", ".json")
_RUBRIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A rubric id as a request may name it: no separator, no leading dot, nothing a path needs."""
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
"""A key worth echoing in a validation error: what a rubric field looks like, not a secret."""
_QUOTED = re.compile(r"'[^']{2,}'|\"[^\"]{2,}\"")
"""What PyYAML quotes in a problem: an alias or tag name may be content; one character is not."""


def parse_rubric(data: Any, source: str = "<rubric>") -> Rubric:
    """Validate already-parsed data as a rubric; errors name the source, field and expectation."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a rubric must be a mapping with id and criteria, got {type(data).__name__}")
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{source}: invalid rubric: {describe_validation_error(exc, data)}") from exc


def load_rubric_file(path: Path) -> Rubric:
    """Read and validate one rubric file. Errors name the file, the line or the field, never the
    file's content (a server answers them to clients)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"rubric file {path} does not exist") from exc
    except OSError as exc:
        raise UsageError(f"cannot read rubric file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_rubric(data, str(path))


def dump_rubric(rubric: Rubric) -> str:
    """The rubric as a YAML document (fields in file order, defaults left out), headed by `# id@version`."""
    data = rubric.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    return f"# {rubric.ref}\n{body}"


def write_rubric_file(rubric: Rubric, path: Path) -> Path:
    """Write a rubric as YAML (JSON for a `.json` path); loading the file gives the same version."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        data = rubric.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = dump_rubric(rubric)
    path.write_text(text, encoding="utf-8")
    return path


def rubric_dirs(user_dirs: Sequence[Path] = ()) -> list[Path]:
    """Where names resolve: the user's folders first, then the shipped library."""
    return [*user_dirs, shipped_dir("rubrics")]


def resolve_rubric(name_or_path: str, user_dirs: Sequence[Path] = (), *, allow_paths: bool = True) -> Rubric:
    """A rubric named by id (user dirs, then shipped) or, with `allow_paths`, by a file path.

    `allow_paths=False` is for names that come from requests (the server's clients, OpenRLHF
    labels): the name must be a bare id, looked up only inside the rubric folders, never the
    working directory nor any other path. The CLI and Python pass paths (the user is the operator).
    """
    if allow_paths:
        as_path = Path(name_or_path)
        if as_path.suffix in RUBRIC_SUFFIXES or "/" in name_or_path or as_path.is_file():
            return load_rubric_file(as_path)
    else:
        check_rubric_name(name_or_path)
    for folder in rubric_dirs(user_dirs):
        for suffix in RUBRIC_SUFFIXES:
            candidate = folder / f"{name_or_path}{suffix}"
            if candidate.is_file():
                return load_rubric_file(candidate)
    known = ", ".join(sorted(p.stem for p in iter_rubric_files(user_dirs))) or "none"
    how = "pass a file path or one of" if allow_paths else "name one of"
    raise UsageError(f"unknown rubric {name_or_path[:100]!r}: {how}: {known}")


def check_rubric_name(name: str) -> None:
    """Refuse a rubric name that is not a bare id: a path, a file name, a hidden name."""
    if not _RUBRIC_NAME.fullmatch(name) or name.endswith(RUBRIC_SUFFIXES):
        raise UsageError(f"rubric {name[:80]!r}: name a rubric by id (a file name in the server's rubric folders, "
                         "without its suffix), or send it inline")


def iter_rubric_files(user_dirs: Sequence[Path] = ()) -> Iterable[Path]:
    """Rubric files in the library, user dirs first; a user file shadows a shipped one."""
    seen: set[str] = set()
    for folder in rubric_dirs(user_dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in RUBRIC_SUFFIXES and path.stem not in seen:
                seen.add(path.stem)
                yield path


def describe_validation_error(exc: ValidationError, data: Any = None) -> str:
    """Pydantic's errors as `field.path: what is expected` joined on one line."""
    parts = []
    for error in exc.errors()[:5]:
        location = _location(error["loc"], data)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
            key = error["loc"][-1] if error["loc"] else None
            if not (isinstance(key, str) and _FIELD_NAME.fullmatch(key)):  # a key that is no field name
                location = _location(error["loc"][:-1], data) or "(top level)"  # may be data: don't echo it
                message = "an unknown field (check the spelling)"
        elif error["type"] == "missing":
            message = "required field is missing"
        parts.append(f"{location}: {message}" if location else message)
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """`criteria[2](brevity).check.value` rather than `criteria.2.check.max_words.value`."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str) and _FIELD_NAME.fullmatch(node["id"]):
                out += f"({node['id']})"
        else:
            if isinstance(node, dict) and part not in node and part in CHECK_TYPES:
                continue  # pydantic names the union member; the file does not
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what (`line 2, column 1: while scanning a simple key; line 3, column 1: could not
    find expected ':'`), without the snippet of the file PyYAML quotes (it may be a secret)."""
    parts = []
    for text, mark in ((getattr(exc, "context", None), getattr(exc, "context_mark", None)),
                       (getattr(exc, "problem", None) or "syntax error", getattr(exc, "problem_mark", None))):
        if text:
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            parts.append(where + " ".join(_QUOTED.sub("...", str(text)).split()))
    return "; ".join(parts)


def principle_rubric(principle: str, rubric_id: str, description: str, source: str) -> Rubric:
    """A one-criterion rubric for a principle given with a sample (a label, a verl `extra_info`)."""
    return parse_rubric({
        "id": rubric_id,
        "description": description,
        "principles": [principle],
        "criteria": [{"id": "principle", "kind": "principle",
                      "text": f"The response follows this principle: {principle}"}],
    }, source)
