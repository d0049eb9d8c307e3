"""A report kept up to date incrementally: what the dashboard serves without scanning the log.

:class:`LiveReport` holds the log's decisions as columns (:class:`~bandit_engine.reporting.table.LogColumns`,
about 40 bytes per decision) with their event totals. :meth:`LiveReport.refresh` reads only what
changed since the previous refresh:

* decisions with a journal seq above the last one read (appended);
* events with a seq above the last event seq read (added to their decisions' totals);
* the learned rewards of the decisions still pending in the cache (by primary key);
* propensity and model-version sums of the new decisions (:meth:`decision_health
  <bandit_engine.store.EventLog.decision_health>`: sums, so they add up).

Then it builds the report with the **same** functions as ``bandit report --json``
(:func:`~bandit_engine.reporting.table.assemble`, :func:`~bandit_engine.reporting.aggregate.aggregate`,
:func:`~bandit_engine.reporting.report.build_report`), so the numbers are equal by construction
(``tests/test_dashboard.py`` checks it). When rows were deleted (forget, purge, retention: the log
holds fewer decisions than the cache) the cache is rebuilt from scratch.

Limits: the aggregation itself (``numpy.bincount`` over every cached decision) is redone at each
refresh: about 0.3 s per million decisions on one core, so a refresh is cheap next to a scan but
not free; the server refreshes at most every ``refresh`` seconds, in the background, and page
views read the last built report. The whole log is covered (no window).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..store import EventStore
from .aggregate import Aggregates, aggregate
from .report import Report, build_report, experiment_of
from .table import DecisionTable, FloatArray, IntArray, LogColumns, assemble, events_of

__all__ = ["Health", "LiveReport", "LiveSnapshot"]

#: Decisions whose propensity is below this are "small" in the propensity health figures.
SMALL_PROPENSITY = 0.01


@dataclass
class Health:
    """Propensity health per model (sums over decisions, added up at each refresh) and the
    newest decision's policy version."""

    models: dict[str, list[float]] = field(default_factory=dict)
    newest: tuple[str, str, float] | None = None

    def add(self, rows: list[tuple[str, int, float, float, int, int]]) -> None:
        for model, n, w, w2, small, seq in rows:
            acc = self.models.setdefault(model, [0, 0.0, 0.0, 0, 0])
            acc[0] += n
            acc[1] += w
            acc[2] += w2
            acc[3] += small
            acc[4] = max(acc[4], seq)

    def to_dict(self) -> dict[str, Any]:
        """``decisions``, ``small_propensity_share`` (share with propensity < 0.01) and
        ``effective_sample_size`` ``(sum w)^2 / sum w^2`` of the inverse-propensity weights
        ``w = 1 / p`` (Kish's ESS: ``n`` when all propensities are equal, far below ``n`` when a
        few decisions carry most of the weight of an off-policy estimate), in total and per
        ``model_id`` (newest first); ``current``: the newest decision's policy version."""
        rows = []
        tot = [0, 0.0, 0.0, 0]
        for model, (n, w, w2, small, _) in sorted(self.models.items(), key=lambda kv: -kv[1][4]):
            rows.append(
                {
                    "model_id": model,
                    "decisions": int(n),
                    "small_propensity_share": small / n if n else None,
                    "effective_sample_size": w * w / w2 if w2 > 0 else None,
                }
            )
            tot[0] += int(n)
            tot[1] += w
            tot[2] += w2
            tot[3] += int(small)
        n, w, w2, small = tot
        current = None
        if self.newest is not None:
            version, model, ts = self.newest
            current = {"policy_version": version, "model_id": model, "ts": ts}
        return {
            "small_propensity": SMALL_PROPENSITY,
            "decisions": n,
            "small_propensity_share": small / n if n else None,
            "effective_sample_size": w * w / w2 if w2 > 0 else None,
            "models": rows,
            "current": current,
        }


@dataclass(frozen=True)
class LiveSnapshot:
    """One refresh's result: the report, its aggregates, the health figures, and the marks."""

    report: Report
    aggregates: Aggregates
    table: DecisionTable
    health: dict[str, Any]
    pending: int
    oldest_pending_ts: float | None
    built_at: float
    decision_seq: int
    event_seq: int
    refresh_seconds: float
    rebuilt: bool


class LiveReport:
    """The whole log's report, refreshed incrementally (module docstring).

    Parameters
    ----------
    top_bundles
        As for :func:`~bandit_engine.reporting.report.build_report`.
    chunk
        Page size of the decision reads.
    """

    def __init__(self, *, top_bundles: int = 20, chunk: int = 200_000) -> None:
        self.top_bundles = top_bundles
        self.chunk = chunk
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.cols_ = LogColumns.empty()
        self.events_: dict[str, tuple[IntArray, FloatArray]] = {}
        self.health_ = Health()
        self.decision_seq_ = 0
        self.event_seq_ = 0
        self.snapshot_: LiveSnapshot | None = None

    @property
    def snapshot(self) -> LiveSnapshot | None:
        """The last built snapshot (``None`` before the first refresh)."""
        return self.snapshot_

    def _grow_events(self, n_new: int) -> None:
        for name, (counts, values) in list(self.events_.items()):
            self.events_[name] = (
                np.concatenate([counts, np.zeros(n_new, dtype=np.int64)]),
                np.concatenate([values, np.zeros(n_new)]),
            )

    def _add_events(self, log: EventStore, upto: int) -> None:
        totals = log.event_totals(events_after=self.event_seq_, events_upto=upto)
        n = self.cols_.n
        for name, (counts, values) in events_of(self.cols_.seq, totals).items():
            if name in self.events_:
                c, v = self.events_[name]
                self.events_[name] = (c + counts, v + values)
            else:
                self.events_[name] = (counts, values)
        assert all(c.shape[0] == n for c, _ in self.events_.values())

    def _update_rewards(self, log: EventStore, old_n: int) -> None:
        pending = np.flatnonzero(np.isnan(self.cols_.reward[:old_n]))
        if pending.shape[0] == 0:
            return
        learned = log.rewards_of(self.cols_.seq[pending].tolist())
        if not learned:
            return
        seq = np.asarray([s for s, _ in learned], dtype=np.int64)
        pos = np.searchsorted(self.cols_.seq, seq)
        self.cols_.reward[pos] = np.asarray([r for _, r in learned], dtype=np.float64)

    def refresh(self, log: EventStore) -> LiveSnapshot:
        """Read what changed since the last refresh and rebuild the report (thread-safe: one
        refresh at a time)."""
        with self._lock:
            start = time.perf_counter()
            d_seq, e_seq, count = log.live_marks()
            rebuilt = False
            if count < self.cols_.n or d_seq < self.decision_seq_ or e_seq < self.event_seq_:
                self._reset()  # rows were deleted: start again
                rebuilt = True
            old_n = self.cols_.n
            # rewards first: a decision read below already carries its reward
            self._update_rewards(log, old_n)
            added = self.cols_.read(log, chunk=self.chunk, after=self.decision_seq_, upto=d_seq)
            self._grow_events(added)
            self._add_events(log, e_seq)
            self.health_.add(log.decision_health(after=self.decision_seq_, upto=d_seq))
            if self.cols_.n != count:
                # a deletion raced with new rows (same count, different rows): start again
                self._reset()
                self.cols_.read(log, chunk=self.chunk, upto=d_seq)
                self._grow_events(self.cols_.n)
                self._add_events(log, e_seq)
                self.health_.add(log.decision_health(upto=d_seq))
                rebuilt = True
            self.decision_seq_ = d_seq
            self.event_seq_ = e_seq
            self.health_.newest = log.decision_at(d_seq) if d_seq else None
            shares, types = experiment_of(log)
            table = assemble(self.cols_, self.events_)
            agg = aggregate(table, types)
            rep = build_report(agg, shares=shares, top_bundles=self.top_bundles)
            pending = np.flatnonzero(np.isnan(self.cols_.reward))
            oldest = float(self.cols_.day[pending[0]]) * 86_400.0 if pending.shape[0] else None
            self.snapshot_ = LiveSnapshot(
                report=rep,
                aggregates=agg,
                table=table,
                health=self.health_.to_dict(),
                pending=int(pending.shape[0]),
                oldest_pending_ts=oldest,
                built_at=time.time(),
                decision_seq=d_seq,
                event_seq=e_seq,
                refresh_seconds=time.perf_counter() - start,
                rebuilt=rebuilt,
            )
            return self.snapshot_
