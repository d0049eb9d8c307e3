"""The log as policies see it: a :class:`PolicyLog` holds, per logged row, the context ``x``, the
candidate arms (ids and feature rows), the logged action, its propensity and the reward.

:func:`policy_log_from_logged` builds one from a CSV / Parquet / engine log
(:mod:`bandit_engine.evaluation.datasets`), :func:`policy_log_from_obd` from the Open Bandit Dataset
(context: the OBD user features; arms: the items ``"0".."79"`` with their item features).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError, DataError, ValidationError
from ._validate import FloatArray, IntArray, as_float_array
from .datasets import EngineLogData, LoggedData, ObdData

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = [
    "PolicyLog",
    "obd_policy_inputs",
    "policy_log_from_logged",
    "policy_log_from_obd",
]


@dataclass(frozen=True, eq=False)
class PolicyLog:
    """A log in the shape policies act on.

    Attributes
    ----------
    context
        (n, d) context ``x`` of every logged row.
    arm_ids
        (K,) ids of all arms; ``action`` and ``candidates`` index into them.
    arm_features
        (K, p) feature row of every arm (what ``policy.choose`` gets as ``arm_features``).
    action
        (n,) index of the logged arm.
    reward
        (n,) logged reward.
    pscore
        (n,) logging propensity of the logged arm (NaN where unknown), or ``None``.
    candidates
        Per row, the indices of the arms that were offered (the logged one among them), or
        ``None`` when every arm was a candidate on every row.
    position
        (n,) 0-based display position (position-based logs such as the OBD), or ``None``.
    logging_dist
        (n, K) the logging policy's distribution over the arms on each row (NaN rows where
        unknown), or ``None``: the engine's event log records it, other logs do not.
    source
        Where the log came from (shown in reports).
    """

    context: FloatArray
    arm_ids: tuple[str, ...]
    arm_features: FloatArray
    action: IntArray
    reward: FloatArray
    pscore: FloatArray | None
    candidates: tuple[IntArray, ...] | None = None
    position: IntArray | None = None
    source: str = ""
    logging_dist: FloatArray | None = None

    def __post_init__(self) -> None:
        n, k = int(self.action.shape[0]), len(self.arm_ids)
        if n == 0:
            raise DataError("the log has no rows", field="action", value=0)
        if self.context.ndim != 2 or self.context.shape[0] != n:
            raise ValidationError(
                f"context must have shape (n={n}, d), got {self.context.shape}",
                field="context",
                value=self.context.shape,
            )
        if self.arm_features.ndim != 2 or self.arm_features.shape[0] != k:
            raise ValidationError(
                f"arm_features must have shape (len(arm_ids)={k}, p), got "
                f"{self.arm_features.shape}",
                field="arm_features",
                value=self.arm_features.shape,
            )
        if len(set(self.arm_ids)) != k:
            raise ValidationError.for_field("arm_ids", self.arm_ids, "must be distinct")
        for name in ("reward", "pscore", "position"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ValidationError(
                    f"{name} must have shape (n,) = ({n},), got {arr.shape}",
                    field=name,
                    value=arr.shape,
                )
        if self.logging_dist is not None and self.logging_dist.shape != (n, k):
            raise ValidationError(
                f"logging_dist must have shape (n, K) = ({n}, {k}), got {self.logging_dist.shape}",
                field="logging_dist",
                value=self.logging_dist.shape,
            )
        if self.action.min() < 0 or self.action.max() >= k:
            raise ValidationError.for_field(
                "action", int(self.action.max()), f"must index arm_ids, in [0, {k})"
            )
        if self.candidates is not None:
            if len(self.candidates) != n:
                raise ValidationError(
                    f"candidates must hold one index array per row (n={n}), got "
                    f"{len(self.candidates)}",
                    field="candidates",
                    value=len(self.candidates),
                )
            outside = [
                i
                for i, (a, c) in enumerate(zip(self.action.tolist(), self.candidates, strict=True))
                if a not in set(c.tolist())
            ]
            if outside:
                raise ValidationError(
                    f"action must be one of the row's candidates: {len(outside)} of {n} rows "
                    f"(indices {', '.join(map(str, outside[:5]))})",
                    field="candidates",
                    value=outside[:5],
                )

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.arm_ids)

    def candidate_counts(self) -> IntArray:
        """(n,) number of candidates per row."""
        if self.candidates is None:
            return np.full(self.n_rows, self.n_actions, dtype=np.int64)
        return np.array([c.shape[0] for c in self.candidates], dtype=np.int64)

    def is_uniform(self) -> bool:
        """Every row has a propensity equal to ``1 / (number of candidates)`` (within 1e-6)."""
        if self.pscore is None or np.isnan(self.pscore).any():
            return False
        expected = 1.0 / self.candidate_counts()
        return bool(np.allclose(self.pscore, expected, rtol=1e-6, atol=0.0))

    def rows(self, index: ArrayLike) -> PolicyLog:
        """The sub-log of the given row indices (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            context=self.context[idx],
            action=self.action[idx],
            reward=self.reward[idx],
            pscore=None if self.pscore is None else self.pscore[idx],
            candidates=None if self.candidates is None else tuple(self.candidates[i] for i in idx),
            position=None if self.position is None else self.position[idx],
            logging_dist=None if self.logging_dist is None else self.logging_dist[idx],
        )

    def split(self, train_fraction: float) -> tuple[PolicyLog | None, PolicyLog]:
        """``(first rows, remaining rows)`` in log order; ``None`` first part for fraction 0."""
        if isinstance(train_fraction, bool) or not (
            isinstance(train_fraction, int | float) and 0.0 <= train_fraction < 1.0
        ):
            raise ConfigError.for_field("train_fraction", train_fraction, "must be in [0, 1)")
        cut = math.floor(train_fraction * self.n_rows)
        if cut == 0:
            return None, self
        return self.rows(np.arange(cut)), self.rows(np.arange(cut, self.n_rows))

    def arms_of(self, i: int) -> tuple[tuple[str, ...], FloatArray, IntArray | None]:
        """Candidate ids, their feature rows and their indices (``None``: all arms) of row ``i``."""
        if self.candidates is None:
            return self.arm_ids, self.arm_features, None
        idx = self.candidates[i]
        return tuple(self.arm_ids[j] for j in idx.tolist()), self.arm_features[idx], idx


def obd_policy_inputs(obd: ObdData) -> tuple[FloatArray, tuple[str, ...], FloatArray]:
    """``(X, arm_ids, arm_features)`` for policies acting on the Open Bandit Dataset.

    ``X`` is the (n, d) user context of :func:`~bandit_engine.evaluation.datasets.load_obd` (one-hot user
    features and user-item affinities); the arms are the items, ids ``"0" .. "K-1"`` (the item id
    as text), with the (K, p) item features as arm features. Every item is a candidate on every
    row, as in the data set.
    """
    arm_ids = tuple(str(i) for i in range(obd.n_actions))
    return obd.context, arm_ids, obd.action_context


def policy_log_from_obd(obd: ObdData) -> PolicyLog:
    """The OBD log as a :class:`PolicyLog` (see :func:`obd_policy_inputs`; positions kept).

    Each OBD row is one (impression, position); a policy acting on it chooses one item for that
    slot from the same context, so its distribution is the same at every position.
    """
    X, arm_ids, Z = obd_policy_inputs(obd)
    return PolicyLog(
        context=X,
        arm_ids=arm_ids,
        arm_features=Z,
        action=obd.action,
        reward=obd.reward,
        pscore=obd.pscore,
        candidates=None,
        position=obd.position,
        source=f"obd:{obd.behavior}/{obd.campaign}",
    )


def policy_log_from_logged(
    data: LoggedData,
    *,
    catalog: Catalog | None = None,
    arm_features: ArrayLike | None = None,
    source: str = "",
) -> PolicyLog:
    """A CSV / Parquet / engine log (:class:`~bandit_engine.evaluation.datasets.LoggedData`) as a
    :class:`PolicyLog`.

    Arm features, in order of preference:

    1. ``catalog`` (an engine's :class:`~bandit_engine.catalog.Catalog`): each bundle's current
       features; bundles the catalog does not know fall back to (2).
    2. For an engine log (:class:`~bandit_engine.evaluation.datasets.EngineLogData`): the features the engine
       logged for the chosen bundle (the latest row that chose it). A candidate that was never
       chosen and is unknown to ``catalog`` cannot be described: DataError naming it.
    3. ``arm_features`` (K, p) given explicitly, aligned with ``data.action_ids``.
    4. Otherwise the identity (one-hot arm ids): policies that ignore arm features (disjoint
       LinUCB, disjoint linear TS, the baselines) are unaffected; feature-sharing ones learn
       nothing across arms.

    A log without context columns gives every row the constant context ``[1.0]`` (a context-free
    evaluation).
    """
    ids = data.action_ids
    k = len(ids)
    Z: FloatArray
    if arm_features is not None:
        Z = as_float_array("arm_features", arm_features)
        if Z.ndim != 2 or Z.shape[0] != k:
            raise ValidationError(
                f"arm_features must have shape (n_actions={k}, p), got {Z.shape}",
                field="arm_features",
                value=Z.shape,
            )
    elif catalog is not None or (
        isinstance(data, EngineLogData) and data.chosen_features.shape[1] > 0
    ):
        Z = _bundle_features(data, catalog)
    else:
        Z = np.eye(k)
    X = data.context if data.context is not None else np.ones((data.n_rows, 1))
    return PolicyLog(
        context=X,
        arm_ids=ids,
        arm_features=Z,
        action=data.action,
        reward=data.reward,
        pscore=data.pscore,
        candidates=data.candidates,
        position=None,
        source=source,
        logging_dist=data.logging_dist,
    )


def _bundle_features(data: LoggedData, catalog: Catalog | None) -> FloatArray:
    logged: dict[int, FloatArray] = {}
    if isinstance(data, EngineLogData):
        for i, a in enumerate(data.action.tolist()):
            logged[a] = data.chosen_features[i]  # the latest row wins
    rows: list[FloatArray | None] = []
    for j, bundle in enumerate(data.action_ids):
        row: FloatArray | None = None
        if catalog is not None and bundle in catalog:
            row = catalog.features([bundle])[0]
        elif j in logged:
            row = logged[j]
        rows.append(row)
    missing = [data.action_ids[j] for j, r in enumerate(rows) if r is None]
    if missing:
        where = "the model's catalog" if catalog is not None else "a model (--model)"
        raise DataError(
            f"no features for {len(missing)} candidate bundle(s) never chosen in the log "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); pass {where} "
            "that knows them",
            field="candidates",
            value=missing[:5],
        )
    widths = {r.shape[0] for r in rows if r is not None}
    if len(widths) > 1:
        raise DataError.for_field(
            "arm_features", sorted(widths), "differ in length between bundles (several models?)"
        )
    return np.vstack([r for r in rows if r is not None])
