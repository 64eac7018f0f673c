"""Rubrics: criteria with contrastive descriptors, optional deterministic checks, a scale.

A rubric's version is the hash of its content, so editing any field that can change a
judgment yields a new version and never serves a stale cache entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from typing import Annotated, Any, Literal, Protocol

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_FILE = ConfigDict(frozen=True, extra="forbid")


class _Check(BaseModel):
    model_config = _FILE


class MaxWords(_Check):
    """At most `value` whitespace-separated words."""

    type: Literal["max_words"]
    value: int = Field(ge=1)


class MinWords(_Check):
    """At least `value` whitespace-separated words."""

    type: Literal["min_words"]
    value: int = Field(ge=0)


class MaxChars(_Check):
    """At most `value` characters."""

    type: Literal["max_chars"]
    value: int = Field(ge=1)


class MaxSentences(_Check):
    """At most `value` sentences (split on . ! ? followed by space or end)."""

    type: Literal["max_sentences"]
    value: int = Field(ge=1)


class PatternMatch(Protocol):
    """What a search found (the part of `re.Match` checks use)."""

    def group(self, index: int = 0, /) -> str: ...


class CompiledPattern(Protocol):
    """A pattern compiled by the RE2 engine: `search` runs in time linear in the text."""

    def search(self, text: str, /) -> PatternMatch | None: ...


_END = object()
_RE2_MAX_MEM = 2 << 20
"""Bytes one compiled pattern may use (RE2's default is 8 MiB); a bigger one fails validation."""


@lru_cache(maxsize=128)
def compile_pattern(pattern: str, ignore_case: bool = False) -> CompiledPattern:
    """`pattern` compiled by RE2, which never backtracks: a search is linear in the text, so no
    pattern can stall a server (`^(a|a)+$` on Python's `re` takes exponential time).

    RE2 has no backreferences or lookarounds; such a pattern raises ValueError. Python's `\\Z`
    (end of text) is accepted and means RE2's `\\z`.
    """
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.max_mem = _RE2_MAX_MEM
    options.log_errors = False  # the ValueError says it; RE2 would also print to stderr
    try:
        compiled: CompiledPattern = re2.compile(_python_to_re2(pattern), options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"pattern {pattern[:80]!r} is not supported by the RE2 regex engine ({reason}); "
                         "backreferences and lookarounds are not available (they are what lets a regex "
                         "take exponential time): rewrite the pattern without them (a not_regex check does the work of a "
                         "negative lookahead)") from None
    return compiled


def _python_to_re2(pattern: str) -> str:
    """Python's `\\Z` becomes RE2's `\\z`; every other escape is kept (`\\\\Z` stays literal)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        pair = pattern[i:i + 2]
        if pair[:1] == "\\" and len(pair) == 2:
            out.append("\\z" if pair == "\\Z" else pair)
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


class _Pattern(_Check):
    value: str = Field(min_length=1)
    """A regular expression in RE2 syntax (Python's `re` syntax without backreferences and lookarounds)."""
    ignore_case: bool = False

    @field_validator("value")
    @classmethod
    def _compiles_on_re2(cls, value: str) -> str:
        compile_pattern(value)  # fail when the rubric is loaded, not when a response is checked
        return value


class Regex(_Pattern):
    """The response matches the pattern somewhere (RE2 search: linear time, no backtracking)."""

    type: Literal["regex"]


class NotRegex(_Pattern):
    """The response does not match the pattern anywhere."""

    type: Literal["not_regex"]


class ContainsAll(_Check):
    """Every listed phrase occurs in the response."""

    type: Literal["contains_all"]
    value: list[str] = Field(min_length=1)
    ignore_case: bool = True


class ContainsNone(_Check):
    """No listed phrase occurs in the response."""

    type: Literal["contains_none"]
    value: list[str] = Field(min_length=1)
    ignore_case: bool = True


class JsonValid(_Check):
    """The response (or its single fenced code block) parses as JSON."""

    type: Literal["json"]


class CodeBlock(_Check):
    """The response contains a fenced code block, in `value` language when given."""

    type: Literal["code_block"]
    value: str | None = None


class NoPlaceholders(_Check):
    """No template placeholders such as [NAME], {{x}}, TODO or lorem ipsum remain."""

    type: Literal["no_placeholders"]


class MinSentences(_Check):
    """At least `value` sentences."""

    type: Literal["min_sentences"]
    value: int = Field(ge=1)


class Paragraphs(_Check):
    """Paragraph count (blocks separated by blank lines, or by `separator`) within bounds."""

    type: Literal["paragraphs"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)
    separator: str | None = None
    """E.g. `***` (IFEval's divider); default: one or more blank lines."""


class StartsWith(_Check):
    """The response starts with `value` (after leading whitespace)."""

    type: Literal["starts_with"]
    value: str = Field(min_length=1)
    ignore_case: bool = False


class EndsWith(_Check):
    """The response ends with `value` (before trailing whitespace), e.g. a closing phrase."""

    type: Literal["ends_with"]
    value: str = Field(min_length=1)
    ignore_case: bool = False


class Case(_Check):
    """Every letter is lower case, or upper case."""

    type: Literal["case"]
    value: Literal["lower", "upper"]


class Language(_Check):
    """The response is written in `value` (ISO 639-1 code, detected offline by langdetect)."""

    type: Literal["language"]
    value: str = Field(pattern=r"^[a-z]{2}(-[a-z]{2})?$")


_SCHEMA_REFS = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})


class JsonSchema(_Check):
    """The response (or its single fenced code block) is JSON valid against `value`, a
    self-contained schema: no `$ref` and no `patternProperties` (both can make validation slow)."""

    type: Literal["json_schema"]
    value: dict[str, Any]

    @field_validator("value")
    @classmethod
    def _patterns_compile_on_re2(cls, value: dict[str, Any]) -> dict[str, Any]:
        stack: list[object] = [value]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "patternProperties" in node:
                    raise ValueError("`patternProperties` is not supported (jsonschema matches it with Python's "
                                     "backtracking regex engine); list the properties, or use propertyNames")
                if refs := _SCHEMA_REFS & node.keys():
                    raise ValueError(f"`{sorted(refs)[0]}` is not supported: references let a small schema "
                                     "make validation take exponential time (16 nested anyOf of two $refs: 20 s); "
                                     "write the schema out")
                if isinstance(node.get("pattern"), str):
                    compile_pattern(node["pattern"])  # checks match `pattern` on RE2
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        return value


class RequiredSections(_Check):
    """Each listed section heading appears (as a Markdown heading or a line starting with it)."""

    type: Literal["required_sections"]
    value: list[str] = Field(min_length=1)


class IfEval(_Check):
    """One IFEval or IFBench instruction (e.g. `punctuation:no_comma` with its kwargs), checked strictly."""

    type: Literal["ifeval"]
    benchmark: Literal["ifeval", "ifbench"] = "ifeval"
    instruction: str = Field(pattern=r"^[a-z_]+:[a-z_0-9]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    """The original prompt, for instructions that need it (`combination:repeat_prompt`)."""


Check = Annotated[
    MaxWords | MinWords | MaxChars | MaxSentences | MinSentences | Paragraphs | Regex | NotRegex
    | ContainsAll | ContainsNone | StartsWith | EndsWith | Case | Language | JsonValid | JsonSchema
    | RequiredSections | CodeBlock | NoPlaceholders | IfEval,
    Field(discriminator="type"),
]
"""A deterministic test of a hard rule that runs without any judge."""

CHECK_TYPES: tuple[str, ...] = (
    "max_words", "min_words", "max_chars", "max_sentences", "min_sentences", "paragraphs", "regex",
    "not_regex", "contains_all", "contains_none", "starts_with", "ends_with", "case", "language", "json",
    "json_schema", "required_sections", "code_block", "no_placeholders", "ifeval",
)


class Criterion(BaseModel):
    """One thing a good response does, judged on its own."""

    model_config = _FILE

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    """Stable key in scores, logs and cache keys; new wording deserves a new id."""
    kind: Literal["hard_rule", "principle"]
    """`hard_rule`: explicit and objective, judged pass/fail. `principle`: a quality on the scale."""
    text: str = Field(min_length=3)
    """The criterion as one sentence, phrased "The response ..."."""
    weight: float = Field(default=1.0, gt=0, le=100)
    """Relative weight in the rubric's reward."""
    pass_: str | None = Field(default=None, alias="pass")
    """What satisfying the criterion looks like (contrastive descriptor)."""
    fail: str | None = None
    """What failing the criterion looks like (contrastive descriptor)."""
    check: Check | None = None
    """A deterministic test; when present the judge is not asked about this criterion."""

    @model_validator(mode="after")
    def _check_only_on_hard_rules(self) -> Criterion:
        if self.check is not None and self.kind != "hard_rule":
            raise ValueError("only a hard_rule may carry a deterministic `check`")
        return self

    @property
    def judged(self) -> bool:
        """True when the judge, not a deterministic check, decides this criterion."""
        return self.check is None


class Scale(BaseModel):
    """How the judge grades `principle` criteria; hard rules are always pass/fail."""

    model_config = _FILE

    points: int = Field(default=5, ge=2, le=9)
    """Principles get an integer 1..points; single digits keep every label one token."""

    def normalise(self, score: float) -> float:
        """Map 1..points to 0..1."""
        return (score - 1) / (self.points - 1)


class LengthPenalty(BaseModel):
    """Subtract up to `weight` as the response runs past `target_words` (linear, capped at 2x)."""

    model_config = _FILE

    target_words: int = Field(ge=1)
    weight: float = Field(default=0.1, ge=0, le=1)


class ReferenceMetric(BaseModel):
    """Blend a reference-based metric into the reward when an item carries `reference`."""

    model_config = _FILE

    kind: Literal["chrf", "bleu"] = "chrf"
    weight: float = Field(default=0.2, ge=0, le=1)
    """reward = (1 - weight) * judged + weight * metric, metric in [0, 1]."""


class RewardSpec(BaseModel):
    """How the final reward is formed from judges, checks, references and transforms.

    Order: ensemble over judges -> hard-rule gate -> reference metric blend -> length penalty
    -> transform. Each step's value is reported in `RewardResult.components`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    judges: list[str] = Field(default_factory=list)
    """Judge specs to ensemble; empty means the run's judge."""
    ensemble: Literal["mean", "median", "min", "mean_minus_std"] = "mean"
    lambda_: float = Field(default=1.0, ge=0, alias="lambda")
    """λ of `mean_minus_std` (penalises judge disagreement)."""
    drop_unscorable: bool = False
    """Ensemble over the judges that answered instead of making the reward null when one fails."""
    gate: Literal["none", "hard_rules"] = "none"
    gate_cap: float = Field(default=0.0, ge=0, le=1)
    """With `gate: hard_rules`, a failed hard rule caps the reward here."""
    reference_metric: ReferenceMetric | None = None
    length_penalty: LengthPenalty | None = None
    transform: Literal["none", "log_sigmoid", "zscore"] = "none"
    """`log_sigmoid`: log σ(scale·(r − reference)), ≤ 0, sums act as AND; `zscore`: over the batch."""
    reference: float | Literal["reference_response"] = 0.5
    """log_sigmoid's reference: a fixed value, or the score of the item's reference answer."""
    scale: float = Field(default=10.0, gt=0)
    """log_sigmoid's sharpness: rewards live in [0, 1], so differences are scaled up."""


class Rubric(BaseModel):
    """A named set of criteria; `version` is derived from the content, never written by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=64)
    """Lower-case slug that names the rubric in files, CLI flags and results."""
    description: str = ""
    """What the rubric is for (a task family or one prompt)."""
    principles: list[str] = Field(default_factory=list)
    """The natural-language source the criteria came from, kept for provenance."""
    criteria: list[Criterion] = Field(min_length=1)
    scale: Scale = Field(default_factory=Scale)
    reward: RewardSpec | None = None
    """How the final reward is formed; None: the weighted mean of criteria, as it is."""
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """Free-form provenance (author, source, generator); not part of the version."""

    @model_validator(mode="after")
    def _unique_ids(self) -> Rubric:
        seen: set[str] = set()
        for criterion in self.criteria:
            if criterion.id in seen:
                raise ValueError(f"criterion id {criterion.id!r} appears twice; ids must be unique")
            seen.add(criterion.id)
        return self

    @cached_property
    def version(self) -> str:
        """First 12 hex digits of sha256 over everything but metadata (reward spec included)."""
        return self._digest(exclude={"metadata"} | ({"reward"} if self.reward is None else set()))

    @cached_property
    def judged_version(self) -> str:
        """Like `version`, without the reward spec: what the judge sees. Cache keys use it, so
        tuning how rewards are shaped reuses every stored judgment."""
        return self._digest(exclude={"metadata", "reward"})

    def _digest(self, exclude: set[str]) -> str:
        content = self.model_dump(mode="json", by_alias=True, exclude=exclude)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def ref(self) -> str:
        """`id@version`, the name results carry."""
        return f"{self.id}@{self.version}"

    @property
    def judged_criteria(self) -> list[Criterion]:
        """Criteria the judge must decide (those without a deterministic check)."""
        return [c for c in self.criteria if c.judged]


@dataclass(frozen=True)
class LimitExceeded:
    """Which rubric limit a document passes, by how much."""

    limit: Literal["max_criteria", "max_checks", "max_rubric_chars"]
    """The `RubricLimits` field (and the `Settings` field: `RUBRICGATE_<LIMIT>`)."""
    value: int
    """The limit."""
    found: str
    """What the document holds, e.g. "10000 criteria"."""


class RubricLimits(BaseModel):
    """How large a rubric sent with a request may be. Each bound caps the work one request can
    cause: criteria are the judge's prompt and verdict, checks run on the server's CPU for every
    item, and text is what every judge call carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_criteria: int = Field(default=64, ge=1)
    """Criteria per rubric; the shipped rubrics have 4 to 8 and IFEval-style rubrics rarely pass 20."""
    max_checks: int = Field(default=32, ge=0)
    """Criteria with a deterministic `check` (each runs on every item, on the server's CPU)."""
    max_rubric_chars: int = Field(default=64 * 1024, ge=1024)
    """Characters of text in the whole rubric (every string, keys included): about 16k tokens
    of judge prompt; the shipped rubrics use 2 to 4 KiB."""

    def exceeded(self, data: object) -> LimitExceeded | None:
        """The first limit that raw rubric data (parsed JSON or YAML, before validation) passes,
        else None. The walk stops as soon as a limit is passed, so it costs O(limits), whatever
        the size of `data`."""
        criteria = data.get("criteria") if isinstance(data, dict) else None
        if isinstance(criteria, list):
            if len(criteria) > self.max_criteria:
                return LimitExceeded("max_criteria", self.max_criteria, f"{len(criteria)} criteria")
            checks = sum(1 for c in criteria if isinstance(c, dict) and c.get("check") is not None)
            if checks > self.max_checks:
                return LimitExceeded("max_checks", self.max_checks, f"{checks} criteria with a check")
        chars = 0
        stack: list[Iterator[object]] = [iter((data,))]
        while stack:  # iterators on a list, not recursion: nesting cannot exhaust the Python stack
            node = next(stack[-1], _END)
            if node is _END:
                stack.pop()
                continue
            chars += max(len(node), 1) if isinstance(node, str) else 1  # every node counts: the walk is bounded
            if chars > self.max_rubric_chars:
                return LimitExceeded("max_rubric_chars", self.max_rubric_chars,
                                     f"more than {self.max_rubric_chars} characters of text")
            if isinstance(node, dict):
                stack.append(chain.from_iterable(node.items()))
            elif isinstance(node, (list, tuple)):
                stack.append(iter(node))
        return None
