"""Scoring: deterministic checks, votes, aggregation into a reward. Never touches the cache."""
