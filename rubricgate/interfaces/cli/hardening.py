"""Help text for the fallback judge options of `score` and `serve`."""

from __future__ import annotations

FALLBACK_HELP = ("Judge spec that takes over when the main judge is unavailable (retries exhausted or its circuit "
                 "open); results it contributed to are flagged 'fallback' (default: RUBRICGATE_FALLBACK_JUDGE).")
