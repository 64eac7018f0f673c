"""IFEval instructions as deterministic checks, through the maintained `if-verifiable` checkers.

Two IFEval checkers need NLTK data files that cannot be downloaded offline (sentence splitting
and word tokenising); those two are implemented here with the same relations and thresholds.
`if_verifiable.ifbench` is not used: importing it tries to download NLTK data.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from rubricgate.errors import UsageError

_OWN = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
_WORD = re.compile(r"\w+|[^\w\s]")


def check_ifeval(instruction: str, kwargs: dict[str, Any], response: str, prompt: str | None) -> tuple[bool, str]:
    """(passed, detail) for one IFEval instruction in strict mode (the response as it is)."""
    arguments = {k: v for k, v in kwargs.items() if v is not None}
    if not response.strip():
        return False, "empty response"
    if instruction in _OWN:
        return _own_check(instruction, arguments, response)
    registry = _registry()
    if instruction not in registry:
        raise UsageError(f"unknown IFEval instruction {instruction!r}; known: {', '.join(sorted(registry))}")
    checker = registry[instruction](instruction)
    try:
        checker.build_description(**arguments)
        needed = checker.get_instruction_args() or {}
        if "prompt" in needed:
            if prompt is None:
                raise UsageError(f"IFEval instruction {instruction!r} needs the original prompt: set `prompt`")
            checker.build_description(prompt=prompt)
        passed = bool(checker.check_following(response))
    except TypeError as exc:
        raise UsageError(f"IFEval instruction {instruction!r}: bad kwargs {arguments}: {exc}") from exc
    return passed, f"{instruction}: {'followed' if passed else 'not followed'}"


@cache
def _registry() -> dict[str, Any]:
    try:
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as exc:
        raise UsageError("check 'ifeval' needs: pip install 'rubricgate[checks]'") from exc
    return dict(INSTRUCTION_DICT)


def _own_check(instruction: str, kwargs: dict[str, Any], response: str) -> tuple[bool, str]:
    relation = kwargs.get("relation", "at least")
    if relation not in ("less than", "at least"):
        raise UsageError(f"IFEval {instruction}: relation must be 'less than' or 'at least', got {relation!r}")
    if instruction == "length_constraints:number_sentences":
        from rubricgate.scoring.checks import sentence_count

        count, threshold = sentence_count(response), int(kwargs["num_sentences"])
    else:
        count = sum(1 for token in _WORD.findall(response) if token.isupper())
        threshold = int(kwargs["capital_frequency"])
    passed = count < threshold if relation == "less than" else count >= threshold
    return passed, f"{instruction}: {count} ({relation} {threshold})"
