"""Natural-language principles -> criteria phrased "The response ...", with contrastive descriptors.

Pure string rules, no model: an imperative principle ("Refuse clearly unsafe requests, but help
with safe ones") becomes a third-person criterion ("The response refuses clearly unsafe requests,
but helps with safe ones"); anything the rules do not recognise is quoted rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERBS = frozenset("""
accept acknowledge act add address admit adapt adjust advise agree aim allow answer apologize apologise
apply argue ask assess assume attribute avoid back balance base be begin break bring build calculate call
cite check choose clarify close cover commit compare comply conclude confirm connect consider contain
continue convey correct count create decline defer define deliver demonstrate describe detail develop
disclose discuss distinguish do double-check draw echo emphasize emphasise encourage end engage ensure
estimate evaluate explain express favor favour flag focus follow format frame give go ground guide handle
have help highlight honor honour identify illustrate include indicate inform invent keep label lead leave
lecture limit link list look maintain make match mention moralize moralise name note offer omit organize
organise outline pad place point praise prefer present preserve prioritize prioritise produce protect
provide push put qualify question quote raise read recommend redirect refer refrain refuse reject relate
remain remind repeat rephrase reply report request resist respect respond restate return reveal review
say seek separate serve share show simplify speak specify spell stand start state stay steer stick stop
structure suggest summarize summarise support take teach tell test thank treat try use validate verify
warn weigh write yield
""".split())
_NOT_VERB_STARTS = frozenset("a an the this that these those it its each every all no any some good bad".split())
_IRREGULAR = {"be": "is", "have": "has", "do": "does", "go": "goes"}
_SUBJECT = re.compile(
    r"^(?:you|the (?:assistant|model|ai|answer|reply|output|response)|(?:a |each |every )?(?:response|answer|reply|output)s?)"
    r"\s+(?:should|must|shall|will|need to|needs to|has to|have to|ought to)\s+(?P<neg>not\s+|never\s+)?(?P<rest>.+)$",
    re.IGNORECASE)
_DECLARATIVE = re.compile(r"^(?:the|a|each|every) (?:response|answer|reply|output)\s+(?P<rest>.+)$", re.IGNORECASE)
_SLUG_DROP = frozenset("""the response a an is are it its and or but of to that with in this ones one be does
meets principle""".split())
_COORDINATOR = re.compile(r"(,\s*(?:but|and|or|then|yet)\s+|;\s*|\s+(?:and|but|or|then)\s+)")


@dataclass(frozen=True)
class Phrase:
    """A principle rewritten as a criterion sentence, plus the pieces descriptors are built from."""

    text: str
    """The criterion: "The response ..." ending with a full stop."""
    predicate: str
    """What follows "The response" (third person), e.g. "is concise"."""
    base: str | None
    """The base-form clause ("be concise"), when the principle was an instruction; None otherwise."""
    negated: bool = False
    """True when the principle forbids something ("Do not lecture"): `base` is the forbidden act."""


def phrase_principle(principle: str) -> Phrase:
    """Rewrite one principle as a "The response ..." criterion; unknown shapes are quoted verbatim."""
    clean = " ".join(principle.split()).strip().rstrip(".!;:")
    if not clean:
        raise ValueError("empty principle")
    declared = _DECLARATIVE.match(clean)
    if declared and not _SUBJECT.match(clean):
        rest = declared.group("rest")
        rest = re.sub(r"^(?:are)\b", "is", rest)
        return _phrase(rest, None)
    subject = _SUBJECT.match(clean)
    if subject:
        clause = _second_person(subject.group("rest"))
        if subject.group("neg"):
            return _negative(clause, never=subject.group("neg").strip().lower() == "never")
        return _positive(clause) or _phrase(f'meets this principle: "{clean}"', None)
    lowered = clean[0].lower() + clean[1:]
    negative = re.match(r"^(?:do not|don't|never|please do not|please don't)\s+(.+)$", lowered, re.IGNORECASE)
    if negative:
        return _negative(_second_person(negative.group(1)), never=lowered.lower().startswith("never"))
    always = re.match(r"^always\s+(.+)$", lowered, re.IGNORECASE)
    if always:
        inner = _positive(_second_person(always.group(1)))
        if inner:
            return _phrase("always " + inner.predicate, "always " + (inner.base or ""))
    lowered = re.sub(r"^please\s+", "", lowered, flags=re.IGNORECASE)
    positive = _positive(_second_person(lowered))
    if positive:
        return positive
    return _phrase(f'meets this principle: "{clean}"', None)


def descriptors(phrase: Phrase, style: int = 0) -> tuple[str, str]:
    """(pass, fail) descriptors for a phrased principle; `style` picks one of two wordings."""
    predicate = phrase.predicate
    if phrase.negated and phrase.base:
        done = _capital(conjugate(phrase.base))
        if style == 0:
            return f"{_capital(predicate)} anywhere in the response.", f"{done}, even once or in part."
        return f"Keeps clear of it throughout: {predicate}.", f"{done}; a single lapse counts."
    if phrase.base:
        if style == 0:
            return (f"{_capital(predicate)} throughout, with no lapses.",
                    f"Fails to {phrase.base}, or does so only in part.")
        return (f"Fully meets it: the response {predicate}, and nothing in it works against this.",
                f"Does not manage to {phrase.base}, or contradicts it somewhere.")
    if style == 0:
        return "Clearly and consistently satisfies this.", "Misses this, or satisfies it only in part."
    return (f"Fully meets it: the response {predicate}.",
            "Falls short of this somewhere, or ignores it.")


def conjugate(clause: str) -> str:
    """Put a base-form clause in the third person: "refuse X, but help Y" -> "refuses X, but helps Y"."""
    parts = _COORDINATOR.split(clause)
    out = []
    for index, part in enumerate(parts):
        if index % 2 == 1:  # a coordinator
            out.append(part)
            continue
        first, _, rest = part.partition(" ")
        if index == 0 or first.lower() in _VERBS:
            out.append(_third_person(first) + (" " + rest if rest else ""))
        else:
            out.append(part)
    return "".join(out)


def slug(text: str, max_words: int = 4, max_length: int = 40) -> str:
    """A criterion id from text: its first few meaningful words joined by `_`, starting with a letter."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    kept = [w for w in words if w not in _SLUG_DROP and not (w.endswith("ly") and len(w) > 4)] or words or ["criterion"]
    out = ""
    for word in kept[:max_words]:
        candidate = f"{out}_{word}" if out else word
        if len(candidate) > max_length:
            break
        out = candidate
    out = out or kept[0][:max_length]
    return out if out[0].isalpha() else f"c_{out}"[:max_length]


def _positive(clause: str) -> Phrase | None:
    first, _, rest = clause.partition(" ")
    word = first.lower()
    if word in _NOT_VERB_STARTS or not re.fullmatch(r"[a-z][a-z-]*", word):
        return None
    if word not in _VERBS and not rest:
        return None
    if word == "keep" and re.match(r"^(?:it|answers|responses|replies|things)\s+(\w+.*)$", rest):
        adjective = re.match(r"^(?:it|answers|responses|replies|things)\s+(\w+.*)$", rest)
        assert adjective is not None
        return _phrase(f"is {adjective.group(1)}", f"be {adjective.group(1)}")
    if word not in _VERBS:
        return None
    return _phrase(conjugate(clause), clause)


def _negative(clause: str, never: bool) -> Phrase:
    first, _, rest = clause.partition(" ")
    if first.lower() == "be":
        predicate = f"is {'never' if never else 'not'} {rest}"
    elif never:
        predicate = "never " + conjugate(clause)
    else:
        predicate = "does not " + clause
    return Phrase(text=_sentence(predicate), predicate=predicate, base=clause, negated=True)


def _phrase(predicate: str, base: str | None) -> Phrase:
    return Phrase(text=_sentence(predicate), predicate=predicate, base=base)


def _sentence(predicate: str) -> str:
    return f"The response {predicate}."


def _second_person(clause: str) -> str:
    """The principle speaks to the assistant; the criterion speaks about the response."""
    clause = re.sub(r"\byour (?:response|answer|reply|output)s?\b", "it", clause, flags=re.IGNORECASE)
    clause = re.sub(r"\byourself\b", "itself", clause, flags=re.IGNORECASE)
    clause = re.sub(r"\byour\b", "its", clause, flags=re.IGNORECASE)
    return re.sub(r"\byou\b", "it", clause, flags=re.IGNORECASE)


def _third_person(verb: str) -> str:
    lower = verb.lower()
    if lower in _IRREGULAR:
        return _IRREGULAR[lower]
    if re.search(r"(?:s|sh|ch|x|z|o)$", lower):
        return verb + "es"
    if re.search(r"[^aeiou]y$", lower):
        return verb[:-1] + "ies"
    return verb + "s"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
