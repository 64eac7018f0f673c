"""IFEval and IFBench instructions as deterministic checks, through the maintained
`if-verifiable` checkers.

Two IFEval checkers need NLTK data files that are not available offline (sentence splitting,
word tokenising); those two are implemented here with the same relations and thresholds.
`if_verifiable.ifbench` tries to download NLTK data when imported; we import it with downloads
switched off, which leaves 54 of its 58 checkers working (the other four need NLTK corpora or
taggers and say so).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal

from rubricgate.errors import UsageError
from rubricgate.scoring.counts import sentence_count

_OWN = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
_WORD = re.compile(r"\w+|[^\w\s]")


def check_ifeval(instruction: str, kwargs: dict[str, Any], response: str, prompt: str | None,
                 benchmark: Literal["ifeval", "ifbench"] = "ifeval") -> tuple[bool, str]:
    """(passed, detail) for one IFEval/IFBench instruction in strict mode (the response as it is)."""
    arguments = {k: v for k, v in kwargs.items() if v is not None}
    if not response.strip():
        return False, "empty response"
    if benchmark == "ifeval" and instruction in _OWN:
        return _own_check(instruction, arguments, response)
    if benchmark == "ifbench" and instruction in NEEDS_NLTK_DATA:
        raise UsageError(f"IFBench instruction {instruction!r} needs NLTK data that is not available offline")
    registry = _registry(benchmark)
    if instruction not in registry:
        raise UsageError(f"unknown {benchmark} instruction {instruction!r}; known: {', '.join(sorted(registry))}")
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
    except LookupError as exc:  # an NLTK resource this checker needs is missing
        raise UsageError(f"{benchmark} instruction {instruction!r} needs NLTK data that is not available offline") from exc
    return passed, f"{instruction}: {'followed' if passed else 'not followed'}"


NEEDS_NLTK_DATA = frozenset({"words:words_position", "ratio:stop_words", "words:start_verb", "format:title_case"})
"""IFBench checkers that need NLTK corpora or taggers, which cannot be fetched offline."""


@cache
def _registry(benchmark: Literal["ifeval", "ifbench"]) -> dict[str, Any]:
    try:
        import nltk
    except ImportError as exc:
        raise UsageError("check 'ifeval' needs: pip install 'rubricgate[checks]'") from exc
    download = nltk.download
    nltk.download = _no_download  # if_verifiable.ifbench fetches NLTK data at import: never at run time
    try:
        if benchmark == "ifeval":
            from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
        else:
            from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT
    except ImportError as exc:
        raise UsageError("check 'ifeval' needs: pip install 'rubricgate[checks]'") from exc
    finally:
        nltk.download = download
    return dict(INSTRUCTION_DICT)


def _no_download(*_: Any, **__: Any) -> bool:
    return False


def _own_check(instruction: str, kwargs: dict[str, Any], response: str) -> tuple[bool, str]:
    relation = kwargs.get("relation", "at least")
    if relation not in ("less than", "at least"):
        raise UsageError(f"IFEval {instruction}: relation must be 'less than' or 'at least', got {relation!r}")
    if instruction == "length_constraints:number_sentences":
        count, threshold = sentence_count(response), int(kwargs["num_sentences"])
    else:
        count = sum(1 for token in _WORD.findall(response) if token.isupper())
        threshold = int(kwargs["capital_frequency"])
    passed = count < threshold if relation == "less than" else count >= threshold
    return passed, f"{instruction}: {count} ({relation} {threshold})"
