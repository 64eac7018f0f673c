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

This module imports nothing from rubricgate, so every layer may import it.
"""

from __future__ import annotations


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
