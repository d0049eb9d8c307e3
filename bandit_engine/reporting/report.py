"""The report: policy against each holdout group, per segment, from the aggregates only.

:func:`build_report` turns :class:`~bandit_engine.reporting.aggregate.Aggregates` into a
:class:`Report` (plain data: ``to_dict`` is what ``bandit report --json`` prints);
:func:`report_from_log` reads an event log (SQLite or PostgreSQL) and the experiment it records
(``meta``: the holdout plan and the declared event types, written by
:class:`~bandit_engine.service.LoggedEngine`); :func:`report_from_table` serves the simulator.
A window without decisions gives an empty report that says so, never an error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..holdout import POLICY_GROUP, HoldoutPlan
from ..store import EventStore
from .aggregate import Aggregates, EventTypes, aggregate
from .stats import RatioStat, srm_test, uplift
from .table import DecisionTable, table_from_log

__all__ = ["Report", "build_report", "experiment_of", "report_from_log", "report_from_table"]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def _num(x: float) -> float | None:
    """JSON has no NaN: undefined numbers are ``null``."""
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class Report:
    """What ``bandit report`` shows (``to_dict`` is its JSON)."""

    window: dict[str, Any]
    empty: bool
    message: str
    totals: dict[str, Any]
    groups: list[dict[str, Any]]
    srm: dict[str, Any] | None
    metrics: list[str]
    segments: list[dict[str, Any]] = field(default_factory=list)
    uplift: list[dict[str, Any]] = field(default_factory=list)
    conversion: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "empty": self.empty,
            "message": self.message,
            "totals": self.totals,
            "groups": self.groups,
            "srm": self.srm,
            "metrics": self.metrics,
            "segments": self.segments,
            "uplift": self.uplift,
            "conversion": self.conversion,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)


def _stat(row: Mapping[str, Any]) -> RatioStat:
    return RatioStat.from_sums(
        int(row["clusters"]),
        float(row["n"]),
        float(row["y"]),
        float(row["nn"]),
        float(row["yy"]),
        float(row["ny"]),
    )


def build_report(
    agg: Aggregates,
    *,
    shares: Mapping[str, float] | None = None,
    since: float | None = None,
    until: float | None = None,
    top_bundles: int = 20,
) -> Report:
    """The report of the aggregates. ``shares`` (``{group: configured share}``, the served
    policy's included) enables the sample-ratio check; ``top_bundles`` bounds the bundle
    breakdown to the most-decided bundles."""
    window = {"since": _iso(since), "until": _iso(until)}
    totals = {
        "decisions": agg.n_decisions,
        "users": agg.n_users,
        "pending": agg.n_pending,
        "events": dict(agg.event_counts),
    }
    if agg.n_decisions == 0:
        where = f"between {window['since'] or 'the start'} and {window['until'] or 'the end'}"
        return Report(
            window, True, f"no decisions {where}: nothing to report", totals, [], None, []
        )
    cells = agg.cells
    overall = cells[(cells["breakdown"] == "overall") & (cells["metric"] == "reward")]
    users = {str(r["group"]): int(r["clusters"]) for _, r in overall.iterrows()}
    decisions_by_group = (
        cells[(cells["breakdown"] == "overall") & (cells["metric"] == agg.metrics[-1])]
        .set_index("group")["n"]
        .to_dict()
    )
    total_users = sum(users.values())
    groups = []
    names = sorted(set(users) | set(shares or {}), key=lambda g: (g != POLICY_GROUP, g))
    for g in names:
        groups.append(
            {
                "group": g,
                "configured_share": None if shares is None else _num(shares.get(g, 0.0)),
                "users": users.get(g, 0),
                "observed_share": users.get(g, 0) / total_users if total_users else None,
                "decisions": int(decisions_by_group.get(g, 0)),
            }
        )
    srm = None
    if shares is not None:
        raw = srm_test(users, shares)
        srm = {k: (_num(v) if isinstance(v, float) else v) for k, v in raw.items()}
    # the bundle breakdown: only the most-decided bundles
    bundles = cells[(cells["breakdown"] == "bundle") & (cells["metric"] == "reward")]
    keep = set(bundles.groupby("segment")["clusters"].sum().nlargest(top_bundles).index)
    cells = cells[(cells["breakdown"] != "bundle") | cells["segment"].isin(keep)]
    segments = []
    stats: dict[tuple[str, str, str, str], RatioStat] = {}
    for rec in cells.to_dict("records"):
        row = {str(k): v for k, v in rec.items()}
        st = _stat(row)
        key = (str(row["breakdown"]), str(row["segment"]), str(row["group"]), str(row["metric"]))
        stats[key] = st
        low, high = st.interval()
        segments.append(
            {
                "breakdown": key[0],
                "segment": key[1],
                "group": key[2],
                "metric": key[3],
                "users": st.clusters,
                "decisions": _num(st.n),
                "value": _num(st.value),
                "low": _num(low),
                "high": _num(high),
            }
        )
    uplifts = []
    holdouts = [g for g in agg.groups if g != POLICY_GROUP]
    for (b, s, g, m), st in stats.items():
        if g != POLICY_GROUP:
            continue
        for h in holdouts:
            control = stats.get((b, s, h, m))
            if control is None:
                continue
            u = uplift(st, control)
            uplifts.append(
                {
                    "breakdown": b,
                    "segment": s,
                    "holdout": h,
                    "metric": m,
                    "policy": _num(st.value),
                    "control": _num(control.value),
                    "policy_users": st.clusters,
                    "control_users": control.clusters,
                    **{k: _num(v) for k, v in u.items()},
                }
            )
    conversion = []
    for crow in agg.conversions.to_dict("records"):
        row = {str(k): v for k, v in crow.items()}
        n = int(row["users"])
        conversion.append(
            {
                "segment": str(row["segment"]),
                "group": str(row["group"]),
                "users": n,
                "deal_converters": int(row["deal"]),
                "course_converters": int(row["course"]),
                "both_converters": int(row["both"]),
                "deal_rate": int(row["deal"]) / n if n else None,
                "course_rate": int(row["course"]) / n if n else None,
            }
        )
    message = f"{agg.n_decisions:,} decisions of {agg.n_users:,} users"
    if srm is not None and srm.get("mismatch"):
        message += (
            "; SAMPLE RATIO MISMATCH (p < 0.001): users are not split as configured, so the "
            "uplifts below are not trustworthy"
        )
    return Report(
        window,
        False,
        message,
        totals,
        groups,
        srm,
        list(agg.metrics),
        segments,
        uplifts,
        conversion,
    )


def experiment_of(
    log: EventStore,
) -> tuple[dict[str, float] | None, dict[str, tuple[str | None, bool]]]:
    """The configured shares (``None`` without a holdout plan) and the event types the log's
    ``meta`` records."""
    plan_text = log.get_meta("holdout_plan")
    shares = HoldoutPlan.from_dict(json.loads(plan_text)).shares() if plan_text else None
    types_text = log.get_meta("event_types")
    types: dict[str, tuple[str | None, bool]] = {}
    if types_text:
        for name, kind in json.loads(types_text).items():
            types[str(name)] = (kind.get("platform"), bool(kind.get("conversion")))
    return shares, types


def sample_ratio(
    log: EventStore, *, since: float | None = None, until: float | None = None
) -> dict[str, Any]:
    """The holdout plan the log records, users and decisions per group, and the sample-ratio
    check (one SQL ``GROUP BY``; what the server shows at ``/v1/experiment``)."""
    shares, types = experiment_of(log)
    counts = log.group_counts(since=since, until=until)
    users = {g: u for g, u, _ in counts}
    out: dict[str, Any] = {
        "configured_shares": shares,
        "groups": [{"group": g, "users": u, "decisions": n} for g, u, n in counts],
        "event_types": {t: {"platform": p, "conversion": c} for t, (p, c) in types.items()},
        "srm": None,
    }
    if shares is not None:
        raw = srm_test(users, shares)
        out["srm"] = {k: (_num(v) if isinstance(v, float) else v) for k, v in raw.items()}
    return out


def report_from_table(
    table: DecisionTable,
    *,
    shares: Mapping[str, float] | None = None,
    event_types: EventTypes | None = None,
    since: float | None = None,
    until: float | None = None,
    top_bundles: int = 20,
) -> Report:
    """Aggregate a table and report it (the simulator's path)."""
    return build_report(
        aggregate(table, event_types),
        shares=shares,
        since=since,
        until=until,
        top_bundles=top_bundles,
    )


def report_from_log(
    log: EventStore,
    *,
    since: float | None = None,
    until: float | None = None,
    top_bundles: int = 20,
    chunk: int = 500_000,
) -> tuple[Report, Aggregates]:
    """Read the log's decisions in ``[since, until)`` and report them with the experiment its
    ``meta`` records. Returns the report and the aggregates it was built from."""
    shares, types = experiment_of(log)
    table = table_from_log(log, since=since, until=until, chunk=chunk)
    agg = aggregate(table, types)
    return (
        build_report(agg, shares=shares, since=since, until=until, top_bundles=top_bundles),
        agg,
    )


def frames_of(report: Report) -> dict[str, pd.DataFrame]:
    """The report's tables as DataFrames (``segments``, ``uplift``, ``conversion``, ``groups``)."""
    return {
        "groups": pd.DataFrame(report.groups),
        "segments": pd.DataFrame(report.segments),
        "uplift": pd.DataFrame(report.uplift),
        "conversion": pd.DataFrame(report.conversion),
    }
