"""Judge prompt templates: load from `prompts/`, version by content hash, render safely.

The graded response is untrusted: it goes in as fenced data in the last message, never into
the instructions. The shared part (instructions, rubric) comes first so prefix caches apply.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from string import Template

from rubricgate.errors import UsageError
from rubricgate.judges.fence import fence_tag, installation_key
from rubricgate.library.resources import shipped_dir
from rubricgate.models.judging import ChatMessage, FormField, VerdictForm
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Criterion, Rubric

DEFAULT_TEMPLATE = "judge_v1"
_SECTION = re.compile(r"^<!-- (system|user) -->\n", re.MULTILINE)
BINARY_LABELS = ("fail", "pass")


@dataclass(frozen=True)
class PromptTemplate:
    """A two-part (system, user) judge template and its content-hash version."""

    name: str
    system: Template
    user: Template
    version: str
    """`name@hash`: editing the file changes it, so no stale cache entry is ever served."""


@cache
def load_template(name: str = DEFAULT_TEMPLATE) -> PromptTemplate:
    """Read `prompts/<name>.md`, split on the `<!-- system -->` / `<!-- user -->` markers."""
    path = shipped_dir("prompts") / f"{name}.md"
    if not path.is_file():
        raise UsageError(f"unknown prompt template {name!r}: no file {path}")
    text = path.read_text(encoding="utf-8")
    parts = dict(zip(*[iter(_SECTION.split(text)[1:])] * 2, strict=True))
    if set(parts) != {"system", "user"}:
        raise UsageError(f"{path}: needs a '<!-- system -->' and a '<!-- user -->' section")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return PromptTemplate(name, Template(parts["system"].strip()), Template(parts["user"].strip()),
                          f"{name}@{digest}")


def verdict_form(rubric: Rubric, rationale: bool = True) -> VerdictForm:
    """The fields the judge fills: every criterion without a deterministic check."""
    labels_for_principles = tuple(str(i) for i in range(1, rubric.scale.points + 1))
    fields = tuple(
        FormField(id=c.id, labels=BINARY_LABELS if c.kind == "hard_rule" else labels_for_principles)
        for c in rubric.judged_criteria
    )
    return VerdictForm(fields=fields, rationale=rationale)


def render_messages(template: PromptTemplate, rubric: Rubric, item: Item,
                    form: VerdictForm, fence_key: bytes | None = None) -> tuple[ChatMessage, ...]:
    """System (instructions + rubric) then user (prompt, reference, fenced response).

    The fence tag is an HMAC of the response under `fence_key` (default: the installation's key),
    so the response cannot close its own fence; see `judges/fence.py`.
    """
    response = response_text(item)
    fence = fence_tag(response, fence_key or installation_key())
    judged = {f.id for f in form.fields}
    criteria = "\n".join(_criterion_line(c) for c in rubric.criteria if c.id in judged)
    system = template.system.safe_substitute(
        rubric_id=rubric.id,
        rubric_description=rubric.description or "(no description)",
        criteria=criteria,
        points=str(rubric.scale.points),
        verdict_format=verdict_example(form),
    )
    reference = f"\n## Reference answer (trusted, for comparison)\n{item.reference}\n" if item.reference else ""
    user = template.user.safe_substitute(
        prompt=prompt_text(item), reference_block=reference, response=response, fence=fence,
    )
    return (ChatMessage(role="system", content=system), ChatMessage(role="user", content=user))


def verdict_example(form: VerdictForm) -> str:
    """The JSON shape the judge must reply with, one line per field."""
    lines = []
    for field in form.fields:
        choices = "|".join(field.labels)
        body = f'"rationale": "<one sentence>", "score": "{choices}"' if form.rationale else f'"score": "{choices}"'
        lines.append(f'  "{field.id}": {{{body}}}')
    return "{\n" + ",\n".join(lines) + "\n}"


def prompt_text(item: Item) -> str:
    """The prompt as text; a chat becomes a `Role: content` transcript."""
    if isinstance(item.prompt, str):
        return item.prompt
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in item.prompt)


def response_text(item: Item) -> str:
    """The graded text: the response, or the final assistant message of a message list."""
    if isinstance(item.response, str):
        return item.response
    for message in reversed(item.response):
        if message.role == "assistant":
            return message.content
    raise UsageError("response is a message list without an assistant message; nothing to grade")


def _criterion_line(criterion: Criterion) -> str:
    line = f"- {criterion.id} ({criterion.kind}): {criterion.text}"
    if criterion.pass_:
        line += f"\n    passes: {criterion.pass_}"
    if criterion.fail:
        line += f"\n    fails: {criterion.fail}"
    return line


def canonical_json(value: object) -> str:
    """Sorted-key compact JSON: the one serialisation every hash in rubricgate uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
