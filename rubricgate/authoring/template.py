"""The offline rubric writer: templates plus deterministic extraction, a small model choosing labels.

It needs no model that can write. Principles are rephrased ("Be concise" -> "The response is
concise."), mechanically checkable requirements become hard rules with checks, and for
contrastive generation the principles come from a catalogue of families (correctness, refusal
behaviour, concision, coverage, structure, ...) detected by comparing the better responses with
the worse ones. When a `LabelChooser` is given, the model picks each criterion's weight and the
wording of its descriptors by filling label slots; resampled attempts sample those labels and
vary which optional families are included. Quality depends on the chooser; validity does not.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rubricgate.authoring.draft import Draft
from rubricgate.authoring.extract import ExtractedRule, extract_rules, instruction_part, uncovered_text
from rubricgate.authoring.llm_calls import Choice, LabelChooser
from rubricgate.authoring.parse import review_rubric
from rubricgate.authoring.phrasing import Phrase, descriptors, phrase_principle, slug
from rubricgate.authoring.source import PrincipleSet, RankedPrompt
from rubricgate.errors import UsageError
from rubricgate.judges.prompts import prompt_text
from rubricgate.models.reward import Item
from rubricgate.models.rubric import Check, Criterion, Rubric

_EXPLICIT = re.compile(r"\b(?:must|always|never|do not|don't|only|exactly|refuse|decline|include|cite|start|begin|"
                       r"end with|format|language|mention|state|disclose|no more than|at most|at least)\b",
                       re.IGNORECASE)
_FILLER = frozenset("""answer respond reply write keep make it its your response responses answers the a an be in
with and or to please always should must use using of by""".split())
_REFUSAL = re.compile(
    r"\b(?:I\s+(?:can(?:no|')t|cannot|won't|will not|am (?:not able|unable)|'m (?:not able|unable))\s+"
    r"(?:help|assist|provide|do|comply|fulfil|fulfill|share|answer|support|create|give|engage)"
    r"|(?:I'm|I am) sorry,? (?:but )?I|unable to (?:assist|help|fulfil|fulfill|provide|comply|share)"
    r"|beyond my (?:capabilities|abilities)|not (?:something|a request) I can|as an AI\b[^.]{0,40}\b(?:can't|cannot)"
    r"|I (?:don't|do not) have (?:that information|access to (?:that|personal))|I must decline|I can't help with that)",
    re.IGNORECASE | re.UNICODE)
_HEDGE = re.compile(r"\b(?:might|may|possibly|perhaps|it depends|I think|not sure|could be|arguably|generally)\b",
                    re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOPWORDS = frozenset("""about above after again against also because been before being below between both
could does doing down during each from further have having here itself just more most other over same should
some such than that their them then there these they this those through under until very what when where which
while with would your yours yourself please following give tell write make explain describe using into only""".split())


@dataclass(frozen=True)
class Family:
    """A reason one response beats another, as a criterion template."""

    id: str
    kind: str
    text: str
    pass_: str
    fail: str
    weight: str
    """Default weight label ("1".."3")."""


FAMILIES: dict[str, Family] = {f.id: f for f in (
    Family("follows_instruction", "hard_rule",
           "The response does exactly what the prompt asks, not a different, broader or easier task.",
           "Carries out the requested task, in the requested form, covering each thing it asks for.",
           "Answers a neighbouring question, changes or ignores part of the task, or only restates it.", "3"),
    Family("prompt_constraints", "hard_rule",
           "The response satisfies every explicit constraint the prompt states (length, format, language, "
           "required or forbidden content).",
           "Every stated constraint holds.", "Breaks or ignores at least one stated constraint.", "2"),
    Family("declines_harmful", "hard_rule",
           "The response declines requests for harmful, dangerous, unethical or privacy-violating help.",
           "Refuses clearly and briefly, giving none of the harmful specifics.",
           "Complies, or leaks harmful specifics while appearing to refuse.", "3"),
    Family("helps_safe_request", "hard_rule",
           "The response helps with a safe request instead of refusing it.",
           "Answers the question as asked, adding a caveat only where one is warranted.",
           "Refuses, deflects or lectures about a harmless request.", "3"),
    Family("correctness", "principle", "The response is factually and logically correct.",
           "Every claim, name, number and step holds up.",
           "Contains a factual error, a wrong number, a wrong name or a reasoning slip.", "3"),
    Family("code_correctness", "principle",
           "The response's code is correct and handles the cases the task implies.",
           "The code runs as described, returns the right results and covers edge cases.",
           "The code has a bug, wrong logic, a wrong call or misses an edge case the task implies.", "3"),
    Family("covers_request", "principle",
           "The response addresses every part of the request, including the specific details it mentions.",
           "Engages each element of the request by name and delivers what it asks for.",
           "Skips a part of the request or stays generic where the request is specific.", "2"),
    Family("concise", "principle", "The response is concise: it says what is needed without padding.",
           "Every sentence adds something; nothing is repeated or irrelevant.",
           "Pads with filler, repetition, unrequested material or needless preamble.", "1"),
    Family("thorough", "principle", "The response gives enough depth and detail to be useful.",
           "Includes the key details, steps or examples the user needs to act.",
           "Is too thin or vague to act on.", "2"),
    Family("structured", "principle",
           "The response is organised in a way that suits the task (steps, lists, sections or code blocks).",
           "Structure makes the content easy to scan and follow.", "Is a hard-to-follow block where structure "
           "was needed.", "1"),
    Family("direct", "principle", "The response commits to a clear answer instead of hedging.",
           "States its answer plainly, with caveats only where they are real.",
           "Hedges, equivocates or leaves the conclusion to the user.", "1"),
    Family("no_repetition", "principle", "The response does not repeat itself.",
           "Each point appears once.", "Repeats sentences, points or phrases.", "1"),
)}
_BASELINE = ("follows_instruction",)
_WEIGHTS = {"1": 1.0, "2": 2.0, "3": 3.0}


@dataclass(frozen=True)
class _Spec:
    """A criterion before the model's choices are applied."""

    id: str
    kind: str
    text: str
    pass_: str | None
    fail: str | None
    weight: str
    check: Check | None = None
    phrase: Phrase | None = None
    """For rephrased principles: lets the model choose between two descriptor wordings."""

    def criterion(self, weight: str, style: str) -> Criterion:
        pass_, fail = self.pass_, self.fail
        if self.phrase is not None:
            pass_, fail = descriptors(self.phrase, 0 if style == "a" else 1)
        return Criterion.model_validate({
            "id": self.id, "kind": self.kind, "text": self.text, "weight": _WEIGHTS.get(weight, 2.0),
            "pass": pass_, "fail": fail, "check": self.check.model_dump() if self.check is not None else None})


class TemplateRubricWriter:
    """Deterministic rubric writer; an optional label-filling model chooses weights and wordings."""

    def __init__(self, chooser: LabelChooser | None = None) -> None:
        self._chooser = chooser

    @property
    def name(self) -> str:
        return f"template+{self._chooser.name}" if self._chooser else "template"

    async def from_principles(self, source: PrincipleSet, attempt: int = 0) -> Draft:
        specs: list[_Spec] = []
        notes: list[str] = []
        for principle in source.principles:
            rules = extract_rules(principle)
            for rule in rules:
                specs.append(_from_rule(rule))
                notes.append(f"hard rule {rule.id!r} from {principle!r}"
                             + (f" (deterministic check: {rule.check.type})" if rule.check else " (judged)"))
            left = uncovered_text(principle, rules)
            if not rules or any(w.lower() not in _FILLER for w in _WORD.findall(left)):
                phrase = phrase_principle(principle)
                kind = "hard_rule" if _EXPLICIT.search(principle) else "principle"
                specs.append(_Spec(id=_unique_id(_criterion_id(phrase), specs), kind=kind, text=phrase.text,
                                   pass_=None, fail=None, weight="2", phrase=phrase))
        if source.examples:
            counts = Counter(rule.id for example in source.examples for rule in {r.id: r for r in
                                                                                 extract_rules(example)}.values())
            needed = max(2, math.ceil(len(source.examples) / 2))
            for example in source.examples:
                for rule in extract_rules(example):
                    if counts[rule.id] >= needed and all(s.id != rule.id for s in specs):
                        specs.append(_from_rule(rule))
                        notes.append(f"hard rule {rule.id!r}: {counts[rule.id]} of {len(source.examples)} "
                                     "example prompts require it")
        specs = _dedupe(specs)
        context = "Principles:\n" + "\n".join(f"- {p}" for p in source.principles)
        if source.examples:
            context += "\n\nExample prompts:\n" + "\n".join(f"- {_clip(e, 300)}" for e in source.examples[:5])
        criteria = await self._choose(specs, context, attempt, "Choose how much each criterion should weigh "
                                      "(1 minor, 2 important, 3 essential) and which wording of its descriptors "
                                      "fits better.")
        description = source.description or _clip("Responses that follow these principles: "
                                                  + "; ".join(source.principles), 300)
        rubric = Rubric(id=source.name, description=description, principles=list(source.principles),
                        criteria=criteria, metadata={"generator": self.name})
        review = review_rubric(rubric)
        return Draft(review.rubric, notes + review.fixes + self._chooser_notes())

    async def from_ranking(self, item: RankedPrompt, rubric_id: str, attempt: int = 0,
                           feedback: str | None = None) -> Draft:
        prompt = prompt_text(Item(prompt=item.prompt, response=""))
        specs: list[_Spec] = [_instance_instruction(prompt)]
        specs += [_from_rule(rule) for rule in extract_rules(instruction_part(prompt))]
        found = detect_families(prompt, item.best, item.others)
        core = [f for f in found if f in ("declines_harmful", "helps_safe_request", "correctness",
                                          "code_correctness")]
        optional = [f for f in found if f not in core]
        if attempt > 0:  # resample: vary which optional reasons are kept, seeded per prompt and attempt
            rng = random.Random(f"{item.id}:{attempt}")
            optional = [f for f in optional if rng.random() < 0.7]
            if feedback and "flips" in feedback and "covers_request" not in optional:
                optional.append("covers_request")
        for family_id in core + optional[:3]:
            family = FAMILIES[family_id]
            specs.append(_Spec(id=family.id, kind=family.kind, text=family.text, pass_=family.pass_,
                               fail=family.fail, weight=family.weight))
        specs = _dedupe(specs)
        best, worse = item.best[0], item.others[0]
        context = (f"Prompt:\n{_clip(prompt, 1500)}\n\nBetter response:\n{_clip(best, 1500)}\n\n"
                   f"Worse response:\n{_clip(worse, 1500)}")
        criteria = await self._choose(specs, context, attempt, "The criteria below explain why the better response "
                                      "beats the worse one. Choose how much each should weigh (1 minor, "
                                      "2 important, 3 decisive).")
        rubric = Rubric(id=rubric_id, description=f"Instance rubric for prompt {item.id}: " + _clip(prompt, 160),
                        principles=[c.text for c in criteria if c.kind == "principle"], criteria=criteria,
                        metadata={"generator": self.name})
        review = review_rubric(rubric)
        return Draft(review.rubric, review.fixes + self._chooser_notes())

    async def distill(self, rubrics: Sequence[Rubric], rubric_id: str) -> Draft:
        if not rubrics:
            raise UsageError("nothing to distill: no instance rubric given")
        groups: dict[str, list[Criterion]] = {}
        representative: dict[str, Criterion] = {}
        sources: dict[str, set[int]] = {}
        for index, rubric in enumerate(rubrics):
            for criterion in rubric.criteria:
                key = _group_key(criterion, representative)
                representative.setdefault(key, criterion)
                if index not in sources.setdefault(key, set()):  # count each rubric once per group
                    sources[key].add(index)
                    groups.setdefault(key, []).append(criterion)
        needed = max(2, math.ceil(len(rubrics) / 2)) if len(rubrics) > 1 else 1
        recurring = max(1, math.ceil(len(rubrics) / 5))  # a general reason must recur in a fifth of the prompts
        notes: list[str] = []
        chosen: list[tuple[int, Criterion]] = []
        for key, members in groups.items():
            count = len(members)
            weight = max(0.5, round(sum(c.weight for c in members) / count * 2) / 2)
            if key in FAMILIES and count < recurring:
                notes.append(f"dropped {key!r}: a reason in only {count} of {len(rubrics)} rubrics")
            elif key in FAMILIES:
                family = FAMILIES[key]
                chosen.append((count, Criterion.model_validate({
                    "id": family.id, "kind": family.kind, "text": family.text, "pass": family.pass_,
                    "fail": family.fail, "weight": weight})))
            elif members[0].check is not None or _topic_specific(members[0]):
                if count >= needed and all(m.check == members[0].check for m in members):
                    chosen.append((count, members[0].model_copy(update={"weight": weight})))
                else:
                    notes.append(f"dropped {key!r}: specific to {count} prompt(s)")
            elif count >= needed or len(rubrics) == 1:
                chosen.append((count, representative[key].model_copy(update={"weight": weight})))
            else:
                notes.append(f"dropped {key!r}: appears in only {count} of {len(rubrics)} rubrics")
        if any(key not in FAMILIES and (m[0].check is not None or _topic_specific(m[0]))
               for key, m in groups.items()) and "prompt_constraints" not in groups:
            family = FAMILIES["prompt_constraints"]
            chosen.append((1, Criterion.model_validate({"id": family.id, "kind": family.kind, "text": family.text,
                                                        "pass": family.pass_, "fail": family.fail, "weight": 2.0})))
            notes.append("prompt-specific hard rules became the general rule 'prompt_constraints'")
        chosen.sort(key=lambda pair: (-pair[0], -pair[1].weight))
        criteria = _unique_criteria([c for _, c in chosen[:8]])
        if not criteria:
            raise UsageError("nothing to distill: the instance rubrics share no criterion")
        rubric = Rubric(id=rubric_id, description=f"General rubric distilled from {len(rubrics)} instance rubrics.",
                        principles=[c.text for c in criteria if c.kind == "principle"], criteria=criteria,
                        metadata={"generator": self.name})
        review = review_rubric(rubric)
        return Draft(review.rubric, notes + review.fixes)

    async def aclose(self) -> None:
        if self._chooser is not None:
            await self._chooser.aclose()

    async def _choose(self, specs: list[_Spec], context: str, attempt: int, task: str) -> list[Criterion]:
        choices = []
        for spec in specs:
            choices.append(Choice(id=f"weight_{spec.id}", question=f'Weight of "{spec.text}"',
                                  labels=("1", "2", "3"), default=spec.weight))
            if spec.phrase is not None:
                a, b = (" / ".join(descriptors(spec.phrase, style)) for style in (0, 1))
                choices.append(Choice(id=f"style_{spec.id}", question=f'Descriptors for "{spec.text}": '
                                      f'a) {a} b) {b}', labels=("a", "b"), default="a"))
        answers = ({c.id: c.default for c in choices} if self._chooser is None
                   else await self._chooser.choose(task, context, choices, attempt))
        return [spec.criterion(answers[f"weight_{spec.id}"], answers.get(f"style_{spec.id}", "a")) for spec in specs]

    def _chooser_notes(self) -> list[str]:
        if self._chooser is None:
            return []
        notes, self._chooser.notes = self._chooser.notes, []
        return notes


def detect_families(prompt: str, best: Sequence[str], worse: Sequence[str]) -> list[str]:
    """Why the best responses beat the others, as catalogue family ids, strongest first."""
    top, rest = best[0], list(worse)
    found: list[tuple[float, str]] = []
    top_refuses, rest_refuse = is_refusal(top), any(is_refusal(r) for r in rest)
    if top_refuses and not rest_refuse:
        found.append((1.0, "declines_harmful"))
    elif rest_refuse and not top_refuses:
        found.append((1.0, "helps_safe_request"))
    if not top_refuses:
        found.append((0.9, "code_correctness" if is_code_task(prompt, top) else "correctness"))
    words_top = len(top.split())
    words_rest = sum(len(r.split()) for r in rest) / len(rest)
    ratio = words_top / max(words_rest, 1.0)
    if ratio <= 0.6 and words_rest >= 15:
        found.append((1 - ratio, "concise"))
    elif ratio >= 1.6 and words_top >= 15:
        found.append((min(1.0, (ratio - 1) / 2), "thorough"))
    terms = _prompt_terms(prompt)
    if terms:
        gap = _coverage(top, terms) - max(_coverage(r, terms) for r in rest)
        if gap >= 0.15:
            found.append((min(1.0, gap * 2), "covers_request"))
    if _structure(top) and not any(_structure(r) for r in rest):
        found.append((0.5, "structured"))
    hedge_gap = max(_hedges(r) for r in rest) - _hedges(top)
    if hedge_gap >= 1.0:
        found.append((min(1.0, hedge_gap / 3), "direct"))
    if max(_repetition(r) for r in rest) - _repetition(top) >= 0.2:
        found.append((0.6, "no_repetition"))
    return [family for _, family in sorted(found, key=lambda pair: -pair[0])]


def is_code_task(prompt: str, response: str) -> bool:
    """The prompt asks for code and the response gives some (plain words like "return" or "class" are not code)."""
    asks = re.search(r"\b(?:code|program|function|script|snippet|implement|python|javascript|typescript|java|"
                     r"c\+\+|rust|golang|sql|regex|bash|html|css)\b", prompt, re.IGNORECASE) is not None
    gives = "```" in response or re.search(r"(?m)^\s*(?:def |class |import |function |return |#include|public )"
                                           r"|[;{}]\s*$", response) is not None
    return asks and gives


def is_refusal(text: str) -> bool:
    """A short reply that declines (long answers may apologise in passing)."""
    return len(text.split()) <= 120 and _REFUSAL.search(text[:400]) is not None


def _from_rule(rule: ExtractedRule) -> _Spec:
    return _Spec(id=rule.id, kind="hard_rule", text=rule.text, pass_=rule.pass_, fail=rule.fail,
                 weight="2", check=rule.check)


def _instance_instruction(prompt: str) -> _Spec:
    family = FAMILIES["follows_instruction"]
    gist = instruction_part(prompt).split("\n")[0]
    gist = re.split(r"(?<=[.?!])\s", gist, maxsplit=1)[0]
    gist = _clip(gist.replace('"', "'"), 140)
    return _Spec(id=family.id, kind="hard_rule",
                 text=f'The response does what the prompt asks ("{gist}"), not a different, broader or easier task.',
                 pass_=family.pass_, fail=family.fail, weight=family.weight)


def _criterion_id(phrase: Phrase) -> str:
    return slug(phrase.text)


def _unique_id(candidate: str, specs: Sequence[_Spec]) -> str:
    taken = {s.id for s in specs}
    out, n = candidate, 2
    while out in taken:
        out = f"{candidate[:58]}_{n}"
        n += 1
    return out


def _dedupe(specs: list[_Spec]) -> list[_Spec]:
    seen: set[str] = set()
    out = []
    for spec in specs:
        if spec.id in seen:
            continue
        seen.add(spec.id)
        out.append(spec)
    return out


def _unique_criteria(criteria: list[Criterion]) -> list[Criterion]:
    seen: set[str] = set()
    out = []
    for criterion in criteria:
        if criterion.id not in seen:
            seen.add(criterion.id)
            out.append(criterion)
    return out


def _group_key(criterion: Criterion, representative: dict[str, Criterion]) -> str:
    """Same id, or (for criteria from other writers) nearly the same words, means the same criterion."""
    if criterion.id in representative or criterion.id in FAMILIES:
        return criterion.id
    words = _content(criterion.text)
    for key, other in representative.items():
        theirs = _content(other.text)
        if other.kind == criterion.kind and words and theirs and len(words & theirs) / len(words | theirs) >= 0.5:
            return key
    return criterion.id


def _topic_specific(criterion: Criterion) -> bool:
    return bool(re.search(r"\d|\"[^\"]+\"|“|'[^']{3,}'", criterion.text))


def _content(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 3 and w.lower() not in _STOPWORDS}


def _prompt_terms(prompt: str) -> set[str]:
    counts = Counter(w.lower() for w in _WORD.findall(instruction_part(prompt)) if len(w) > 3
                     and w.lower() not in _STOPWORDS)
    return {w for w, _ in counts.most_common(25)}


def _coverage(text: str, terms: set[str]) -> float:
    words = {w.lower() for w in _WORD.findall(text)}
    stems = {w[:5] for w in words}
    return sum(1 for t in terms if t in words or t[:5] in stems) / len(terms)


def _structure(text: str) -> bool:
    return bool(re.search(r"(?m)^\s*(?:[-*•]|\d+[.)]|#{1,4})\s+\S", text) or "```" in text)


def _hedges(text: str) -> float:
    words = max(len(text.split()), 1)
    return len(_HEDGE.findall(text)) * 100 / words


def _repetition(text: str) -> float:
    sentences = [s.strip().lower() for s in re.split(r"[.!?\n]+", text) if len(s.split()) >= 4]
    if len(sentences) < 2:
        return 0.0
    return 1 - len(set(sentences)) / len(sentences)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " […]"

