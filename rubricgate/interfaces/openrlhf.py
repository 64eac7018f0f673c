"""OpenRLHF's remote reward contract (`/get_reward`): its request and response, the response
recovered from `query`, the rubric from `label`, and queries grouped by rubric for scoring.

OpenRLHF sends `query` = prompt + response decoded with special tokens, so the response is
what follows the prompt, minus chat-template end tokens and padding. A label may name a
rubric, carry a principle, or be a JSON object with `rubric`, `principle` and `reference`; a
label never chooses a judge (DESIGN 11): a rubric it names resolves by id in the server's rubric
folders and may name only the judges the server allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from rubricgate.errors import UsageError
from rubricgate.library.rubric_files import principle_rubric as shared_principle_rubric
from rubricgate.models.reward import Item, RewardResult
from rubricgate.models.rubric import Rubric

_JUDGE_KEYS = ("judge", "judges", "reward")
"""JSON label keys that would choose judges or shaping: refused rather than ignored in silence."""

OPENRLHF_LOG_KEYS = ("unscorable", "agreement", "hard_rule_failed", "cached", "judge_calls", "latency_s")
"""`extra_logs` keys of `/get_reward`: the same every time, whatever rubrics a batch used."""

# End-of-turn, end-of-text and padding tokens of common chat templates, and role headers
# that a template may put after the prompt before the response.
_TRAILING_TOKENS = re.compile(
    r"(?:\s*(?:<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|end\|>|<\|end_of_text\|>|<end_of_turn>|<eos>|</s>"
    r"|<pad>|<\|pad\|>|\[PAD\]|<\|finetune_right_pad_id\|>|<｜end▁of▁sentence｜>))+\s*$"
)
_LEADING_TOKENS = re.compile(
    r"^(?:\s*(?:<pad>|<\|pad\|>|\[PAD\]|<\|endoftext\|>|<bos>|<s>|<\|begin_of_text\|>|<｜begin▁of▁sentence｜>))+"
)
_ROLE_HEADER = re.compile(
    r"^\s*(?:<\|im_start\|>assistant\n|<\|start_header_id\|>assistant<\|end_header_id\|>\s*"
    r"|<start_of_turn>model\n|<\|assistant\|>\n?|assistant\n)"
)


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward request: aligned lists (prompts and labels may be omitted)."""

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[str | None] | None = None


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]]


def response_from_query(query: str, prompt: str) -> str:
    """The generated response inside an OpenRLHF `query` (prompt + response, special tokens kept)."""
    body = _LEADING_TOKENS.sub("", query)
    clean_prompt = _LEADING_TOKENS.sub("", prompt)
    if prompt and query.startswith(prompt):
        rest = query[len(prompt):]
    elif clean_prompt and body.startswith(clean_prompt):
        rest = body[len(clean_prompt):]
    elif clean_prompt and clean_prompt in body:
        rest = body[body.index(clean_prompt) + len(clean_prompt):]
    else:
        rest = body  # no prompt to strip: grade the whole query
    rest = _ROLE_HEADER.sub("", rest)
    return _TRAILING_TOKENS.sub("", rest).strip()


def prompt_text(prompt: str) -> str:
    """The prompt without padding and begin-of-text tokens (templates stay readable to a judge)."""
    return _TRAILING_TOKENS.sub("", _LEADING_TOKENS.sub("", prompt)).strip()


@dataclass(frozen=True)
class LabelSpec:
    """What one OpenRLHF label asks for."""

    rubric: str | None = None
    principle: str | None = None
    reference: str | None = None


def parse_label(label: str | None, known_rubrics: set[str]) -> LabelSpec:
    """`{"rubric"|"principle"|"reference": ...}` JSON, `rubric:NAME`, `principle:TEXT`,
    a known rubric id, or free text (taken as a principle); empty means the default rubric.
    A JSON label that tries to pick a judge or reward shaping (`judge`, `judges`, `reward`) is a
    usage error: those belong to the rubric files the operator allows."""
    text = (label or "").strip()
    if not text:
        return LabelSpec()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            chosen = [key for key in _JUDGE_KEYS if key in data]
            if chosen:
                raise UsageError(f"a label may carry rubric, principle and reference, not {', '.join(chosen)}: "
                                 "judges and reward shaping come from the server's rubrics and allowed judges")
            return LabelSpec(rubric=_str(data.get("rubric")), principle=_str(data.get("principle")),
                             reference=_str(data.get("reference")))
    kind, sep, value = text.partition(":")
    if sep and kind.strip().lower() == "rubric":
        return LabelSpec(rubric=value.strip())
    if sep and kind.strip().lower() == "principle":
        return LabelSpec(principle=value.strip())
    if text in known_rubrics:
        return LabelSpec(rubric=text)
    return LabelSpec(principle=text)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@dataclass
class QueryGroup:
    """The queries of one request that share a rubric: scored together in one batch."""

    rubric: Rubric
    indices: list[int] = field(default_factory=list)
    """Positions in the request's `query`, so results go back in request order."""
    items: list[Item] = field(default_factory=list)


def group_queries(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str | None],
                  known_rubrics: set[str], rubric_for: Callable[[str | None], Rubric]) -> list[QueryGroup]:
    """Aligned queries, prompts and labels as items grouped by rubric, in first-seen order.

    `rubric_for` resolves a rubric name (None: the default rubric); a label that carries only a
    principle gets a one-criterion rubric for it.
    """
    groups: dict[str, QueryGroup] = {}
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        spec = parse_label(label, known_rubrics)
        rubric = principle_rubric(spec.principle) if spec.principle and not spec.rubric else rubric_for(spec.rubric)
        item = Item(id=str(i), prompt=prompt_text(prompt), response=response_from_query(query, prompt),
                    reference=spec.reference)
        group = groups.setdefault(rubric.ref, QueryGroup(rubric))
        group.indices.append(i)
        group.items.append(item)
    return list(groups.values())


def principle_rubric(principle: str) -> Rubric:
    """A one-criterion rubric for a label that carries a principle (RewardAnything style)."""
    return shared_principle_rubric(principle, "label-principle", "Principle given by the training label.",
                                   "label principle")


def openrlhf_response(results: list[RewardResult], unscorable: Literal["batch_mean"] | float) -> OpenRLHFResponse:
    """Rewards OpenRLHF can turn into a tensor: an unscorable sample gets the batch mean of the
    scored ones (or the fixed `unscorable` value) and is flagged in `extra_logs["unscorable"]`."""
    scored = [r.reward for r in results if r.reward is not None]
    if unscorable == "batch_mean":
        fallback = sum(scored) / len(scored) if scored else 0.5
    else:
        fallback = float(unscorable)
    rewards = [r.reward if r.reward is not None else fallback for r in results]
    logs = {
        "unscorable": [float(r.reward is None) for r in results],
        "agreement": [r.agreement if r.agreement is not None else 0.0 for r in results],
        "hard_rule_failed": [float("hard_rule_failed" in r.flags) for r in results],
        "cached": [float(r.cached) for r in results],
        "judge_calls": [float(r.judge_calls) for r in results],
        "latency_s": [r.latency_ms / 1000 for r in results],
    }
    return OpenRLHFResponse(rewards=rewards, scores=list(rewards), extra_logs=logs)
