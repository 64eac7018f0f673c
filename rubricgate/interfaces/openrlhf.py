"""OpenRLHF's remote reward contract: recover the response from `query`, the rubric from `label`.

OpenRLHF sends `query` = prompt + response decoded with special tokens, so the response is
what follows the prompt, minus chat-template end tokens and padding. A label may name a
rubric, carry a principle, or be a JSON object with `rubric`, `principle` and `reference`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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
    a known rubric id, or free text (taken as a principle); empty means the default rubric."""
    text = (label or "").strip()
    if not text:
        return LabelSpec()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
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
