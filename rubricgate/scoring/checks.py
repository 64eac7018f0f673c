"""Deterministic hard-rule checks: objective rules decided without any judge.

Every check is linear (or close) in the response: patterns run on RE2 (`compile_pattern`), which
never backtracks, JSON-schema `pattern` keywords included. They are CPU work, so the scorer runs
them off the event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache, singledispatch
from typing import Any

from rubricgate.errors import UsageError
from rubricgate.models.rubric import (
    Case, Check, CodeBlock, ContainsAll, ContainsNone, EndsWith, IfEval, JsonSchema, JsonValid, Language,
    MaxChars, MaxSentences, MaxWords, MinSentences, MinWords, NoPlaceholders, NotRegex, Paragraphs, Regex,
    RequiredSections, StartsWith, compile_pattern,
)
from rubricgate.scoring.counts import sentence_count, word_count

_CODE_BLOCK = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PLACEHOLDER = re.compile(
    r"\[[A-Z][\w'.-]{2,}(?: [\w'.-]+){0,4}\]"  # [NAME], [Your Name], [Dates]; not arr[i] or a[N]
    r"|(?i:\[(?:insert|your|add|enter)\b[^\]]{0,40}\])"
    r"|\{\{\s*\w+\s*\}\}|(?i:<(?:insert|your)[^>]{0,30}>)|\bTODO\b|\bTBD\b|(?i:lorem ipsum)"
)


def run_check(check: Check, response: str) -> tuple[bool, str]:
    """(passed, what was found) for one check on one response."""
    return _run(check, response)


def _json_text(response: str) -> str:
    blocks = _CODE_BLOCK.findall(response)
    return blocks[0][1] if len(blocks) == 1 else response


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
    n = sentence_count(response)
    return n <= check.value, f"{n} sentences (max {check.value})"


@_run.register
def _(check: MinSentences, response: str) -> tuple[bool, str]:
    n = sentence_count(response)
    return n >= check.value, f"{n} sentences (min {check.value})"


@_run.register
def _(check: Paragraphs, response: str) -> tuple[bool, str]:
    parts = response.split(check.separator) if check.separator else re.split(r"\n\s*\n", response)
    n = len([p for p in parts if p.strip()])
    ok = (check.min is None or n >= check.min) and (check.max is None or n <= check.max)
    return ok, f"{n} paragraphs (min {check.min}, max {check.max})"


@_run.register
def _(check: StartsWith, response: str) -> tuple[bool, str]:
    text, want = response.lstrip(), check.value
    ok = text.lower().startswith(want.lower()) if check.ignore_case else text.startswith(want)
    return ok, f"starts with {text[:len(want) + 10]!r}"


@_run.register
def _(check: EndsWith, response: str) -> tuple[bool, str]:
    text, want = response.rstrip(), check.value
    ok = text.lower().endswith(want.lower()) if check.ignore_case else text.endswith(want)
    return ok, f"ends with {text[-len(want) - 10:]!r}"


@_run.register
def _(check: Case, response: str) -> tuple[bool, str]:
    ok = response == (response.lower() if check.value == "lower" else response.upper())
    return ok, f"all {check.value} case" if ok else f"not all {check.value} case"


@_run.register
def _(check: Language, response: str) -> tuple[bool, str]:
    try:
        import langdetect
    except ImportError as exc:
        raise UsageError("check 'language' needs: pip install 'rubricgate[checks]'") from exc
    langdetect.DetectorFactory.seed = 0  # langdetect samples; a fixed seed keeps checks repeatable
    try:
        found = str(langdetect.detect(response))
    except langdetect.LangDetectException:
        return False, "no language detected"
    return found.split("-")[0] == check.value.split("-")[0], f"language {found} (want {check.value})"


@_run.register
def _(check: JsonSchema, response: str) -> tuple[bool, str]:
    import jsonschema

    try:
        value = json.loads(_json_text(response))
    except json.JSONDecodeError as exc:
        return False, f"not valid JSON: {exc.msg} at line {exc.lineno}"
    errors = sorted(_schema_validator()(check.value).iter_errors(value), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        return False, f"JSON does not match the schema at {where}: {errors[0].message[:120]}"
    return True, "JSON matches the schema"


@_run.register
def _(check: RequiredSections, response: str) -> tuple[bool, str]:
    lines = [line.strip().lstrip("#").strip().lower() for line in response.splitlines()]
    missing = [s for s in check.value if not any(line.startswith(s.lower()) for line in lines)]
    return not missing, f"missing sections: {missing}" if missing else "all sections present"


@_run.register
def _(check: IfEval, response: str) -> tuple[bool, str]:
    from rubricgate.scoring.ifeval import check_ifeval

    return check_ifeval(check.instruction, check.kwargs, response, check.prompt, check.benchmark)


@cache
def _schema_validator() -> Any:
    """Draft 2020-12 with two keywords made linear: `pattern` on RE2 (jsonschema's uses Python's
    backtracking `re`) and `uniqueItems` through a set (jsonschema compares objects pairwise:
    3,000 objects, 40 s). `patternProperties` and `$ref` are refused when the rubric is loaded."""
    import jsonschema

    def pattern(validator: Any, value: str, instance: object, _: object) -> Iterator[Any]:
        if validator.is_type(instance, "string") and compile_pattern(value).search(str(instance)) is None:
            yield jsonschema.ValidationError(f"{instance!r:.80} does not match {value!r}")

    def unique_items(validator: Any, unique: bool, instance: object, _: object) -> Iterator[Any]:
        if not unique or not validator.is_type(instance, "array"):
            return
        seen: set[str] = set()
        for element in instance:  # type: ignore[attr-defined]  # is_type says it is a list
            key = json.dumps(_json_value(element), sort_keys=True)
            if key in seen:
                yield jsonschema.ValidationError(f"{instance!r:.80} has non-unique elements")
                return
            seen.add(key)

    return jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                        {"pattern": pattern, "uniqueItems": unique_items})


def _json_value(value: object) -> object:
    """JSON Schema equality as a canonical value: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


@_run.register
def _(check: Regex, response: str) -> tuple[bool, str]:
    found = compile_pattern(check.value, check.ignore_case).search(response)
    return found is not None, "pattern found" if found else f"pattern {check.value!r} not found"


@_run.register
def _(check: NotRegex, response: str) -> tuple[bool, str]:
    found = compile_pattern(check.value, check.ignore_case).search(response)
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
    try:
        json.loads(_json_text(response))
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
