"""Explicit, objective requirements found in text (a principle or a prompt) -> hard rules.

Deterministic and conservative: a rule is extracted only from an unambiguous phrase ("at most
120 words", "respond in JSON", "exactly 3 bullet points", "do not use the word 'very'"). Where
the requirement is mechanically checkable the rule carries a `check`, so scoring decides it
without any judge; explicit but uncheckable ones ("in French", "name five rivers") become judged
hard rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rubricgate.models.rubric import (
    Check, CodeBlock, ContainsAll, ContainsNone, Criterion, JsonValid, MaxChars, MaxSentences, MaxWords,
    MinWords, NoPlaceholders, NotRegex, Regex,
)

_NUMBER_WORDS = {
    "a single": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "hundred": 100, "a hundred": 100, "one hundred": 100, "two hundred": 200,
    "three hundred": 300, "five hundred": 500, "a thousand": 1000, "one thousand": 1000,
}
_NUM = r"(\d{1,5}|" + "|".join(sorted(map(re.escape, _NUMBER_WORDS), key=len, reverse=True)) + r")"
_AT_MOST = r"(at most|no more than|not more than|up to|a maximum of|maximum of|max(?:imum)?|within|under|" \
           r"fewer than|less than|below|(?:not|never|don't|do not) exceed(?:ing)?|no longer than|not longer than|limited to|limit it to|" \
           r"limit yourself to|in)"
_AT_LEAST = r"(at least|no (?:less|fewer) than|not (?:less|fewer) than|a minimum of|minimum of|more than|over)"
_STRICT = {"under", "fewer than", "less than", "below", "more than", "over"}
_QUOTED = r"[\"“‘'`]([^\"”’'`\n]{1,60})[\"”’'`]"
_LANGUAGES = ("English", "French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Swedish",
              "Norwegian", "Danish", "Finnish", "Polish", "Czech", "Russian", "Ukrainian", "Greek", "Turkish",
              "Arabic", "Hebrew", "Persian", "Hindi", "Bengali", "Urdu", "Chinese", "Mandarin", "Japanese",
              "Korean", "Vietnamese", "Thai", "Indonesian", "Malay", "Swahili", "Tamil", "Telugu", "Marathi",
              "Punjabi", "Gujarati", "Kannada", "Latin")
_BULLET = r"^[ \t]*[-*•][ \t]+\S"
_BULLET_LINE = r"[ \t]*[-*•][ \t]+\S[^\n]*(?:\n|\z)"
_OTHER_LINES = (r"(?:[ \t]*(?:[^-*• \t\n][^\n]*|[-*•](?:[^ \t\n][^\n]*)?|[-*•][ \t]+(?:[^\S \t\n][^\n]*)?)?"
                r"(?:\n|\z))*")
"""Lines that are not bullets (`_BULLET` does not match them), so "exactly n bullets" is one RE2 pattern."""


@dataclass(frozen=True)
class ExtractedRule:
    """One explicit requirement, ready to become a hard-rule criterion."""

    id: str
    text: str
    """The criterion sentence, "The response ..."."""
    family: str
    """What kind of requirement: length, format, language, content, count, start_end, case."""
    check: Check | None = None
    pass_: str | None = None
    fail: str | None = None
    span: tuple[int, int] = (0, 0)
    """Where in the source text the requirement was found."""

    def criterion(self, weight: float = 1.0) -> Criterion:
        """The hard-rule criterion this requirement becomes."""
        return Criterion.model_validate({
            "id": self.id, "kind": "hard_rule", "text": self.text, "weight": weight,
            "pass": self.pass_, "fail": self.fail,
            "check": self.check.model_dump() if self.check is not None else None,
        })


def extract_rules(text: str) -> list[ExtractedRule]:
    """Every explicit requirement in `text`, in order of appearance, one per id."""
    found: dict[str, ExtractedRule] = {}
    for finder in _FINDERS:
        for rule in finder(text):
            found.setdefault(rule.id, rule)
    return sorted(found.values(), key=lambda r: r.span)


def instruction_part(prompt: str) -> str:
    """The instruction of a prompt without long pasted material after it (constraints live in the
    instruction; a pasted article's "at least 3 sentences" is not one)."""
    head, _, _ = prompt.partition("\n\n")
    return head if len(head) >= 20 else prompt[:1500]


def uncovered_text(text: str, rules: list[ExtractedRule]) -> str:
    """`text` with the extracted requirements cut out (to see whether anything else is left)."""
    out, last = [], 0
    for rule in sorted(rules, key=lambda r: r.span):
        if rule.span[0] >= last:
            out.append(text[last:rule.span[0]])
            last = rule.span[1]
    out.append(text[last:])
    return " ".join("".join(out).split())


def number(text: str) -> int | None:
    """"120" or "twenty" -> int."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    return _NUMBER_WORDS.get(text)


def _max_check(unit: str, value: int) -> Check:
    if unit == "words":
        return MaxWords(type="max_words", value=value)
    if unit == "sentences":
        return MaxSentences(type="max_sentences", value=value)
    return MaxChars(type="max_chars", value=value)


def _max_rule(unit: str, limit: int, span: tuple[int, int]) -> ExtractedRule:
    unit_text = unit if limit != 1 else unit[:-1]
    return ExtractedRule(
        id=f"max_{unit}", text=f"The response is at most {limit} {unit_text} long.", family="length",
        check=_max_check(unit, limit), pass_=f"Stays within {limit} {unit_text}.",
        fail=f"Runs past {limit} {unit_text}.", span=span)


def _length(text: str) -> list[ExtractedRule]:
    rules = []
    for pattern, unit in ((r"words?", "words"), (r"sentences?", "sentences"), (r"characters?|chars", "characters")):
        for m in re.finditer(rf"\b{_AT_MOST}\s+{_NUM}\s+(?:{pattern})\b", text, re.IGNORECASE):
            n = number(m.group(2))
            quantifier = m.group(1).lower()
            if not n or (quantifier == "in" and unit == "words"
                         and not re.match(r"\s+or\s+(?:less|fewer)", text[m.end():], re.IGNORECASE)):
                continue  # "in 50 words" is a target length, not a limit
            limit = n - 1 if quantifier in _STRICT else n
            if limit >= 1 and not (quantifier == "in" and limit == 1):  # "in one sentence" is worded below
                rules.append(_max_rule(unit, limit, m.span()))
        for m in re.finditer(rf"\b{_NUM}\s+(?:{pattern})\s+or\s+(?:less|fewer)\b", text, re.IGNORECASE):
            n = number(m.group(1))
            if n:
                rules.append(_max_rule(unit, n, m.span()))
    for m in re.finditer(rf"\b{_AT_LEAST}\s+{_NUM}\s+words?\b", text, re.IGNORECASE):
        n = number(m.group(2))
        if n is not None:
            limit = n + 1 if m.group(1).lower() in _STRICT else n
            rules.append(ExtractedRule(
                id="min_words", text=f"The response is at least {limit} words long.", family="length",
                check=MinWords(type="min_words", value=limit), pass_=f"Has {limit} words or more.",
                fail=f"Has fewer than {limit} words.", span=m.span()))
    single = re.search(r"\b(?:in|with|using) (?:a single|one|just one|only one) sentence\b", text, re.IGNORECASE)
    if single:
        rules.append(ExtractedRule(
            id="max_sentences", text="The response is a single sentence.", family="length",
            check=MaxSentences(type="max_sentences", value=1), pass_="Is one sentence.",
            fail="Has more than one sentence.", span=single.span()))
    for m in re.finditer(rf"\b(?:exactly\s+)?{_NUM}\s+paragraphs?\b", text, re.IGNORECASE):
        n = number(m.group(1))
        if n and n > 1:
            rules.append(ExtractedRule(
                id="paragraph_count", text=f"The response has exactly {n} paragraphs.", family="length",
                pass_=f"Has {n} paragraphs.", fail=f"Has more or fewer than {n} paragraphs.", span=m.span()))
    return rules


def _format(text: str) -> list[ExtractedRule]:
    rules = []
    m: re.Match[str] | None = re.search(r"\b(?:(?:respond|reply|answer|output|return|format(?:ted)?|write|give|provide)\b[^.\n]{0,30}"
                  r"\bjson\b|json (?:format|object|only)\b|\b(?:in|as) (?:valid )?json\b|\bvalid json\b)",
                  text, re.IGNORECASE)
    if m and not re.search(r"\b(?:this|the following|given|below|above) json\b", text, re.IGNORECASE):
        rules.append(ExtractedRule(
            id="json_output", text="The response is valid JSON.", family="format", check=JsonValid(type="json"),
            pass_="Parses as JSON (alone or in one fenced block).", fail="Is not valid JSON.", span=m.span()))
    m = re.search(r"\b(?:code block|fenced code|markdown code|triple backticks)\b", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="code_block", text="The response puts its code in a fenced code block.", family="format",
            check=CodeBlock(type="code_block"), pass_="Has a ``` fenced code block.",
            fail="Has no fenced code block.", span=m.span()))
    for m in re.finditer(rf"\b(?:exactly\s+)?{_NUM}\s+bullet(?:ed)?(?:[\s-]+points?|s)\b", text, re.IGNORECASE):
        n = number(m.group(1))
        if n and n <= 12:
            pattern = rf"\A{_OTHER_LINES}(?:{_BULLET_LINE}{_OTHER_LINES}){{{n}}}\z"  # RE2: no lookarounds
            rules.append(ExtractedRule(
                id="bullet_count", text=f"The response has exactly {n} bullet points.", family="format",
                check=Regex(type="regex", value=pattern), pass_=f"Has {n} bullet points.",
                fail=f"Has more or fewer than {n} bullet points.", span=m.span()))
            break
    else:
        m = re.search(r"\b(?:bullet(?:ed)?[\s-]+(?:points?|list)|bulleted|as bullets|in bullets)\b", text,
                      re.IGNORECASE)
        if m and not re.search(r"\b(?:no|without|avoid|not use|don't use)\s+(?:any\s+)?bullet", text, re.IGNORECASE):
            rules.append(ExtractedRule(
                id="bullet_list", text="The response uses a bulleted list.", family="format",
                check=Regex(type="regex", value=f"(?m){_BULLET}"), pass_="Presents its points as bullets.",
                fail="Has no bulleted list.", span=m.span()))
    m = re.search(r"\bnumbered (?:list|steps)\b", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="numbered_list", text="The response uses a numbered list.", family="format",
            check=Regex(type="regex", value=r"(?m)^[ \t]*\d+[.)][ \t]+\S"), pass_="Numbers its items 1., 2., ...",
            fail="Has no numbered list.", span=m.span()))
    m = re.search(r"wrap (?:your |the )?(?:entire |whole )?(?:response|answer|output|reply) (?:with|in|inside) "
                  r"double quot", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="wrapped_in_quotes", text="The response is wrapped in double quotation marks.", family="format",
            check=Regex(type="regex", value=r'(?s)\A\s*".*"\s*\Z'), pass_="Starts and ends with a double quote.",
            fail="Is not wrapped in double quotes.", span=m.span()))
    m = re.search(r"<<[^<>\n]*>>", text)
    if m and re.search(r"\btitle\b", text, re.IGNORECASE):
        rules.append(ExtractedRule(
            id="title_in_brackets", text="The response has a title wrapped in double angular brackets, "
                                         "like <<title>>.", family="format",
            check=Regex(type="regex", value=r"<<[^<>\n]+>>"), pass_="Has a <<title>>.",
            fail="Has no title in << >>.", span=m.span()))
    m = re.search(r"\b(?:postscript|P\.S\.)", text)
    if m and re.search(r"\b(?:add|include|end with|append|at the end)\b", text, re.IGNORECASE):
        rules.append(ExtractedRule(
            id="postscript", text="The response ends with a postscript starting with P.S.", family="format",
            check=Regex(type="regex", value=r"P\.S\."), pass_="Has a P.S.", fail="Has no P.S.", span=m.span()))
    m = re.search(r"\b(?:no|without|do not (?:use|leave)|don't (?:use|leave)|never (?:use|leave))\s+(?:any\s+)?"
                  r"placeholders?\b", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="no_placeholders", text="The response contains no unfilled template placeholders.", family="format",
            check=NoPlaceholders(type="no_placeholders"), pass_="Every slot is filled in.",
            fail="Leaves [NAME], {{x}}, TODO or similar slots.", span=m.span()))
    return rules


def _case(text: str) -> list[ExtractedRule]:
    rules = []
    m = re.search(r"\b(?:all|entirely|only|in) (?:in )?lower[\s-]?case(?: letters)?\b|\bno capital letters\b", text,
                  re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="all_lowercase", text="The response is written entirely in lowercase letters.", family="case",
            check=NotRegex(type="not_regex", value="[A-Z]"), pass_="Has no capital letters.",
            fail="Contains capital letters.", span=m.span()))
    m = re.search(r"\b(?:all (?:capital|upper[\s-]?case) letters|in (?:all )?(?:capital letters|upper[\s-]?case|"
                  r"all caps))\b", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="all_uppercase", text="The response is written entirely in capital letters.", family="case",
            check=NotRegex(type="not_regex", value="[a-z]"), pass_="Has no lowercase letters.",
            fail="Contains lowercase letters.", span=m.span()))
    m = re.search(r"\b(?:no|without(?: using)?(?: any)?|do not use(?: any)?|don't use(?: any)?|avoid(?: using)?"
                  r"(?: any)?|refrain from using(?: any)?) commas?\b", text, re.IGNORECASE)
    if m:
        rules.append(ExtractedRule(
            id="no_commas", text="The response uses no commas.", family="case",
            check=NotRegex(type="not_regex", value=","), pass_="Has no commas.", fail="Contains a comma.",
            span=m.span()))
    return rules


def _start_end(text: str) -> list[ExtractedRule]:
    rules = []
    m = re.search(r"\b(?:start|begin)s?\s+(?:your |the )?(?:response|answer|reply|output)?\s*with\s+"
                  rf"(?:the (?:word|phrase|sentence) )?{_QUOTED}", text, re.IGNORECASE)
    if m:
        phrase = m.group(1).strip()
        rules.append(ExtractedRule(
            id="starts_with", text=f'The response starts with "{phrase}".', family="start_end",
            check=Regex(type="regex", value=r"\A[\s\"'*#]*" + re.escape(phrase), ignore_case=True),
            pass_=f'Opens with "{phrase}".', fail="Opens with anything else.", span=m.span()))
    m = re.search(r"\b(?:end|finish)(?:s)?\s+(?:your |the )?(?:response|answer|reply|output)?\s*with\s+"
                  rf"(?:the (?:exact )?(?:word|phrase|sentence) )?{_QUOTED}", text, re.IGNORECASE)
    if m:
        phrase = m.group(1).strip()
        rules.append(ExtractedRule(
            id="ends_with", text=f'The response ends with "{phrase}".', family="start_end",
            check=Regex(type="regex", value=re.escape(phrase) + r"[\s.!?\"'*]*\Z", ignore_case=True),
            pass_=f'Its last words are "{phrase}".', fail="Ends with anything else.", span=m.span()))
    return rules


def _content(text: str) -> list[ExtractedRule]:
    rules = []
    m = re.search(r"\b(?:do not|don't|never|avoid|without)\s+(?:using|use|including|include|saying|say|mentioning|"
                  r"mention)?\s*(?:the\s+|any\s+(?:of\s+the\s+)?)?(?:words?|phrases?|terms?|keywords?)\s*[:(\[]?\s*"
                  rf"((?:{_QUOTED}\s*(?:,|and|or)?\s*)+)", text, re.IGNORECASE)
    if m:
        words = [w.strip() for w in re.findall(_QUOTED, m.group(1)) if w.strip()]
        if words:
            rules.append(ExtractedRule(
                id="forbidden_words", text="The response avoids the words " + ", ".join(f'"{w}"' for w in words) + ".",
                family="content", check=ContainsNone(type="contains_none", value=words),
                pass_="None of the forbidden words appear.", fail="Uses a forbidden word.", span=m.span()))
    m = re.search(r"\b(?:include|use|mention|contain|with)\s+(?:the\s+)?(?:words?|phrases?|terms?|keywords?)\s*"
                  rf"[:(\[]?\s*((?:{_QUOTED}\s*(?:,|and|or)?\s*)+)", text, re.IGNORECASE)
    if m and not (rules and rules[0].span[0] <= m.start() < rules[0].span[1]):
        words = [w.strip() for w in re.findall(_QUOTED, m.group(1)) if w.strip()]
        if words:
            rules.append(ExtractedRule(
                id="required_words", text="The response includes the words " + ", ".join(f'"{w}"' for w in words)
                + ".", family="content", check=ContainsAll(type="contains_all", value=words),
                pass_="Every required word appears.", fail="Leaves out a required word.", span=m.span()))
    languages = "|".join(_LANGUAGES)
    m = re.search(rf"\b(?:(?:respond|answer|reply|write|written|speak|output)\b[^.\n]{{0,40}}?\bin|(?:response|answer|"
                  rf"reply|output) (?:should|must) be (?:written )?in|only in|entirely in)\s+({languages})\b", text,
                  re.IGNORECASE)
    if m:
        language = m.group(1).capitalize()
        rules.append(ExtractedRule(
            id=f"language_{language.lower()}", text=f"The response is written in {language}.", family="language",
            pass_=f"Is entirely in {language}.", fail="Uses another language for all or part of it.",
            span=m.span()))
    m = re.search(rf"\b(?:list|name|give|provide|suggest|generate|write|create|come up with|recommend|share|tell me)"
                  rf"\s+(?:me\s+|us\s+)?(?:exactly\s+|only\s+|a list of\s+)?{_NUM}\s+([a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)",
                  text, re.IGNORECASE)
    if m:
        n = number(m.group(1))
        noun = re.split(r"\s+(?:for|of|that|to|about|on|in|which|who|from|with|and|or)\b", m.group(2))[0].strip()
        if n and 1 < n <= 20 and noun.lower() not in {"words", "word", "sentences", "sentence", "paragraphs",
                                                       "bullet", "bullets", "characters"}:
            rules.append(ExtractedRule(
                id="item_count", text=f"The response gives exactly {n} {noun}.", family="count",
                pass_=f"Gives {n} {noun}, no more and no fewer.", fail=f"Gives more or fewer than {n} {noun}.",
                span=m.span()))
    return rules


_FINDERS = (_length, _format, _case, _start_end, _content)
