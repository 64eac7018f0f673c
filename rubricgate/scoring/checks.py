"""Deterministic hard-rule checks: objective rules decided without any judge."""

from __future__ import annotations

import json
import re
from functools import singledispatch

from rubricgate.models.rubric import (
    Check, CodeBlock, ContainsAll, ContainsNone, JsonValid, MaxChars, MaxSentences, MaxWords,
    MinWords, NoPlaceholders, NotRegex, Regex,
)

_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_CODE_BLOCK = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PLACEHOLDER = re.compile(
    r"\[[A-Z][\w'.-]{2,}(?: [\w'.-]+){0,4}\]"  # [NAME], [Your Name], [Dates]; not arr[i] or a[N]
    r"|(?i:\[(?:insert|your|add|enter)\b[^\]]{0,40}\])"
    r"|\{\{\s*\w+\s*\}\}|(?i:<(?:insert|your)[^>]{0,30}>)|\bTODO\b|\bTBD\b|(?i:lorem ipsum)"
)


def run_check(check: Check, response: str) -> tuple[bool, str]:
    """(passed, what was found) for one check on one response."""
    return _run(check, response)


def word_count(text: str) -> int:
    return len(text.split())


@singledispatch
def _run(check: object, response: str) -> tuple[bool, str]:
    raise TypeError(f"no runner for check {type(check).__name__}")


@_run.register
def _(check: MaxWords, response: str) -> tuple[bool, str]:
    n = word_count(response)
    return n <= check.value, f"{n} words (max {check.value})"


@_run.register
def _(check: MinWords, response: str) -> tuple[bool, str]:
    n = word_count(response)
    return n >= check.value, f"{n} words (min {check.value})"


@_run.register
def _(check: MaxChars, response: str) -> tuple[bool, str]:
    return len(response) <= check.value, f"{len(response)} characters (max {check.value})"


@_run.register
def _(check: MaxSentences, response: str) -> tuple[bool, str]:
    n = len([s for s in _SENTENCE_END.split(response.strip()) if s.strip()])
    return n <= check.value, f"{n} sentences (max {check.value})"


@_run.register
def _(check: Regex, response: str) -> tuple[bool, str]:
    found = re.search(check.value, response, re.IGNORECASE if check.ignore_case else 0)
    return found is not None, "pattern found" if found else f"pattern {check.value!r} not found"


@_run.register
def _(check: NotRegex, response: str) -> tuple[bool, str]:
    found = re.search(check.value, response, re.IGNORECASE if check.ignore_case else 0)
    return found is None, f"forbidden pattern found: {found.group(0)[:40]!r}" if found else "pattern absent"


@_run.register
def _(check: ContainsAll, response: str) -> tuple[bool, str]:
    haystack = response.lower() if check.ignore_case else response
    missing = [p for p in check.value if (p.lower() if check.ignore_case else p) not in haystack]
    return not missing, f"missing: {missing}" if missing else "all present"


@_run.register
def _(check: ContainsNone, response: str) -> tuple[bool, str]:
    haystack = response.lower() if check.ignore_case else response
    present = [p for p in check.value if (p.lower() if check.ignore_case else p) in haystack]
    return not present, f"contains: {present}" if present else "none present"


@_run.register
def _(check: JsonValid, response: str) -> tuple[bool, str]:
    blocks = _CODE_BLOCK.findall(response)
    text = blocks[0][1] if len(blocks) == 1 else response
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return False, f"not valid JSON: {exc.msg} at line {exc.lineno}"
    return True, "valid JSON"


@_run.register
def _(check: CodeBlock, response: str) -> tuple[bool, str]:
    languages = [lang.lower() for lang, _ in _CODE_BLOCK.findall(response)]
    if check.value is None:
        return bool(languages), f"{len(languages)} code block(s)"
    ok = check.value.lower() in languages
    return ok, f"code block languages: {languages or 'none'} (want {check.value})"


@_run.register
def _(check: NoPlaceholders, response: str) -> tuple[bool, str]:
    found = _PLACEHOLDER.search(response)
    return found is None, f"placeholder left: {found.group(0)!r}" if found else "no placeholders"
