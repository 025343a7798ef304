"""``GET /metrics`` of the reward server, in the Prometheus text format (prometheus-client, the ``serve`` extra).

Counters and histograms of the traffic, and a drift watch over what the server scored, so a team running OpenRLHF
or verl against ``rewardlab serve`` sees the reward distribution move without touching its trainer:

=================================================  ===============================================================
``rewardlab_requests_total{endpoint,status}``      requests answered, by endpoint and HTTP status
``rewardlab_items_total{endpoint}``                items (texts or prompt/response pairs) scored
``rewardlab_request_seconds{endpoint}``            request latency histogram
``rewardlab_batch_items``                          items per model call (histogram)
``rewardlab_queue_items``                          items waiting for the scoring thread (gauge)
``rewardlab_too_long_items_total{policy}``         over-long items and what was done with them
``rewardlab_window_reward_{mean,std,q10,q50,q90}``  the last closed window of ``window_items`` rewards
``rewardlab_window_length_mean``                   mean reply length (words) in that window
``rewardlab_window_reward_drift``                  1-Wasserstein distance of that window's rewards to the first
                                                   window's, in first-window stds (:mod:`rewardlab.monitor.stats`)
``rewardlab_window_length_ratio``                  mean length over the first window's
``rewardlab_windows_total``                        windows closed so far
=================================================  ===============================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..monitor.stats import reply_length, summarize, wasserstein_distance

__all__ = ["MetricsMiddleware", "RewardWindow", "ServerMetrics"]


class RewardWindow:
    """Tumbling windows of ``size`` scored items; the first window is the reference for drift.

    >>> w = RewardWindow(size=4)
    >>> w.add([0.0, 1.0, 2.0, 3.0], ["a", "a b", "a", "a b"]) is not None, w.add([10.0, 11.0, 12.0, 13.0], ["a"] * 4)["reward_drift"]
    (True, 7.745966692414834)
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._rewards: list[float] = []
        self._lengths: list[int] = []
        self._reference: tuple[list[float], float, float] | None = None
        self.windows = 0
        self.latest: dict[str, float] = {}

    def add(self, rewards: Sequence[float | None], replies: Sequence[str]) -> dict[str, float] | None:
        """Add scored items; returns the statistics of a window that closed (else None)."""
        self._rewards += [float(r) for r in rewards if r is not None]
        self._lengths += [reply_length(t) for t, r in zip(replies, rewards) if r is not None]
        closed = None
        while len(self._rewards) >= self.size:
            rewards_w, self._rewards = self._rewards[: self.size], self._rewards[self.size:]
            lengths_w, self._lengths = self._lengths[: self.size], self._lengths[self.size:]
            closed = self._close(rewards_w, lengths_w)
        return closed

    def _close(self, rewards: list[float], lengths: list[int]) -> dict[str, float]:
        length_mean = float(np.mean(lengths))
        if self._reference is None:
            self._reference = (rewards, float(np.std(rewards, ddof=1)), length_mean)
        ref_rewards, ref_std, ref_length = self._reference
        out = {f"reward_{k}": v for k, v in summarize(rewards).items()}
        out["length_mean"] = length_mean
        out["reward_drift"] = wasserstein_distance(rewards, ref_rewards) / ref_std if ref_std > 0 else float("nan")
        out["length_ratio"] = length_mean / ref_length if ref_length > 0 else float("nan")
        self.windows += 1
        self.latest = out
        return out


class ServerMetrics:
    """The server's Prometheus registry and the hooks that feed it (one per app, so tests can run several)."""

    def __init__(self, window_items: int = 256):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("rewardlab_requests", "Requests answered", ["endpoint", "status"], registry=self.registry)
        self.items = Counter("rewardlab_items", "Items scored", ["endpoint"], registry=self.registry)
        self.latency = Histogram("rewardlab_request_seconds", "Request latency", ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_items = Histogram("rewardlab_batch_items", "Items per model call", registry=self.registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
        self.queue = Gauge("rewardlab_queue_items", "Items waiting to be scored", registry=self.registry)
        self.too_long = Counter("rewardlab_too_long_items", "Over-long items", ["policy"], registry=self.registry)
        self.window = RewardWindow(window_items)
        self._window_gauges = {name: Gauge(f"rewardlab_window_{name}", f"Last closed window: {name}", registry=self.registry)
                               for name in ("reward_mean", "reward_std", "reward_q10", "reward_q50", "reward_q90",
                                            "length_mean", "reward_drift", "length_ratio")}
        self.windows = Gauge("rewardlab_windows_total", "Reward windows closed", registry=self.registry)
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Compute one window's statistics on throwaway values (the real windows are untouched), so what they import
        (scipy.stats: about 0.6 s on 2 cores) loads before the server is ready: the first window closes on the scoring
        thread, and that import used to stall every request in flight once per server (the p99 at 8 one-query
        requests in flight, docs/benchmarks.md)."""
        RewardWindow(size=2).add([0.0, 1.0], ["a", "a b"])

    def observe_scored(self, rewards: Sequence[float | None], replies: Sequence[str]) -> None:
        """Called on the scoring thread after each model call with what it scored."""
        self.batch_items.observe(len(rewards))
        with self._lock:
            closed = self.window.add(rewards, replies)
        if closed is not None:
            for name, value in closed.items():
                self._window_gauges[name].set(value)
            self.windows.set(self.window.windows)

    def render(self, queue_items: int) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.queue.set(queue_items)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request's status and latency per endpoint (``/metrics`` itself excluded)."""

    ENDPOINTS = ("/get_reward", "/v1/score", "/health", "/v1/metadata")

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope["path"] if scope["path"] in self.ENDPOINTS else "other"
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
