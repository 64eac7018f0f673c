"""Generator output -> Rubric: tolerant of code fences, prose around the document, YAML or JSON,
and the field names models like to use; strict about the result (the Rubric model validates it).

Also the OpenRubrics validation checklist as code (`review_rubric`): criteria never refer to
responses by index or position, principles carry no topic-specific facts (when asked), and no
two criteria say the same thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from rubricgate.authoring.phrasing import phrase_principle, slug
from rubricgate.errors import VerdictParseError
from rubricgate.library.rubric_files import describe_validation_error
from rubricgate.models.rubric import CHECK_TYPES, Criterion, Rubric

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[^\n]*\n(.*?)```", re.DOTALL)
_TEXT_KEYS = ("text", "criterion", "statement", "description", "rule", "requirement", "principle", "question",
              "name", "title")
_PASS_KEYS = ("pass", "pass_", "passes", "pass_descriptor", "satisfied", "satisfies", "good", "meets", "positive",
              "pass_description")
_FAIL_KEYS = ("fail", "fails", "fail_descriptor", "violated", "violates", "bad", "misses", "negative",
              "fail_description")
_WEIGHT_KEYS = ("weight", "importance", "points", "priority", "score")
_KIND_KEYS = ("kind", "type", "category", "class")
_WEIGHT_WORDS = {"critical": 5.0, "essential": 4.0, "very high": 4.0, "high": 3.0, "important": 3.0,
                 "medium": 2.0, "moderate": 2.0, "normal": 2.0, "low": 1.0, "minor": 1.0, "optional": 0.5}
_INDEX_REFERENCE = re.compile(
    r"\b(?:response|output|answer|assistant|completion|candidate)\s*(?:\(?[ab12]\)?(?![\w'])|one\b|two\b|#\s*\d)"
    r"|\bthe (?:first|second|former|latter|chosen|rejected|preferred|other) (?:response|output|answer|one)\b"
    r"|\b(?:chosen|rejected) response\b", re.IGNORECASE)
_STOP = frozenset("""a an the and or but of to in on for with is are be it its this that response responses any
every each all no not does do by as at from into than then so such their there which who whom whose user
""".split())


@dataclass
class Review:
    """What the validation checklist found: fixes it made and problems it could not fix."""

    rubric: Rubric
    fixes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_generated_rubric(text: str, rubric_id: str, *, principles: Iterable[str] | None = None,
                           description: str | None = None) -> Rubric:
    """Read a generator's reply as a rubric named `rubric_id`.

    Raises VerdictParseError saying what is wrong (no document found, or which field is invalid),
    in words that can be fed back to the generator.
    """
    data = _find_document(text)
    if isinstance(data, list):
        data = {"criteria": data}
    if not isinstance(data, Mapping):
        raise VerdictParseError(f"expected a JSON object with a 'criteria' list, got {type(data).__name__}")
    for wrapper in ("rubric", "result", "output"):
        inner = data.get(wrapper)
        if isinstance(inner, Mapping) and ("criteria" in inner or "hard_rules" in inner):
            data = inner
            break
    normalised = normalise_rubric_data(data, rubric_id)
    if principles is not None:
        normalised["principles"] = list(principles)
    if description is not None and not normalised.get("description"):
        normalised["description"] = description
    try:
        return Rubric.model_validate(normalised)
    except ValidationError as exc:
        raise VerdictParseError(f"invalid rubric: {describe_validation_error(exc, normalised)}") from exc


def normalise_rubric_data(data: Mapping[str, Any], rubric_id: str) -> dict[str, Any]:
    """Map the shapes generators produce onto the rubric file format (aliases, OpenRubrics-style
    `hard_rules` / `principles` lists, string criteria, check shorthands, weight words)."""
    raw: list[tuple[Any, str | None]] = []
    for key, kind in (("criteria", None), ("items", None), ("rubric", None), ("hard_rules", "hard_rule"),
                      ("hard rules", "hard_rule"), ("rules", "hard_rule"), ("principle_criteria", "principle")):
        value = data.get(key)
        if isinstance(value, list):
            raw += [(entry, kind) for entry in value]
    source_principles = data.get("principles")
    if not raw and isinstance(source_principles, list):
        raw += [(entry, "principle") for entry in source_principles]  # OpenRubrics: principles are criteria
        source_principles = None
    elif isinstance(source_principles, list) and any(isinstance(p, Mapping) for p in source_principles):
        raw += [(entry, "principle") for entry in source_principles]
        source_principles = None
    if not raw:
        raise VerdictParseError("the reply has no 'criteria' list (or 'hard_rules' / 'principles' lists)")
    criteria = []
    seen: set[str] = set()
    for entry, kind in raw:
        criterion = _criterion(entry, kind)
        base = criterion["id"]
        counter = 2
        while criterion["id"] in seen:
            criterion["id"] = f"{base[:60]}_{counter}"
            counter += 1
        seen.add(criterion["id"])
        criteria.append(criterion)
    out: dict[str, Any] = {"id": rubric_id, "criteria": criteria}
    description = data.get("description") or data.get("summary")
    if isinstance(description, str):
        out["description"] = " ".join(description.split())
    if isinstance(source_principles, list):
        out["principles"] = [str(p) for p in source_principles if str(p).strip()]
    scale = data.get("scale")
    if isinstance(scale, Mapping) and isinstance(scale.get("points"), int):
        out["scale"] = {"points": scale["points"]}
    return out


def review_rubric(rubric: Rubric, *, generic: bool = False) -> Review:
    """The validation checklist: fix overlapping criteria, report index references (and, for a
    generic rubric, topic-specific facts in principles) as problems to send back to the generator."""
    review = Review(rubric)
    kept: list[Criterion] = []
    for criterion in rubric.criteria:
        twin = next((k for k in kept if _overlap(k.text, criterion.text) >= 0.75 and k.kind == criterion.kind
                     and (k.check is None or criterion.check is None or k.check == criterion.check)), None)
        if twin is not None and criterion.check is None:
            review.fixes.append(f"dropped {criterion.id!r}: it repeats {twin.id!r}")
            continue
        kept.append(criterion)
        if _INDEX_REFERENCE.search(" ".join(filter(None, (criterion.text, criterion.pass_, criterion.fail)))):
            review.problems.append(f"criterion {criterion.id!r} refers to a response by index or position; "
                                   "describe the quality itself instead")
        if generic and criterion.kind == "principle" and re.search(r"\d|\"[^\"]+\"|“", criterion.text):
            review.problems.append(f"principle {criterion.id!r} contains numbers or quotes, i.e. topic-specific "
                                   "facts; state the general quality instead")
    if len(kept) != len(rubric.criteria):
        review.rubric = revise(rubric, criteria=kept)
    return review


def revise(rubric: Rubric, **changes: Any) -> Rubric:
    """The rubric with fields replaced, validated again and with a fresh version.

    Never `model_copy(update=...)` a rubric: it skips validation and keeps the cached version.
    """
    data = rubric.model_dump(by_alias=True)
    for key, value in changes.items():
        if key == "criteria":
            value = [c.model_dump(by_alias=True) if isinstance(c, Criterion) else c for c in value]
        data[key] = value
    return Rubric.model_validate(data)


def _find_document(text: str) -> Any:
    """The first JSON object/array or YAML mapping in the reply (fenced blocks first)."""
    candidates = [body for _, body in _FENCE.findall(text)] + [text]
    for candidate in candidates:
        found = _first_json(candidate)
        if found is not None:
            return found
    for candidate in candidates:
        start = re.search(r"(?m)^(?:id|description|criteria|hard_rules|rubric)\s*:", candidate)
        if not start:
            continue
        try:
            value = yaml.safe_load(candidate[start.start():])
        except yaml.YAMLError:
            continue
        if isinstance(value, Mapping):
            return value
    preview = " ".join(text.split())[:120]
    raise VerdictParseError(f"the reply contains no JSON object or YAML rubric: {preview!r}")


def _first_json(text: str) -> Any:
    decoder = json.JSONDecoder(strict=False)
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, Mapping) or (isinstance(value, list) and value and isinstance(value[0], Mapping)):
            return value
    return None


def _criterion(entry: Any, kind: str | None) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"text": entry}
    if not isinstance(entry, Mapping):
        raise VerdictParseError(f"a criterion must be an object with 'text', got {entry!r:.60}")
    text = _first(entry, _TEXT_KEYS)
    if not isinstance(text, str) or len(text.strip()) < 3:
        raise VerdictParseError(f"criterion {dict(entry)!r:.100} has no 'text' sentence")
    text = _response_sentence(text)
    out: dict[str, Any] = {"text": text}
    given_id = entry.get("id") if isinstance(entry.get("id"), str) else None
    out["id"] = _valid_id(given_id) or slug(text)
    out["kind"] = _kind(_first(entry, _KIND_KEYS), kind, entry)
    weight = _weight(_first(entry, _WEIGHT_KEYS))
    if weight is not None:
        out["weight"] = weight
    for key, names in (("pass", _PASS_KEYS), ("fail", _FAIL_KEYS)):
        value = _first(entry, names)
        if isinstance(value, str) and value.strip():
            out[key] = " ".join(value.split())
    check = _check(entry.get("check"))
    if check is not None:
        out["check"] = check
        out["kind"] = "hard_rule"
    return out


def _first(entry: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).lower().replace(" ", "_").replace("-", "_"): v for k, v in entry.items()}
    for key in keys:
        if key in lowered and lowered[key] not in (None, ""):
            return lowered[key]
    return None


def _response_sentence(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"^(?:\d+[.)]|[-*•])\s+", "", text)
    if re.match(r"(?i)^the response\b", text):
        text = "The response" + text[len("the response"):]
        return text if text.endswith((".", "!", "?")) else text + "."
    return phrase_principle(text).text


def _valid_id(value: str | None) -> str | None:
    if not value:
        return None
    candidate = re.sub(r"[^a-z0-9_]+", "_", value.strip().lower()).strip("_")[:64]
    return candidate if re.fullmatch(r"[a-z][a-z0-9_]*", candidate) else None


def _kind(value: Any, default: str | None, entry: Mapping[str, Any]) -> str:
    if isinstance(value, str):
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        if word in {"hard_rule", "hard", "rule", "hard_rules", "explicit", "constraint", "requirement", "objective"}:
            return "hard_rule"
        if word in {"principle", "principles", "soft", "implicit", "quality", "subjective", "soft_rule"}:
            return "principle"
    if default is not None:
        return default
    return "hard_rule" if entry.get("check") else "principle"


def _weight(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        word = value.strip().lower()
        if word in _WEIGHT_WORDS:
            return _WEIGHT_WORDS[word]
        try:
            number = float(word)
        except ValueError:
            return None
    else:
        return None
    return min(max(number, 0.1), 100.0) if number > 0 else None


def _check(value: Any) -> dict[str, Any] | None:
    """`{type: max_words, value: 120}`, `{max_words: 120}` or `"max_words: 120"`; unknown types are dropped
    (a hard rule without a check is still judged)."""
    if isinstance(value, str):
        kind, _, raw = value.partition(":")
        value = {"type": kind.strip(), **({"value": yaml.safe_load(raw)} if raw.strip() else {})}
    if not isinstance(value, Mapping):
        return None
    if "type" not in value and len(value) == 1:
        (kind, raw), = value.items()
        value = {"type": kind, **({"value": raw} if raw is not None and raw is not True else {})}
    kind = str(value.get("type", "")).strip().lower()
    return dict(value, type=kind) if kind in CHECK_TYPES else None


def _overlap(a: str, b: str) -> float:
    wa, wb = _content_words(a), _content_words(b)
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}
