"""Label distributions at the score slots of a generated JSON verdict, from per-token logprobs.

Shared by every backend that returns top-k alternatives per generated token (vLLM in process,
OpenAI-compatible servers): the expected score of a criterion is the probability mass the judge
put on each label where it wrote that criterion's `"score"`. Pure functions over token texts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rubricgate.models.judging import VerdictForm


def score_slots(pieces: Sequence[str]) -> list[tuple[int, str, bool]]:
    """(token position, field id, quote opened) of every token that may start a score label.

    A small JSON scanner over the generated tokens: a slot is the position right after
    `"score":` (the token must open the string) or `"score":"` (it starts the label) inside a
    depth-2 object. Text inside rationales (braces, escaped quotes) cannot fake a slot.
    """
    slots: list[tuple[int, str, bool]] = []
    depth = 0
    keys: dict[int, str] = {}
    in_string = escaped = is_value = after_colon = False
    buffer: list[str] = []
    for position, piece in enumerate(pieces):
        at_value_start = (after_colon and not in_string) or (in_string and is_value and not buffer)
        if depth == 2 and keys.get(2) == "score" and at_value_start and 1 in keys:
            slots.append((position, keys[1], in_string))
        for char in piece:
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
                    if not is_value:
                        keys[depth] = "".join(buffer)
                    continue
                buffer.append(char)
            elif char == '"':
                in_string, is_value, buffer = True, after_colon, []
                after_colon = False
            elif char == "{":
                depth += 1
                after_colon = False
            elif char == "}":
                keys.pop(depth, None)
                depth -= 1
                after_colon = False
            elif char == ":":
                after_colon = True
            elif char == ",":
                after_colon = False
    return slots


def label_probs(pieces: Sequence[str], alternatives: dict[int, list[tuple[str, float]]],
                form: VerdictForm) -> dict[str, dict[str, float]]:
    """Per field, the label distribution at its score slot.

    `pieces` are the generated tokens' texts, `alternatives` the (text, logprob) pairs vLLM
    returned at slot positions. A token decides a label when, after the opening quote, it is a
    prefix of exactly one label or spells a label followed by punctuation (`p`, `pass`,
    `pass"}`). When the sampled token decides nothing (a bare `"`), the next position carries
    the distribution, weighted by that token's probability (the chain rule).
    """
    labels = {f.id: f.labels for f in form.fields}
    slots = score_slots(pieces)
    out: dict[str, dict[str, float]] = {}
    for index, (position, field_id, opened) in enumerate(slots):
        wanted = labels.get(field_id)
        if wanted is None or field_id in out or position not in alternatives:
            continue
        mass = _slot_mass(alternatives[position], wanted, opened)
        if _decides(pieces[position], wanted, opened) is None and index + 1 < len(slots):
            following, next_field, next_opened = slots[index + 1]
            if next_field == field_id and next_opened and following in alternatives:
                undecided = next((math.exp(lp) for text, lp in alternatives[position] if text == pieces[position]), 0.0)
                for label, share in _normalise(_slot_mass(alternatives[following], wanted, True)).items():
                    mass[label] = mass.get(label, 0.0) + undecided * share
        normalised = _normalise(mass)
        if normalised:
            out[field_id] = {label: normalised.get(label, 0.0) for label in wanted}
    return out


def _slot_mass(entries: list[tuple[str, float]], labels: tuple[str, ...], opened: bool) -> dict[str, float]:
    mass: dict[str, float] = {}
    for text, logprob in entries:
        if logprob == -math.inf:
            continue
        label = _decides(text, labels, opened)
        if label is not None:
            mass[label] = mass.get(label, 0.0) + math.exp(logprob)
    return mass


def _decides(text: str, labels: tuple[str, ...], opened: bool) -> str | None:
    """The one label a token at a slot commits to, or None (a bare quote, a shared prefix)."""
    if not opened:
        text = text.lstrip()  # `": "pass"` tokenizes as ` "` + `pass` or ` "pass`
        if not text.startswith('"'):
            return None
        text = text[1:]
    if not text:
        return None
    for label in labels:
        if text.startswith(label) and (len(text) == len(label) or not text[len(label)].isalnum()):
            return label
    starting = [label for label in labels if label.startswith(text)]
    return starting[0] if len(starting) == 1 else None


def _normalise(mass: dict[str, float]) -> dict[str, float]:
    total = sum(mass.values())
    return {label: value / total for label, value in mass.items()} if total > 0 else {}
