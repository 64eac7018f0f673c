"""What every rubric writer returns: the rubric and notes for the user (shared by all writers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rubricgate.models.rubric import Rubric


@dataclass
class Draft:
    """A written rubric and what the writer wants the user to know about it."""

    rubric: Rubric
    notes: list[str] = field(default_factory=list)
