"""A differentially private report: counts, rates and uplifts per holdout group (issue 15).

:func:`dp_report` releases, from a :class:`~bandit_engine.reporting.table.DecisionTable` (the
same one ``bandit report`` aggregates), through :mod:`bandit_engine.privacy.dp` (OpenDP):

* per group: the number of decisions (:func:`~bandit_engine.privacy.dp.dp_count`) and, per event
  type, its rate per decision (:func:`~bandit_engine.privacy.dp.dp_rate`: CTR for ``click``);
* per holdout group: the uplift of each rate, policy minus holdout
  (:func:`~bandit_engine.privacy.dp.dp_uplift`).

Unit of privacy and sensitivity: the **user** (one pseudonym; an anonymous decision is its own
user). Each user's decisions are clipped to ``cap`` and their events of a type to their clipped
decisions, so adding or removing one user moves a count by at most ``cap`` (the sensitivity);
OpenDP's (discrete) Laplace mechanism at the scale its privacy map certifies adds the noise. The
report's ``epsilon`` is split evenly over its ``k`` releases (basic sequential composition:
``k`` releases at ``epsilon / k`` are ``epsilon``-DP together). Every release is pure
epsilon-DP; ``delta`` is recorded as asked (an ``(epsilon, 0)`` guarantee implies
``(epsilon, delta)`` for any ``delta``) but buys nothing with these mechanisms.

Accounting: the whole report is spent from the log's
:class:`~bandit_engine.store.ledger.PrivacyLedger` **once, before any noise is drawn** (one ledger
row naming every release in its details), so a report past the budget is refused whole and
nothing is released that was not accounted. Which groups and event types are released comes from
the experiment's configuration (the log's ``meta``) where it is recorded, not from the data.

Error bounds: each release carries OpenDP's accuracy at ``confidence`` (see
:mod:`bandit_engine.privacy.dp`), relative to the exact statistic on the **clipped** data;
users over the cap bias it, and how many were clipped is not released (it is not private).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..holdout import POLICY_GROUP
from ..privacy.dp import Release, dp_count, dp_rate, dp_uplift
from ..store.ledger import PrivacyLedger
from .table import DecisionTable

__all__ = ["DpReport", "dp_report", "planned_releases"]


@dataclass(frozen=True)
class DpReport:
    """What ``bandit report --dp-epsilon`` prints (``to_dict`` is its JSON)."""

    epsilon: float
    delta: float
    cap: int
    releases: list[dict[str, Any]]
    spent: tuple[float, float]
    budget: tuple[float, float]
    window: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dp": True,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "cap": self.cap,
            "unit": "user",
            "composition": f"basic: {len(self.releases)} releases at epsilon "
            f"{self.epsilon / max(len(self.releases), 1):.6g} each",
            "window": self.window,
            "releases": self.releases,
            "ledger": {
                "spent_epsilon": self.spent[0],
                "spent_delta": self.spent[1],
                "total_epsilon": self.budget[0],
                "total_delta": self.budget[1],
            },
        }

    def to_json(self) -> str:
        def clean(x: Any) -> Any:
            if isinstance(x, float) and not np.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return json.dumps(clean(self.to_dict()), indent=2, allow_nan=False)


def planned_releases(
    groups: Sequence[str], event_types: Sequence[str]
) -> list[tuple[str, str, str, str | None]]:
    """``(kind, group, metric, holdout)`` of every release, in order: counts, rates, uplifts."""
    out: list[tuple[str, str, str, str | None]] = []
    for g in groups:
        out.append(("count", g, "decisions", None))
    for g in groups:
        for t in event_types:
            out.append(("rate", g, t, None))
    for h in groups:
        if h == POLICY_GROUP:
            continue
        for t in event_types:
            out.append(("uplift", POLICY_GROUP, t, h))
    return out


def _per_user(table: DecisionTable, group: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per user of ``group``: decisions, and events of each type (integer arrays)."""
    if group not in table.group_names or table.n == 0:
        return np.zeros(0, dtype=np.int64), {t: np.zeros(0, np.int64) for t in table.events}
    sel = table.group == table.group_names.index(group)
    _, inv = np.unique(table.user[sel], return_inverse=True)
    k = int(inv.max()) + 1 if inv.shape[0] else 0
    n_u = np.bincount(inv, minlength=k).astype(np.int64)
    ev = {
        t: np.bincount(inv, weights=c[sel], minlength=k).astype(np.int64)
        for t, c in table.events.items()
    }
    return n_u, ev


def dp_report(
    table: DecisionTable,
    *,
    epsilon: float,
    ledger: PrivacyLedger,
    cap: int = 20,
    delta: float = 0.0,
    beta: float = 0.05,
    groups: Sequence[str] | None = None,
    event_types: Sequence[str] | None = None,
    label: str = "report",
    window: Mapping[str, Any] | None = None,
) -> DpReport:
    """Release the counts, rates and uplifts of ``table`` at ``epsilon`` in total (module
    docstring), spending ``(epsilon, delta)`` from ``ledger`` first.

    ``groups`` / ``event_types`` default to the table's (pass the configured ones to keep the
    list of releases independent of the data)."""
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or epsilon <= 0
    ):
        raise ConfigError.for_field("dp_epsilon", epsilon, "must be a finite number > 0")
    eps = float(epsilon)
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < 1:
        raise ConfigError.for_field("dp_delta", delta, "must be in [0, 1)")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError.for_field("dp_cap", cap, "must be an integer >= 1")
    names = list(groups) if groups is not None else list(table.group_names) or [POLICY_GROUP]
    names = sorted(set(names), key=lambda g: (g != POLICY_GROUP, g))
    types = sorted(event_types) if event_types is not None else sorted(table.events)
    plan = planned_releases(names, types)
    each = eps / len(plan)
    details = json.dumps(
        {"releases": [list(p) for p in plan], "epsilon_each": each, "cap": cap},
        sort_keys=True,
    )
    # spend first, whole: past the budget nothing below runs (ConflictError)
    ledger.spend(
        eps,
        delta,
        label=label,
        mechanism=f"{len(plan)} OpenDP releases (discrete Laplace), basic composition",
        details=details,
    )
    per = {g: _per_user(table, g) for g in names}
    out: list[dict[str, Any]] = []
    for kind, g, metric, h in plan:
        rel: Release
        if kind == "count":
            rel = dp_count(per[g][0], epsilon=each, cap=cap, beta=beta, label=f"{g} decisions")
        elif kind == "rate":
            n_u, ev = per[g]
            num = ev.get(metric, np.zeros_like(n_u))
            rel = dp_rate(num, n_u, epsilon=each, cap=cap, beta=beta, label=f"{g} {metric} rate")
        else:
            assert h is not None
            (n_t, ev_t), (n_c, ev_c) = per[POLICY_GROUP], per[h]
            rel = dp_uplift(
                (ev_t.get(metric, np.zeros_like(n_t)), n_t),
                (ev_c.get(metric, np.zeros_like(n_c)), n_c),
                epsilon=each,
                cap=cap,
                beta=beta,
                label=f"{metric} rate uplift vs {h}",
            )
        out.append(
            {
                "kind": kind,
                "group": g,
                "holdout": h,
                "metric": metric,
                "label": rel.label,
                "value": rel.value,
                "error_bound": rel.error_bound,
                "confidence": rel.confidence,
                "epsilon": rel.epsilon,
                "mechanism": rel.mechanism,
            }
        )
    return DpReport(
        epsilon=eps,
        delta=float(delta),
        cap=cap,
        releases=out,
        spent=ledger.spent(),
        budget=(ledger.total_epsilon, ledger.total_delta),
        window=dict(window or {}),
    )
