"""Pandas at the edge: the logged decisions as a DataFrame, and its context / bundle matrices."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .connection import LogConnection
from .crypto import open_vector, x_aad
from .rows import FloatArray, unblob

__all__ = ["LogFrames", "bundle_matrix", "context_matrix"]


class LogFrames(LogConnection):
    """The frame method of :class:`~bandit_engine.store.EventLog`."""

    def decisions_frame(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model_id: str | None = None,
    ) -> pd.DataFrame:
        """One row per logged decision (in journal order), for offline evaluation.

        Columns: ``decision_id``, ``timestamp`` (epoch seconds), ``bundle_id`` (the action),
        ``deal_id``, ``course_id``, ``candidates`` (tuple of bundle ids, shared between rows with
        the same list), ``propensity``,
        ``probabilities`` (float64 array aligned with ``candidates``, or ``None`` when the policy does not
        know its full distribution), ``reward`` (NaN while pending), ``status``, ``click``,
        ``order`` (counts of in-window events), ``order_value`` (sum of in-window order values),
        ``n_late``, ``policy_version``, ``model_id``, then the context ``x_0 .. x_{d-1}`` and the
        chosen bundle's features ``z_0 .. z_{p-1}``. :func:`context_matrix` and
        :func:`bundle_matrix` return those blocks as arrays. ``since`` / ``until`` bound
        ``timestamp`` (``since <= t < until``).

        Raises :class:`~bandit_engine.errors.DataError` when the selected decisions have contexts of
        different lengths (several models in one log): filter with ``model_id``.
        """
        where = []
        params: list[Any] = []
        if since is not None:
            where.append("d.ts >= ?")
            params.append(float(since))
        if until is not None:
            where.append("d.ts < ?")
            params.append(float(until))
        if model_id is not None:
            where.append("d.model_id = ?")
            params.append(model_id)
        sql = (
            "SELECT d.decision_id, d.ts, d.bundle_id, d.deal_id, d.course_id, d.candidate_set,"
            " d.propensity, d.probabilities, d.reward, d.status,"
            " coalesce(e.click, 0), coalesce(e.n_order, 0), coalesce(e.order_value, 0.0),"
            " coalesce(e.n_late, 0), d.policy_version, d.model_id, d.x, d.x_dim, d.z, d.z_dim"
            " FROM decisions d LEFT JOIN ("
            "  SELECT decision_id,"
            # CASE, not sum(<boolean>): PostgreSQL does not add up booleans
            "   sum(CASE WHEN status = 'accepted' AND type = 'click' THEN 1 ELSE 0 END) AS click,"
            "   sum(CASE WHEN status = 'accepted' AND type = 'order' THEN 1 ELSE 0 END)"
            "    AS n_order,"
            "   sum(CASE WHEN status = 'accepted' AND type = 'order' THEN value ELSE 0.0 END)"
            "    AS order_value,"
            "   sum(CASE WHEN status = 'late' THEN 1 ELSE 0 END) AS n_late"
            "  FROM events GROUP BY decision_id"
            " ) e ON e.decision_id = d.decision_id"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY d.seq"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
            sets = {
                int(i): tuple(json.loads(t))
                for i, t in self._conn.execute("SELECT id, ids FROM candidate_sets")
            }
        names = [
            "decision_id",
            "timestamp",
            "bundle_id",
            "deal_id",
            "course_id",
            "candidates",
            "propensity",
            "probabilities",
            "reward",
            "status",
            "click",
            "order",
            "order_value",
            "n_late",
            "policy_version",
            "model_id",
        ]
        x_dims = {int(r[17]) for r in rows}
        z_dims = {int(r[19]) for r in rows if r[19] is not None}
        if len(x_dims) > 1 or len(z_dims) > 1:
            raise DataError.for_field(
                "x_dim", sorted(x_dims), "differs between decisions (several models): pass model_id"
            )
        d = x_dims.pop() if x_dims else 0
        p = z_dims.pop() if z_dims else 0
        n = len(rows)
        X = np.empty((n, d))
        Z = np.empty((n, p))
        cols: dict[str, list[Any]] = {name: [] for name in names}
        for i, r in enumerate(rows):
            X[i] = unblob(open_vector(self._cipher, r[16], d, x_aad(r[0])), d)
            if p:
                Z[i] = unblob(r[18], p)
            for j, name in enumerate(names):
                v = r[j]
                if name == "candidates":
                    v = sets[v]
                elif name == "probabilities":
                    v = None if v is None else unblob(v, None)
                cols[name].append(v)
        frame = pd.DataFrame(
            {
                **{name: cols[name] for name in names},
            }
        )
        frame["timestamp"] = frame["timestamp"].astype(np.float64)
        frame["propensity"] = frame["propensity"].astype(np.float64)
        frame["reward"] = pd.to_numeric(frame["reward"], errors="coerce").astype(np.float64)
        for name in ("click", "order", "n_late"):
            frame[name] = frame[name].astype(np.int64)
        frame["order_value"] = frame["order_value"].astype(np.float64)
        blocks = [
            pd.DataFrame(X, columns=[f"x_{i}" for i in range(d)]),
            pd.DataFrame(Z, columns=[f"z_{i}" for i in range(p)]),
        ]
        return pd.concat([frame, *blocks], axis=1)


def context_matrix(frame: pd.DataFrame) -> FloatArray:
    """The ``(n, d)`` context block ``x_0 .. x_{d-1}`` of :meth:`EventLog.decisions_frame`."""
    return _block(frame, "x_")


def bundle_matrix(frame: pd.DataFrame) -> FloatArray:
    """The ``(n, p)`` chosen-bundle features ``z_0 .. z_{p-1}`` of
    :meth:`EventLog.decisions_frame`."""
    return _block(frame, "z_")


def _block(frame: pd.DataFrame, prefix: str) -> FloatArray:
    cols = []
    i = 0
    while f"{prefix}{i}" in frame.columns:
        cols.append(f"{prefix}{i}")
        i += 1
    if not cols:
        raise DataError.for_field(
            "frame", sorted(map(str, frame.columns))[:10], f"has no {prefix}0.. columns"
        )
    return frame[cols].to_numpy(dtype=np.float64)
