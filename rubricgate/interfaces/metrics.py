"""Prometheus metrics of one server, in its own registry (several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from rubricgate.models.reward import RewardResult

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
ERROR_CODES = ("usage_error", "judge_unavailable", "cache_error", "internal_error", "invalid_request",
               "payload_too_large", "http_error")
"""Every `error` code of a JSON error body (README "Serve rewards over HTTP")."""


class _CacheErrors(Collector):
    """`rubricgate_cache_errors_total`, read from the gateway's cache counters at scrape time."""

    def __init__(self, errors: Callable[[], int]) -> None:
        self._errors = errors

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("rubricgate_cache_errors", "Cache reads and writes that failed (the votes "
                                  "behind them were judged uncached, flag cache_unavailable)",
                                  value=self._errors())


class ServerMetrics:
    """Requests (per endpoint and status, per status class, per error code), latency, judge
    calls, cache hits and errors, votes, unscorable items, flags, rewards.

    Args:
        cache_errors: the gateway's count of failed cache reads and writes
            (`lambda: gateway.counters.errors`), for `rubricgate_cache_errors_total`; None
            leaves that metric out.
    """

    def __init__(self, cache_errors: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        if cache_errors is not None:
            self.registry.register(_CacheErrors(cache_errors))
        self.requests = Counter("rubricgate_requests", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.responses = Counter("rubricgate_responses", "HTTP responses by status class (2xx, 4xx, 5xx)",
                                 ["class"], registry=self.registry)
        self.errors = Counter("rubricgate_errors", "Error responses by the `error` code of their JSON body",
                              ["code"], registry=self.registry)
        for status_class in STATUS_CLASSES:  # every series exists from the start, at 0
            self.responses.labels(status_class)
        for code in ERROR_CODES:
            self.errors.labels(code)
        self.latency = Histogram("rubricgate_request_seconds", "HTTP request latency", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.items = Counter("rubricgate_items", "Items scored", ["rubric"], registry=self.registry)
        self.unscorable = Counter("rubricgate_unscorable_items", "Items with a null reward", ["rubric"],
                                  registry=self.registry)
        self.votes = Counter("rubricgate_votes", "Judge votes behind scored items", registry=self.registry)
        self.judge_calls = Counter("rubricgate_judge_calls", "Votes that reached the judge (cache misses)",
                                   registry=self.registry)
        self.cache_hits = Counter("rubricgate_cache_hits", "Votes answered from the cache", registry=self.registry)
        self.judge_tokens = Counter("rubricgate_judge_tokens", "Judge tokens behind scored items", ["kind"],
                                    registry=self.registry)
        self.rewards = Histogram("rubricgate_reward", "Rewards returned", registry=self.registry,
                                 buckets=tuple(i / 10 for i in range(11)))
        self.flagged = Counter("rubricgate_flagged_items", "Items per flag (injection_suspected, fallback, ...)",
                               ["flag"], registry=self.registry)

    def observe(self, results: Sequence[RewardResult]) -> None:
        for result in results:
            rubric = result.rubric.split("@")[0]
            self.items.labels(rubric).inc()
            self.votes.inc(result.votes)
            self.judge_calls.inc(result.judge_calls)
            self.cache_hits.inc(result.votes - result.judge_calls)
            if result.judge_calls:
                self.judge_tokens.labels("prompt").inc(result.tokens.prompt)
                self.judge_tokens.labels("completion").inc(result.tokens.completion)
            for flag in result.flags:
                self.flagged.labels(flag).inc()
            if result.reward is None:
                self.unscorable.labels(rubric).inc()
            else:
                self.rewards.observe(result.reward)

    def render(self) -> bytes:
        return generate_latest(self.registry)
