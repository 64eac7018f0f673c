"""Prometheus metrics of one server, in its own registry (several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from rubricgate.cache.cached import CacheCounters
from rubricgate.models.reward import RewardResult


class _CacheErrors(Collector):
    """`rubricgate_cache_errors_total`, read from the gateway's cache counters at scrape time."""

    def __init__(self, counters: Callable[[], CacheCounters]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("rubricgate_cache_errors", "Cache reads and writes that failed (the votes "
                                  "behind them were judged uncached, flag cache_unavailable)",
                                  value=self._counters().errors)


class ServerMetrics:
    """Requests, latency, judge calls, cache hits and errors, votes, unscorable items, flags, rewards.

    Args:
        cache_counters: the gateway's cache counters (`lambda: gateway.counters`), for
            `rubricgate_cache_errors_total`; None leaves that metric out.
    """

    def __init__(self, cache_counters: Callable[[], CacheCounters] | None = None) -> None:
        self.registry = CollectorRegistry()
        if cache_counters is not None:
            self.registry.register(_CacheErrors(cache_counters))
        self.requests = Counter("rubricgate_requests", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
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
