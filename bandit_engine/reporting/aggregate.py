"""Aggregates: per-user sums reduced to sufficient statistics per (breakdown, segment, group).

Everything a report says is computed from two tables built here, never from rows again:

* ``cells``: for each breakdown (``overall``, ``day``, ``presence``, ``city``, ``user_type``,
  ``bundle``), segment value, group and metric, over the users (clusters) ``u`` of that cell with
  ``N_u`` decisions (the metric's denominator) and ``Y_u`` its numerator summed over them:
  ``clusters`` (number of users), ``n = sum N_u``, ``y = sum Y_u``, ``nn = sum N_u^2``,
  ``yy = sum Y_u^2``, ``ny = sum N_u Y_u``.
* ``conversions``: per platform-presence segment and group, the users and how many of them
  converted on the group-buying platform (a deal), on the knowledge platform (a course), on both.

These are counts and sums, so a differentially private release (issue 15) can add calibrated
noise to them and pass the noised tables on to :func:`~bandit_engine.reporting.report.build_report`
unchanged (each user contributes to one cell per breakdown; bounding ``N_u`` and ``Y_u`` bounds the
sensitivity).

Metrics are ratios of per-user sums (the ratio estimator of Deng, Lu & Litz 2018): ``reward``
(learned reward per closed decision: pending decisions are left out of numerator and
denominator), and per decision the count of each event type and ``value`` (sum of event values).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .table import DAY, DecisionTable

__all__ = ["BREAKDOWNS", "Aggregates", "EventTypes", "aggregate"]

BREAKDOWNS = ("overall", "day", "presence", "city", "user_type", "bundle")
#: ``{event type: (platform or None, is a conversion)}``
EventTypes = Mapping[str, tuple[str | None, bool]]
DEFAULT_EVENT_TYPES: dict[str, tuple[str | None, bool]] = {
    "click": (None, False),
    "order": ("bundle", True),
}
CELL_COLUMNS = ["breakdown", "segment", "group", "metric", "clusters", "n", "y", "nn", "yy", "ny"]
CONVERSION_COLUMNS = ["segment", "group", "users", "deal", "course", "both"]


@dataclass(frozen=True, eq=False)
class Aggregates:
    """The report's intermediate (see the module docstring): noise these for a private release."""

    cells: pd.DataFrame
    conversions: pd.DataFrame
    groups: tuple[str, ...]
    metrics: tuple[str, ...]
    n_decisions: int
    n_users: int
    n_pending: int
    event_counts: Mapping[str, int]


def _segments(table: DecisionTable, breakdown: str) -> tuple[NDArray[np.int64], list[str]]:
    n = table.n
    if breakdown == "overall":
        return np.zeros(n, dtype=np.int64), ["all"]
    if breakdown == "day":
        day = np.floor(table.ts / DAY).astype(np.int64)
        if n == 0:
            return day, []
        d0 = int(day.min())
        names = [
            (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=d)).date().isoformat()
            for d in range(d0, int(day.max()) + 1)
        ]
        return day - d0, names
    if breakdown == "presence":
        return table.presence, list(table.presence_names)
    if breakdown == "city":
        return table.city, list(table.city_names)
    if breakdown == "user_type":
        return np.where(table.new, 0, 1).astype(np.int64), ["new", "returning"]
    if breakdown == "bundle":
        return table.bundle, list(table.bundle_names)
    raise ValueError(breakdown)


def _metric_columns(
    table: DecisionTable,
) -> list[tuple[str, NDArray[np.float64], NDArray[np.float64]]]:
    """``(metric, numerator, denominator)`` per decision."""
    closed = ~np.isnan(table.reward)
    ones = np.ones(table.n)
    out = [("reward", np.where(closed, table.reward, 0.0), closed.astype(np.float64))]
    for name in sorted(table.events):
        out.append((name, table.events[name].astype(np.float64), ones))
    total = np.zeros(table.n)
    for v in table.values.values():
        total += v
    # always last, with one per decision as denominator (the report counts decisions with it)
    out.append(("value", total, ones))
    return out


def _cluster_cells(
    seg: NDArray[np.int64], n_seg: int, table: DecisionTable
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Cluster index per decision, cell (``seg * G + group``) per cluster, clusters per cell."""
    n_groups = max(len(table.group_names), 1)
    n_users = int(table.user.max()) + 1 if table.n else 1
    key = (seg * n_groups + table.group) * n_users + table.user
    slots = n_seg * n_groups * n_users
    if slots <= 8 * max(table.n, 1):
        # few segments or days: the key itself indexes a dense table (a byte per slot to mark
        # the occupied ones, then an int32 cluster number per slot), about 3x faster than
        # hashing 10^7 keys (measured on the day breakdown of benchmarks/bench_report.py)
        occ = np.zeros(slots, dtype=bool)
        occ[key] = True
        occupied = np.flatnonzero(occ)
        del occ
        slot_to_cluster = np.empty(slots, dtype=np.int32)
        slot_to_cluster[occupied] = np.arange(occupied.shape[0], dtype=np.int32)
        inv = slot_to_cluster[key].astype(np.int64)
        del slot_to_cluster
        uniq: NDArray[np.int64] = occupied
    else:
        # hash-based factorisation: O(n), no sort of the 10^7 keys
        codes, found = pd.factorize(key)
        inv = np.asarray(codes, dtype=np.int64)
        uniq = np.asarray(found, dtype=np.int64)
    cluster_cell = uniq // n_users
    per_cell = np.bincount(cluster_cell, minlength=n_seg * n_groups).astype(np.int64, copy=False)
    return inv, cluster_cell, per_cell


def aggregate(table: DecisionTable, event_types: EventTypes | None = None) -> Aggregates:
    """The sufficient statistics of every breakdown, and the conversions (module docstring)."""
    kinds = dict(DEFAULT_EVENT_TYPES)
    kinds.update(event_types or {})
    groups = table.group_names
    n_groups = max(len(groups), 1)
    metrics = _metric_columns(table)
    frames: list[pd.DataFrame] = []
    for breakdown in BREAKDOWNS:
        seg, names = _segments(table, breakdown)
        n_seg = len(names)
        if table.n == 0 or n_seg == 0:
            continue
        inv, cluster_cell, per_cell = _cluster_cells(seg, n_seg, table)
        n_clusters = cluster_cell.shape[0]
        n_cells = n_seg * n_groups
        present = np.flatnonzero(per_cell)
        # the denominators are shared (one per decision, or closed decisions): sum each once
        per_den: dict[int, tuple[Any, Any, Any]] = {}
        for metric, num, den in metrics:
            Y = np.bincount(inv, weights=num, minlength=n_clusters)
            if id(den) not in per_den:
                n_u = np.bincount(inv, weights=den, minlength=n_clusters)
                per_den[id(den)] = (
                    n_u,
                    np.bincount(cluster_cell, weights=n_u, minlength=n_cells),
                    np.bincount(cluster_cell, weights=n_u * n_u, minlength=n_cells),
                )
            N, n_sum, nn_sum = per_den[id(den)]
            stats = {
                "n": n_sum,
                "y": np.bincount(cluster_cell, weights=Y, minlength=n_cells),
                "nn": nn_sum,
                "yy": np.bincount(cluster_cell, weights=Y * Y, minlength=n_cells),
                "ny": np.bincount(cluster_cell, weights=N * Y, minlength=n_cells),
            }
            frames.append(
                pd.DataFrame(
                    {
                        "breakdown": breakdown,
                        "segment": [names[c // n_groups] for c in present],
                        "group": [groups[c % n_groups] for c in present],
                        "metric": metric,
                        "clusters": per_cell[present],
                        **{k: v[present] for k, v in stats.items()},
                    }
                )
            )
    cells = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CELL_COLUMNS)
    return Aggregates(
        cells=cells,
        conversions=_conversions(table, kinds),
        groups=groups,
        metrics=tuple(m for m, _, _ in metrics),
        n_decisions=table.n,
        n_users=table.n_users,
        n_pending=int(np.isnan(table.reward).sum()),
        event_counts={k: int(v.sum()) for k, v in sorted(table.events.items())},
    )


def _conversions(
    table: DecisionTable, kinds: Mapping[str, tuple[str | None, bool]]
) -> pd.DataFrame:
    """Users per presence segment and group, and how many converted on each platform."""
    if table.n == 0:
        return pd.DataFrame(columns=CONVERSION_COLUMNS)
    deal = np.zeros(table.n)
    course = np.zeros(table.n)
    for name, counts in table.events.items():
        platform, conversion = kinds.get(name, (None, False))
        if not conversion:
            continue
        if platform in ("groupbuy", "bundle"):
            deal += counts
        if platform in ("knowledge", "bundle"):
            course += counts
    names = list(table.presence_names)
    inv, cluster_cell, per_cell = _cluster_cells(table.presence, len(names), table)
    n_clusters = cluster_cell.shape[0]
    d = np.bincount(inv, weights=deal, minlength=n_clusters) > 0
    c = np.bincount(inv, weights=course, minlength=n_clusters) > 0
    n_groups = max(len(table.group_names), 1)
    n_cells = len(names) * n_groups
    present = np.flatnonzero(per_cell)
    return pd.DataFrame(
        {
            "segment": [names[k // n_groups] for k in present],
            "group": [table.group_names[k % n_groups] for k in present],
            "users": per_cell[present],
            "deal": np.bincount(cluster_cell, weights=d, minlength=n_cells)[present].astype(int),
            "course": np.bincount(cluster_cell, weights=c, minlength=n_cells)[present].astype(int),
            "both": np.bincount(cluster_cell, weights=d & c, minlength=n_cells)[present].astype(
                int
            ),
        }
    )
