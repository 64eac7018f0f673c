"""Word and sentence counts shared by the deterministic checks, IFEval and length shaping."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def word_count(text: str) -> int:
    return len(text.split())


def sentence_count(text: str) -> int:
    """Sentences, split after . ! ? followed by whitespace or the end (no NLTK data needed)."""
    return len([s for s in _SENTENCE_END.split(text.strip()) if s.strip()])
