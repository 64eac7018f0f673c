"""rubricgate: rubric- and principle-driven rewards for LLM post-training.

Public API; everything else is private or subject to change.
"""

from rubricgate.authoring import (
    ConsistencyFilter, RankedPrompt, contrast_rubrics, diff_rubrics, distill_rubrics, generate_rubric, open_writer,
)
from rubricgate.authoring.refinement import (
    GateConfig, GateReport, Proposal, RefineConfig, RefinementOutcome, ScoredSample, open_meta_judge, refine_rubric,
    run_gate, scored_samples,
)
from rubricgate.cache.cached import CachedBackend
from rubricgate.cache.store import JudgmentStore
from rubricgate.cache.versions import RubricVersionStore
from rubricgate.errors import (
    CacheError, CircuitOpen, JudgeError, JudgeRejected, JudgeUnavailable, RubricGateError, UsageError,
    VerdictParseError,
)
from rubricgate.interfaces.evaluation import evaluate, read_pairs
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.interfaces.settings import Settings, open_gateway
from rubricgate.judges.base import JudgeBackend
from rubricgate.judges.circuit import CircuitBreakerBackend, FallbackBackend
from rubricgate.judges.fake import FakeBackend
from rubricgate.judges.injection import InjectionFinding, detect_injection
from rubricgate.judges.registry import get_backend
from rubricgate.judges.retry import RetryingBackend
from rubricgate.library.probes import Probe, load_probes
from rubricgate.library.rubric_files import load_rubric_file, parse_rubric, resolve_rubric
from rubricgate.models.config import BackendConfig, CircuitPolicy, JudgeCapabilities, RetryPolicy, ScoringConfig
from rubricgate.models.judging import JudgeReply, JudgeRequest, SamplingParams, Verdict
from rubricgate.models.preference import EvalReport, EvalVariant, PreferencePair
from rubricgate.models.reward import CriterionScore, Item, RewardResult
from rubricgate.models.rubric import Criterion, Rubric, Scale
from rubricgate.scoring.pairwise import PairwiseScorer
from rubricgate.scoring.scorer import RubricScorer

__all__ = [
    "BackendConfig",
    "CacheError",
    "CachedBackend",
    "CircuitBreakerBackend",
    "CircuitOpen",
    "CircuitPolicy",
    "ConsistencyFilter",
    "Criterion",
    "CriterionScore",
    "EvalReport",
    "EvalVariant",
    "FakeBackend",
    "FallbackBackend",
    "GateConfig",
    "GateReport",
    "Gateway",
    "GatewayConfig",
    "InjectionFinding",
    "Item",
    "JudgeBackend",
    "JudgeCapabilities",
    "JudgeError",
    "JudgeRejected",
    "JudgeReply",
    "JudgeRequest",
    "JudgeUnavailable",
    "JudgmentStore",
    "PairwiseScorer",
    "PreferencePair",
    "Probe",
    "Proposal",
    "RankedPrompt",
    "RefineConfig",
    "RefinementOutcome",
    "RetryPolicy",
    "RetryingBackend",
    "RewardResult",
    "Rubric",
    "RubricGateError",
    "RubricScorer",
    "RubricVersionStore",
    "SamplingParams",
    "Scale",
    "ScoredSample",
    "ScoringConfig",
    "Settings",
    "UsageError",
    "Verdict",
    "VerdictParseError",
    "contrast_rubrics",
    "detect_injection",
    "diff_rubrics",
    "distill_rubrics",
    "evaluate",
    "generate_rubric",
    "get_backend",
    "load_probes",
    "load_rubric_file",
    "open_gateway",
    "open_meta_judge",
    "open_writer",
    "parse_rubric",
    "read_pairs",
    "refine_rubric",
    "resolve_rubric",
    "run_gate",
    "scored_samples",
]
__version__ = "0.1.0"
