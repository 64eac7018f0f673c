"""CLI plumbing for the fallback judge and the fence secret, shared by `score` and `serve`."""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from rubricgate.interfaces.cli.common import backend_config

FALLBACK_HELP = ("Judge spec that takes over when the main judge is unavailable (retries exhausted or its circuit "
                 "open); results it contributed to are flagged 'fallback'.")
FENCE_SECRET_ENV = "RUBRICGATE_FENCE_SECRET"


def hardening_fields(fallback_judge: str | None, fallback_base_url: str | None, fallback_key_env: str,
                     timeout_s: float) -> dict[str, Any]:
    """GatewayConfig fields: the fallback judge (with its own URL and key, never the main judge's)
    and the fence secret from RUBRICGATE_FENCE_SECRET (replicas sharing a cache set the same one)."""
    fields: dict[str, Any] = {}
    if fallback_judge:
        fields["fallback_judge"] = fallback_judge
        fields["fallback_backend"] = backend_config(fallback_base_url, fallback_key_env, timeout_s)
    secret = os.environ.get(FENCE_SECRET_ENV)
    if secret:
        fields["fence_secret"] = SecretStr(secret)
    return fields
