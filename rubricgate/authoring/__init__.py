"""Authoring: principles -> rubrics, contrastive rubrics from preference data, consistency filter,
distillation, diffs. Beside scoring in the layer order: it may use models, judges, library and
scoring, never the cache or interfaces (the CLI and gateway compose it).

    writer = open_writer(gateway.judge("openai:my-model", free_text=True))   # None: the template writer
    authored = await generate_rubric(["Be concise", "Refuse unsafe requests"], "safe-concise", writer)
"""

from rubricgate.authoring.consistency import ConsistencyFilter, FilterMode, FilterResult, PairCheck
from rubricgate.authoring.contrast import (
    Attempt, ContrastReport, InstanceOutcome, contrast_one, contrast_rubrics, distill_rubrics, rubric_id_for,
)
from rubricgate.authoring.diff import RubricDiff, diff_rubrics
from rubricgate.authoring.draft import Draft
from rubricgate.authoring.extract import ExtractedRule, extract_rules
from rubricgate.authoring.generate import AuthoredRubric, generate_rubric
from rubricgate.authoring.llm_calls import BackendTextGenerator, Choice, LabelChooser, TextGenerator
from rubricgate.authoring.parse import parse_generated_rubric, review_rubric, revise
from rubricgate.authoring.phrasing import phrase_principle
from rubricgate.authoring.source import PrincipleSet, RankedPrompt
from rubricgate.authoring.template import TemplateRubricWriter
from rubricgate.authoring.writer import TEMPLATE_WRITER, LLMRubricWriter, RubricWriter, open_writer

__all__ = [
    "TEMPLATE_WRITER",
    "Attempt",
    "AuthoredRubric",
    "BackendTextGenerator",
    "Choice",
    "ConsistencyFilter",
    "ContrastReport",
    "Draft",
    "ExtractedRule",
    "FilterMode",
    "FilterResult",
    "InstanceOutcome",
    "LLMRubricWriter",
    "LabelChooser",
    "PairCheck",
    "PrincipleSet",
    "RankedPrompt",
    "RubricDiff",
    "RubricWriter",
    "TemplateRubricWriter",
    "TextGenerator",
    "contrast_one",
    "contrast_rubrics",
    "diff_rubrics",
    "distill_rubrics",
    "extract_rules",
    "generate_rubric",
    "open_writer",
    "parse_generated_rubric",
    "phrase_principle",
    "review_rubric",
    "revise",
    "rubric_id_for",
]
