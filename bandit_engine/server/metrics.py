"""Prometheus text-format metrics (exposition format 0.0.4), written by hand.

Why not ``prometheus_client``: the server needs a handful of counters and one histogram family, per
app instance (tests build many apps in one process, and ``prometheus_client``'s default global
registry would mix them), single-process. That is about a hundred lines with no dependency.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable

__all__ = ["LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


class Metrics:
    """Counters, gauges and latency histograms of one server instance (thread-safe)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self._lock = threading.Lock()
        self.buckets = buckets
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._hist: dict[tuple[str, ...], list[float]] = {}  # route -> bucket counts + sum + count
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        for name, text in (
            ("bandit_decisions_total", "Decisions served and logged."),
            ("bandit_events_total", "Outcome events received, by engine status."),
            (
                "bandit_rewards_learned_total",
                "Decisions whose attribution window closed, by status.",
            ),
            ("bandit_late_events_total", "Events that arrived after their attribution window."),
            ("bandit_checkpoints_total", "Model checkpoints written."),
            (
                "bandit_commits_total",
                "Event log transactions committed by the server (group commit).",
            ),
            ("bandit_http_requests_total", "HTTP requests by route and status code."),
        ):
            self._help[name] = ("counter", text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` to a counter."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        self._gauges[name] = (help_text, read)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count a request and record its latency."""
        i = bisect.bisect_left(self.buckets, seconds)
        key = (route,)
        with self._lock:
            ck = ("bandit_http_requests_total", (("code", str(status)), ("route", route)))
            self._counters[ck] = self._counters.get(ck, 0.0) + 1.0
            h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [0.0] * (len(self.buckets) + 2)
            if i < len(self.buckets):
                h[i] += 1.0
            h[-2] += seconds
            h[-1] += 1.0

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 when never incremented)."""
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            hist = {k: list(v) for k, v in self._hist.items()}
        for name, (kind, text) in self._help.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            series = sorted((k[1], v) for k, v in counters.items() if k[0] == name)
            if not series and name != "bandit_http_requests_total":
                lines.append(f"{name} 0")
            for labels, v in series:
                lines.append(f"{name}{_labels(labels)} {_num(v)}")
        for name, (text, read) in sorted(self._gauges.items()):
            try:
                v = float(read())
            except Exception:  # a gauge must never break the scrape
                v = math.nan
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {_num(v) if not math.isnan(v) else 'NaN'}")
        hname = "bandit_request_duration_seconds"
        lines.append(f"# HELP {hname} Latency of HTTP requests, by route.")
        lines.append(f"# TYPE {hname} histogram")
        for (route,), h in sorted(hist.items()):
            cumulative = 0.0
            for b, c in zip(self.buckets, h[: len(self.buckets)], strict=True):
                cumulative += c
                lines.append(
                    f"{hname}_bucket{_labels([('le', _num(b)), ('route', route)])} "
                    f"{_num(cumulative)}"
                )
            lines.append(
                f"{hname}_bucket{_labels([('le', '+Inf'), ('route', route)])} {_num(h[-1])}"
            )
            lines.append(f"{hname}_sum{_labels([('route', route)])} {h[-2]!r}")
            lines.append(f"{hname}_count{_labels([('route', route)])} {_num(h[-1])}")
        return "\n".join(lines) + "\n"
