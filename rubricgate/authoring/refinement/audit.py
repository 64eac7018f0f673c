"""A text meta-judge's reply -> findings and edits: lenient about shape, strict about meaning."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from rubricgate.authoring.diff import diff_rubrics
from rubricgate.authoring.parse import normalise_rubric_data, parse_generated_rubric
from rubricgate.authoring.refinement.edits import Edit
from rubricgate.authoring.refinement.evidence import Finding
from rubricgate.errors import VerdictParseError
from rubricgate.library.rubric_files import describe_validation_error
from rubricgate.models.rubric import Criterion, Rubric


def parse_audit(text: str, rubric: Rubric, sample_ids: Sequence[str]) -> tuple[list[Finding], list[Edit], str,
                                                                               list[str]]:
    """A meta-judge's reply -> (findings, edits, summary, notes).

    Lenient about shape (code fences, prose around the JSON, `rubric`/`criteria` given in full
    instead of edits, common field names); strict about meaning: edits must apply to the rubric.
    Evidence ids not among `sample_ids` are dropped with a note.
    """
    doc = _json_object(text)
    if doc is None:
        preview = " ".join(text.split())[:120]
        raise VerdictParseError(f"the reply contains no JSON object: {preview!r}")
    notes: list[str] = []
    known = set(sample_ids)
    findings = []
    for entry in _list(doc, "findings", "exploits", "issues", "analysis"):
        if isinstance(entry, Mapping):
            findings.append(_finding(entry, rubric, known, notes))
    summary = str(doc.get("summary") or doc.get("reason") or "").strip()
    proposal = doc.get("proposal")
    if isinstance(proposal, Mapping):  # {"findings": [...], "proposal": {"edits": [...]}}
        doc = {**doc, **proposal}
    if isinstance(doc.get("rubric"), Mapping) or (isinstance(doc.get("criteria"), list) and "edits" not in doc):
        edits = _edits_from_full_rubric(doc, rubric)
    else:
        edits = [_edit(entry, rubric) for entry in _list(doc, "edits", "changes", "proposal", "refinements")]
    return findings, edits, " ".join(summary.split()), notes


# --------------------------------------------------------------------------- helpers

def _json_object(text: str) -> dict[str, Any] | None:
    """The largest JSON object in the reply (fenced blocks and prose around it are ignored)."""
    decoder = json.JSONDecoder(strict=False)
    best: dict[str, Any] | None = None
    best_len = 0
    for match in re.finditer(r"\{", text):
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and end - match.start() > best_len:
            best, best_len = value, end - match.start()
    return best


def _list(doc: Mapping[str, Any], *keys: str) -> list[Any]:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, list):
            return value
    return []


def _slug(value: object, default: str) -> str:
    text = re.sub(r"[^a-z0-9_]+", "_", str(value or "").strip().lower()).strip("_")[:64]
    return text or default


def _finding(entry: Mapping[str, Any], rubric: Rubric, known: set[str], notes: list[str]) -> Finding:
    name = _slug(entry.get("name") or entry.get("type") or entry.get("exploit") or entry.get("title"), "unnamed")
    kind_word = str(entry.get("kind") or entry.get("category") or "").lower()
    kind: Literal["exploit", "ambiguity"] = "ambiguity" if "ambig" in kind_word or "unclear" in kind_word else "exploit"
    raw = entry.get("evidence") or entry.get("items") or entry.get("item_ids") or entry.get("ids") or []
    raw_ids = [raw] if isinstance(raw, (str, int)) else raw if isinstance(raw, list) else []
    evidence = []
    for value in raw_ids:
        candidate = str(value).strip()
        for form in (candidate, re.sub(r"^(?:item|id|#)\s*", "", candidate, flags=re.IGNORECASE)):
            if form in known:
                evidence.append(form)
                break
        else:
            notes.append(f"finding {name!r}: evidence id {candidate!r} is not in the sample; dropped")
    criterion = entry.get("criterion")
    criterion_id = str(criterion) if isinstance(criterion, str) and any(c.id == criterion for c in rubric.criteria) \
        else None
    explanation = " ".join(str(entry.get("explanation") or entry.get("description") or entry.get("why") or "").split())
    return Finding(kind=kind, name=name, criterion=criterion_id, evidence=tuple(dict.fromkeys(evidence)),
                   explanation=explanation)


_OPS = {"add": "add", "new": "add", "create": "add", "clarify": "clarify", "edit": "clarify", "modify": "clarify",
        "rewrite": "clarify", "update": "clarify", "change": "clarify", "reword": "clarify", "reweight": "reweight",
        "weight": "reweight", "set_weight": "reweight", "remove": "remove", "delete": "remove", "drop": "remove"}


def _edit(entry: Any, rubric: Rubric) -> Edit:
    if not isinstance(entry, Mapping):
        raise VerdictParseError(f"an edit must be an object with 'op', got {entry!r:.60}")
    op = _OPS.get(str(entry.get("op") or entry.get("action") or entry.get("type") or "").strip().lower())
    if op is None:
        raise VerdictParseError(f"edit {dict(entry)!r:.100} has no valid 'op' (add, clarify, reweight or remove)")
    why = " ".join(str(entry.get("why") or entry.get("reason") or entry.get("rationale") or "").split())
    inner = entry.get("criterion")
    if op == "add":
        source = inner if isinstance(inner, Mapping) else {k: v for k, v in entry.items() if k not in ("op", "why")}
        try:
            [data] = normalise_rubric_data({"criteria": [source]}, rubric.id)["criteria"]
            criterion = Criterion.model_validate(data)
        except ValidationError as exc:
            raise VerdictParseError(f"added criterion is invalid: {describe_validation_error(exc, data)}") from exc
        return Edit(op="add", id=criterion.id, criterion=criterion, why=why)
    fields = dict(inner) if isinstance(inner, Mapping) else {}
    fields.update({k: v for k, v in entry.items() if k in ("text", "pass", "fail", "weight")})
    target = entry.get("id") or entry.get("criterion_id") or fields.get("id") or (inner if isinstance(inner, str)
                                                                                  else None)
    if not isinstance(target, str) or not target:
        raise VerdictParseError(f"edit {op!r} must name the criterion with 'id'")
    weight = fields.get("weight")
    try:
        number = float(weight) if weight is not None and not isinstance(weight, bool) else None
    except (TypeError, ValueError):
        raise VerdictParseError(f"edit {op!r} {target!r}: weight {weight!r} is not a number") from None
    if number is not None and not 0 < number <= 100:
        raise VerdictParseError(f"edit {op!r} {target!r}: weight must be in (0, 100], got {number:g}")

    def text(key: str) -> str | None:
        value = fields.get(key)
        return " ".join(value.split()) if isinstance(value, str) and value.strip() else None

    return Edit.model_validate({"op": op, "id": target, "text": text("text"), "pass": text("pass"),
                                "fail": text("fail"), "weight": number, "why": why})


def _edits_from_full_rubric(doc: Mapping[str, Any], rubric: Rubric) -> list[Edit]:
    """A meta-judge that rewrote the whole rubric: its differences from the current one, as edits."""
    inner = doc.get("rubric") if isinstance(doc.get("rubric"), Mapping) else doc
    proposed = parse_generated_rubric(json.dumps(inner), rubric.id)
    diff = diff_rubrics(rubric, proposed)
    new = {c.id: c for c in proposed.criteria}
    edits: list[Edit] = []
    for change in diff.criteria:
        if change.change == "removed":
            edits.append(Edit(op="remove", id=change.id))
        elif change.change == "added":
            edits.append(Edit(op="add", id=change.id, criterion=new[change.id]))
        else:
            after = new[change.id]
            changed = {f.field for f in change.fields}
            if changed & {"text", "pass", "fail"}:
                edits.append(Edit.model_validate({
                    "op": "clarify", "id": change.id, "text": after.text if "text" in changed else None,
                    "pass": after.pass_ if "pass" in changed else None,
                    "fail": after.fail if "fail" in changed else None,
                    "weight": after.weight if "weight" in changed else None}))
            elif "weight" in changed:
                edits.append(Edit(op="reweight", id=change.id, weight=after.weight))
    return edits
