"""The simulator's segment report: the live report's code on the simulator's records.

A simulated launch and a live one read alike: each seed's rounds become a
:class:`~bandit_engine.reporting.DecisionTable` (the chosen bundle, the realized reward, the click
and order events, the user's presence and the city a group-buying profile reveals), and
:func:`~bandit_engine.reporting.report_from_table` computes the same segments, conversion metrics
and intervals as ``bandit report``.

Design difference, stated in every report: the simulator runs each engine on *all* users with
the same random outcomes (paired, common random numbers), where a live holdout splits the users.
Each policy is reported against each control as if they were split groups, so the intervals
(independent groups) are conservative for these positively correlated pairs; the simulator's own
summary has the paired intervals. Users of different seeds are different users (another world).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..holdout import POLICY_GROUP
from ..reporting import Report, report_from_table, table_from_records
from .traces import SimulationResult

__all__ = ["segment_reports"]


def segment_reports(result: SimulationResult) -> dict[str, Report]:
    """``{policy label: report of it (group "policy") against every control}``, pooled over
    seeds."""
    controls = [a.label for a in result.arms if a.role == "control"]
    policies = [a.label for a in result.arms if a.role == "policy"]
    out: dict[str, Report] = {}
    for policy in policies:
        cols: dict[str, list[Any]] = {
            k: [] for k in ("ts", "user", "group", "presence", "city", "bundle")
        }
        reward: list[np.ndarray[Any, Any]] = []
        clicks: list[np.ndarray[Any, Any]] = []
        orders: list[np.ndarray[Any, Any]] = []
        values: list[np.ndarray[Any, Any]] = []
        for seed in result.seeds:
            users = seed.users.tolist()
            for label in (policy, *controls):
                tr = seed.arms[label]
                n = len(users)
                cols["ts"].extend(seed.times.tolist())
                cols["user"].extend(f"s{seed.seed}:{u}" for u in users)
                cols["group"].extend([POLICY_GROUP if label == policy else label] * n)
                if seed.user_presence:
                    cols["presence"].extend(seed.user_presence[u] for u in users)
                    cols["city"].extend(seed.user_city[u] or None for u in users)
                else:
                    cols["presence"].extend([None] * n)
                    cols["city"].extend([None] * n)
                cols["bundle"].extend(tr.bundle if tr.bundle else [""] * n)
                reward.append(tr.reward)
                clicks.append(tr.click.astype(np.int64))
                orders.append(tr.order.astype(np.int64))
                values.append(tr.value)
        table = table_from_records(
            ts=cols["ts"],
            user=cols["user"],
            group=cols["group"],
            presence=cols["presence"],
            city=cols["city"],
            bundle=cols["bundle"],
            reward=np.concatenate(reward) if reward else np.zeros(0),
            events={"click": np.concatenate(clicks), "order": np.concatenate(orders)}
            if clicks
            else {},
            values={"click": np.zeros(sum(len(c) for c in clicks)), "order": np.concatenate(values)}
            if values
            else {},
        )
        report = report_from_table(
            table,
            event_types={"click": (None, False), "order": ("bundle", True)},
        )
        note = (
            "simulated: every engine saw every user (paired); intervals treat the groups as "
            "independent, so they are conservative"
        )
        out[policy] = Report(
            report.window,
            report.empty,
            f"{report.message}; {note}",
            report.totals,
            report.groups,
            None,  # no split, so no sample ratio to check
            report.metrics,
            report.segments,
            report.uplift,
            report.conversion,
        )
    return out
