"""Every exception rubricgate raises on purpose.

```
RubricGateError
├── UsageError          the caller must fix something: bad spec, rubric file, input, missing extra
├── JudgeError
│   ├── JudgeUnavailable   timeout, connection, 429, 5xx: retrying may help
│   │   └── CircuitOpen    the judge failed too often lately; not called until its cool-down ends
│   └── JudgeRejected      400/401/404, context too long: retrying will not help
├── VerdictParseError   the judge replied, but not in the requested format
└── CacheError          the cache database could not be read or written
```

This module imports nothing from rubricgate, so every layer may import it. `error_code` and
`error_message` give each error the stable code and the one line the CLI and HTTP edges report,
exception groups (a TaskGroup's failures) included.
"""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal["usage_error", "judge_unavailable", "cache_error", "internal_error"]


class RubricGateError(Exception):
    """Base of every error rubricgate raises on purpose."""


class UsageError(RubricGateError):
    """The caller must change something (a flag, a file, a spec) before retrying."""


class JudgeError(RubricGateError):
    """A judge backend could not produce a reply."""


class JudgeUnavailable(JudgeError):
    """A transient failure: retrying later may succeed.

    `retry_after_s` carries the server's Retry-After hint when it sent one.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpen(JudgeUnavailable):
    """The judge's circuit breaker is open: the call was not made. Retrying now will not help
    (retries skip it); a fallback judge may answer instead."""


class JudgeRejected(JudgeError):
    """A permanent failure for this request: retrying the same call will not help."""


class VerdictParseError(RubricGateError):
    """The judge answered, but its reply is not a verdict in the requested format."""


class CacheError(RubricGateError):
    """The judgment cache could not be opened, read or written."""


def error_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside an exception group (nested ones flattened), or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in error_leaves(inner)]
    return [exc]


def error_code(exc: BaseException) -> ErrorCode:
    """The stable code of an error at the CLI and HTTP edges.

    An exception group (a TaskGroup's failure) whose leaves all have one code gets that code;
    mixed or unexpected errors are `internal_error`.
    """
    codes = {_leaf_code(leaf) for leaf in error_leaves(exc)}
    return codes.pop() if len(codes) == 1 else "internal_error"


def _leaf_code(exc: BaseException) -> ErrorCode:
    if isinstance(exc, UsageError):
        return "usage_error"
    if isinstance(exc, (JudgeError, VerdictParseError)):
        return "judge_unavailable"
    if isinstance(exc, CacheError):
        return "cache_error"
    return "internal_error"


def error_message(exc: BaseException) -> str:
    """An error on one line: its message, or its group's distinct leaf messages (unexpected
    errors prefixed with their type)."""
    texts = [str(leaf) if isinstance(leaf, RubricGateError) else f"{type(leaf).__name__}: {leaf}"
             for leaf in error_leaves(exc)]
    distinct = list(dict.fromkeys(" ".join(text.split()) for text in texts))
    return distinct[0] + (f" (and {len(distinct) - 1} other error(s))" if len(distinct) > 1 else "")
