"""Judge reply text -> Verdict, tolerant of code fences, prose around the JSON and label spelling."""

from __future__ import annotations

import json
import re
from typing import Any

from rubricgate.errors import VerdictParseError
from rubricgate.models.judging import FieldVerdict, JudgeReply, Verdict, VerdictForm

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_SYNONYMS = {"yes": "pass", "true": "pass", "passed": "pass", "no": "fail", "false": "fail",
             "failed": "fail"}


def parse_verdict(reply: JudgeReply, form: VerdictForm) -> Verdict:
    """Parse every form field the reply answers; raise if it answers none.

    Fields with a missing or out-of-range label are left out, so one sloppy criterion does
    not discard the whole vote; callers compare against the form to flag the gap.
    """
    data = _first_json_object(reply.text)
    fields: dict[str, FieldVerdict] = {}
    for field in form.fields:
        entry = data.get(field.id)
        raw = entry.get("score", entry.get("verdict", entry.get("label"))) if isinstance(entry, dict) else entry
        label = _normalise_label(raw, field.labels)
        if label is None:
            continue
        rationale = entry.get("rationale") if isinstance(entry, dict) else None
        probs = (reply.label_probs or {}).get(field.id)
        fields[field.id] = FieldVerdict(label=label, rationale=rationale if isinstance(rationale, str) else None,
                                        probs=probs)
    if not fields:
        expected = ", ".join(f.id for f in form.fields)
        raise VerdictParseError(f"reply has no usable score for any criterion (expected {expected}): "
                                f"{_preview(reply.text)}")
    return Verdict(fields=fields)


def is_complete(verdict: Verdict, form: VerdictForm) -> bool:
    """True when every form field got a valid label."""
    return all(f.id in verdict.fields for f in form.fields)


def _first_json_object(text: str) -> dict[str, Any]:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = json.JSONDecoder(strict=False).raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise VerdictParseError(f"reply contains no JSON object: {_preview(text)}")


def _normalise_label(raw: object, labels: tuple[str, ...]) -> str | None:
    if isinstance(raw, bool):
        raw = "pass" if raw else "fail"
    elif isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if raw is None or isinstance(raw, (dict, list)):
        return None
    label = str(raw).strip().strip('"').lower()
    label = _SYNONYMS.get(label, label) if "pass" in labels else label
    return label if label in labels else None


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("…" if len(flat) > limit else ""))
