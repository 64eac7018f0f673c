"""Deprecated alias of `rubricgate.models.preference` (the module was renamed so it no longer
shares a name with `rubricgate.interfaces.evaluation`). Import from `models.preference`; this
alias goes once no module imports it."""

from rubricgate.models.preference import (
    AccuracyStats, EvalReport, EvalVariant, Matchup, Mode, PairRecord, PreferencePair, PromptKind, ScoreKind,
    VariantReport,
)

__all__ = [
    "AccuracyStats",
    "EvalReport",
    "EvalVariant",
    "Matchup",
    "Mode",
    "PairRecord",
    "PreferencePair",
    "PromptKind",
    "ScoreKind",
    "VariantReport",
]
