"""rubricgate: rubric- and principle-driven rewards for LLM post-training.

Public API; everything else is private or subject to change.
"""

from rubricgate.cache.cached import CachedBackend
from rubricgate.cache.store import JudgmentStore
from rubricgate.errors import (
    CacheError, JudgeError, JudgeRejected, JudgeUnavailable, RubricGateError, UsageError, VerdictParseError,
)
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.fake import FakeBackend
from rubricgate.judges.registry import get_backend
from rubricgate.judges.retry import RetryingBackend
from rubricgate.library.rubric_files import load_rubric_file, parse_rubric, resolve_rubric
from rubricgate.models.config import BackendConfig, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest, SamplingParams, Verdict
from rubricgate.models.reward import CriterionScore, Item, RewardResult
from rubricgate.models.rubric import Criterion, Rubric, Scale
from rubricgate.scoring.scorer import RubricScorer

__all__ = [
    "BackendConfig",
    "CacheError",
    "CachedBackend",
    "Criterion",
    "CriterionScore",
    "FakeBackend",
    "Gateway",
    "GatewayConfig",
    "Item",
    "JudgeBackend",
    "JudgeError",
    "JudgeRejected",
    "JudgeReply",
    "JudgeRequest",
    "JudgeUnavailable",
    "JudgmentStore",
    "RetryPolicy",
    "RetryingBackend",
    "RewardResult",
    "Rubric",
    "RubricGateError",
    "RubricScorer",
    "SamplingParams",
    "Scale",
    "ScoringConfig",
    "UsageError",
    "Verdict",
    "VerdictParseError",
    "get_backend",
    "load_rubric_file",
    "parse_rubric",
    "resolve_rubric",
]
__version__ = "0.1.0"
