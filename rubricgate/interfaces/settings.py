"""The one reader of the environment: every `RUBRICGATE_*` variable and every default, once.

Each entry point (the CLI commands, `serve`, the TRL and verl integrations, the Python API)
builds its `GatewayConfig` with `Settings().gateway_config(...)`, passing only what its caller
said explicitly. So the same inputs give the same judge, the same fence key, the same cache keys
and the same rewards wherever they come from. The README's "Configuration" table lists these
fields; a test checks that every variable it names is a field here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rubricgate.errors import UsageError
from rubricgate.interfaces.gateway import Gateway, GatewayConfig
from rubricgate.judges.registry import DEFAULT_JUDGE
from rubricgate.library.rubric_files import describe_validation_error
from rubricgate.models.config import BackendConfig, InjectionAction, ScoringConfig
from rubricgate.models.judging import SamplingParams

PREFIX = "RUBRICGATE_"
NO_CACHE = "none"
DEFAULT_CONTEXT = 4096
EVAL_DEADLINE_S = 900.0
"""`eval`'s per-judgment deadline: offline judges queue many judgments at once."""
AUTHORING_TIMEOUT_S = 120.0
"""Timeout of one generator or meta-judge call: they write long texts."""
NOT_SETTINGS = frozenset({"RUBRICGATE_PUBLISH", "RUBRICGATE_TEST_MODEL_DIR", "RUBRICGATE_SOAK_S"})
"""Variables of the compose file and the test suite, not of rubricgate itself."""

logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Defaults of every entry point, overridden by `RUBRICGATE_<FIELD>` variables.

    Explicit arguments (CLI flags, function arguments, verl `reward_kwargs`) override both.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # --- the judge
    judge: str = DEFAULT_JUDGE
    """Judge spec `kind:model`."""
    judge_base_url: str | None = None
    """Base URL of an OpenAI-compatible judge server (`openai:`, `litellm:`)."""
    judge_api_key: SecretStr | None = None
    """The judge's API key; never logged, never part of a cache key."""
    judge_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds per judge call."""
    judge_context: int = Field(default=DEFAULT_CONTEXT, ge=512)
    """Context length in tokens of judges the gateway hosts (`llamacpp:`, `vllm:`)."""
    model_dir: Path | None = None
    """Where the embedded model is assembled (default: the user cache dir)."""
    fallback_judge: str | None = None
    """Judge that answers when the main one is unavailable; results are flagged `fallback`."""
    fallback_judge_base_url: str | None = None
    fallback_judge_api_key: SecretStr | None = None
    # --- scoring
    votes: int = Field(default=3, ge=1, le=64)
    """Self-consistency votes per item."""
    max_votes: int = Field(default=64, ge=1, le=64)
    """Most votes any caller may ask for (HTTP requests, CLI, trainers)."""
    concurrency: int | None = Field(default=None, ge=1, le=4096)
    """Judge calls in flight; unset: the judge's own (32 over HTTP, 8 embedded, 256 in-process vLLM)."""
    temperature: float = Field(default=0.7, ge=0, le=2)
    """Judge sampling temperature."""
    deadline_s: float = Field(default=300.0, gt=0)
    """Seconds per item, retries included (`eval`: 900 per judgment)."""
    guard_judge: str | None = None
    """Judge that confirms or clears responses the injection detector suspects (default: none)."""
    injection_action: InjectionAction = "cap"
    """What a confirmed injection gets: `cap` (reward capped at 0), `null` (unscorable) or `flag`."""
    # --- cache and rubrics
    cache: str | None = None
    """Judgment cache: SQLAlchemy URL, SQLite path, or `none`; unset: a SQLite file in the user cache dir."""
    rubric_path: str = ""
    """Extra rubric folders, `os.pathsep`-separated, searched after `--rubric-dir` and before the library."""
    fence_secret: SecretStr | None = None
    """Secret behind the response fence tag; replicas sharing a cache set the same one."""
    # --- the server
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    """Bearer key clients of `serve` must send (required off loopback); also the key verl sends to `url`."""
    rubric: str | None = None
    """Default rubric (`serve`, verl) for requests that name none."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_items: int = Field(default=1024, ge=1)
    max_criteria: int = Field(default=64, ge=1)
    """Criteria in a rubric sent with a request (inline or as a reward override); 413 above."""
    max_checks: int = Field(default=32, ge=0)
    """Criteria with a deterministic check in a rubric sent with a request; 413 above."""
    max_rubric_chars: int = Field(default=64 * 1024, ge=1024)
    """Characters of text in a rubric sent with a request; 413 above."""
    max_response_chars: int = Field(default=100_000, ge=1)
    """Longest response scored; a longer one is unscorable with a reason (every entry point)."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """`serve`: on SIGTERM, how long admitted requests may still run; then each unfinished item
    gets `reward: null` with reason `shutdown`."""
    allow_judges: str = ""
    """Judges (comma-separated specs) that a request's rubric may name in `reward.judges` besides
    the judge and the fallback judge (`serve`); no request builds any other judge."""
    allow_test_judges: bool = False
    """Let `serve` run `fake:` judges (scripted verdicts, for tests and demos)."""
    # --- authoring and refinement
    generator: str | None = None
    """Rubric writer spec (default: the judge)."""
    generator_base_url: str | None = None
    generator_api_key: SecretStr | None = None
    meta_judge: str | None = None
    """Meta-judge of refinement (default: the judge)."""
    meta_judge_base_url: str | None = None
    meta_judge_api_key: SecretStr | None = None
    # --- trainers
    url: str | None = None
    """A running `rubricgate serve` that verl's `compute_score` sends samples to."""
    judge_model: str | None = None
    """Model name behind verl's reward router."""
    unscorable_score: float | None = None
    """verl: the number an unscorable sample gets (default: 0.0)."""
    debug: bool = False
    """Tracebacks on errors."""

    @classmethod
    def load(cls) -> Settings:
        """Read the environment; a malformed variable is a usage error naming it."""
        unknown = sorted(name for name in os.environ if name.startswith(PREFIX) and name not in NOT_SETTINGS
                         and name.removeprefix(PREFIX).lower() not in cls.model_fields)
        if unknown:  # most likely a typo (RUBRICGATE_VOTE=5) that would otherwise be ignored in silence
            logger.warning("ignoring unknown variable(s) %s; known: %s", ", ".join(unknown),
                           ", ".join(PREFIX + name.upper() for name in cls.model_fields))
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "*"
            shown = "" if "key" in field or "secret" in field else f"={first.get('input')!r}"  # never echo a secret
            raise UsageError(f"{PREFIX}{field.upper()}{shown}: {first['msg']}; fix or unset the variable") from None

    # --- derived values
    def cache_url(self, option: str | None = None) -> str | None:
        """`option`, else `cache`, else the user cache dir: a bare path is a SQLite file, `none` no cache."""
        value = option or self.cache or f"sqlite:///{Path(platformdirs.user_cache_dir('rubricgate')) / 'cache.db'}"
        if value.lower() == NO_CACHE:
            return None
        if "://" not in value:
            return f"sqlite:///{Path(value).expanduser().resolve()}"
        return value

    def rubric_dirs(self, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
        """`extra` folders first (`--rubric-dir`), then `rubric_path`."""
        return (*extra, *(Path(p).expanduser() for p in self.rubric_path.split(os.pathsep) if p))

    def secret(self, variable: str | None) -> SecretStr | None:
        """The value of a variable the user named for a key (`--judge-api-key-env NAME`)."""
        value = os.environ.get(variable) if variable else None
        return SecretStr(value) if value else None

    def backend(self, base_url: str | None = None, api_key: SecretStr | str | None = None,
                timeout_s: float | None = None, **fields: Any) -> BackendConfig:
        """Connection settings of one judge: explicit values, else these settings."""
        key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        values: dict[str, Any] = {"timeout_s": timeout_s or self.judge_timeout_s, "model_dir": self.model_dir,
                                  "n_ctx": self.judge_context, **fields}
        return BackendConfig(base_url=base_url, api_key=key, **values)

    def gateway_config(
        self,
        *,
        judge: str | None = None,
        judge_base_url: str | None = None,
        judge_api_key: SecretStr | str | None = None,
        votes: int | None = None,
        concurrency: int | None = None,
        temperature: float | None = None,
        timeout_s: float | None = None,
        deadline_s: float | None = None,
        cache: str | None = None,
        rubric_dirs: Sequence[Path] = (),
        fallback_judge: str | None = None,
        fallback_judge_base_url: str | None = None,
        fallback_judge_api_key: SecretStr | str | None = None,
        guard_judge: str | None = None,
        scoring: Mapping[str, Any] | None = None,
        backend: Mapping[str, Any] | None = None,
        **gateway: Any,
    ) -> GatewayConfig:
        """The gateway configuration: each argument given wins over its setting (None: the setting).

        `scoring`, `backend` and `**gateway` pass further `ScoringConfig`, `BackendConfig` and
        `GatewayConfig` fields through (the Python integrations' `**options`).
        """
        chosen_votes = votes if votes is not None else self.votes
        if chosen_votes > self.max_votes:
            raise UsageError(f"votes={chosen_votes} is over the limit of {self.max_votes} (RUBRICGATE_MAX_VOTES)")
        try:
            main = self.backend(judge_base_url or self.judge_base_url, judge_api_key or self.judge_api_key, timeout_s,
                                **(backend or {}))
            fields: dict[str, Any] = {
                "judge": judge or self.judge,
                "backend": main,
                "scoring": ScoringConfig(**{"votes": chosen_votes, "concurrency": concurrency or self.concurrency,
                                            "deadline_s": deadline_s or self.deadline_s,
                                            "max_response_chars": self.max_response_chars,
                                            "injection_action": self.injection_action, **(scoring or {})}),
                "sampling": SamplingParams(temperature=self.temperature if temperature is None else temperature),
                "cache_url": self.cache_url(cache),
                "rubric_dirs": self.rubric_dirs(rubric_dirs),
                "fence_secret": self.fence_secret,
            }
            if guard_judge or self.guard_judge:
                fields["guard_judge"] = guard_judge or self.guard_judge
            fallback = fallback_judge or self.fallback_judge
            if fallback:
                fields["fallback_judge"] = fallback
                fields["fallback_backend"] = self.backend(fallback_judge_base_url or self.fallback_judge_base_url,
                                                          fallback_judge_api_key or self.fallback_judge_api_key,
                                                          main.timeout_s)
            return GatewayConfig(**{**fields, **gateway})
        except ValidationError as exc:
            raise UsageError(describe_validation_error(exc)) from exc


def field_variables() -> dict[str, str]:
    """Every variable `Settings` reads, by field name (for the README check and `--help`)."""
    return {name: PREFIX + name.upper() for name in Settings.model_fields}



def open_gateway(**overrides: Any) -> Gateway:
    """A gateway configured the way every entry point configures one: `Settings` plus `overrides`
    (the keyword arguments of `Settings.gateway_config`). Use as `async with open_gateway(...) as g`."""
    return Gateway.open(Settings.load().gateway_config(**overrides))
