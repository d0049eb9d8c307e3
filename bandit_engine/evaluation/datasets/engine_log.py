"""Loader of the engine's own SQLite event log (:class:`~bandit_engine.store.EventLog`): its
decisions as a :class:`~bandit_engine.evaluation.datasets.LoggedData`, validated the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...rewards import RewardSpec
from .._validate import FloatArray
from .tables import LoggedData, load_frame

__all__ = ["EngineLogData", "load_engine_log"]


@dataclass(frozen=True, eq=False)
class EngineLogData(LoggedData):
    """A validated engine decision log: :class:`LoggedData` plus what only the engine records.

    Attributes
    ----------
    chosen_features
        (n, p) feature vector ``z`` of the logged (chosen) bundle on each row, as the engine saw it.
    n_pending
        Decisions left out because their attribution window was still open (no final reward).
    model_ids
        The distinct ``model_id`` values of the loaded decisions, in order of first appearance.
    path
        The event log file.
    """

    chosen_features: FloatArray
    n_pending: int
    model_ids: tuple[str, ...]
    path: str


def load_engine_log(
    path: str | Path,
    *,
    model_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    reward_spec: RewardSpec | None = None,
) -> EngineLogData:
    """Load the decisions of an engine event log (a SQLite file or a ``postgresql://`` URL,
    opened read-only by :func:`~bandit_engine.store.open_log`).

    Reads :meth:`EventLog.decisions_frame` (read-only; no HMAC key is needed) and validates it
    exactly like :func:`load_log`: actions are the logged ``bundle_id``, candidate sets the logged
    candidate lists, propensities the logged ones, the context the logged ``x``. Decisions whose
    attribution window is still open (``status == "pending"``) have no final reward and are left
    out; their number is ``n_pending``. Row numbers in error messages count the loaded decisions
    in journal order, 1-based.

    Parameters
    ----------
    path
        The event log file (for example the ``--db`` of ``bandit serve-policy``), or its URL.
    model_id, since, until
        Passed to :meth:`EventLog.decisions_frame`: keep one model's decisions (needed when the log
        holds models with different context lengths), and ``since <= timestamp < until``.
    reward_spec
        ``None`` (default): the reward the engine learned when the window closed. A
        :class:`~bandit_engine.rewards.RewardSpec`: recompute the reward from the in-window
        click / order / order-value events instead (to evaluate under another reward definition).

    Raises
    ------
    NotFoundError
        The file does not exist.
    DataError
        Not an event log, contexts of different lengths (pass ``model_id``), or no decision with a
        final reward.
    ValidationError
        As :func:`load_log` (propensities, actions outside the candidate set, rewards).
    """
    from ...store import bundle_matrix, open_log, redact

    with open_log(path, hmac_key=None, read_only=True) as log:
        frame = log.decisions_frame(since=since, until=until, model_id=model_id)
    source = redact(path)  # a PostgreSQL URL may hold a password
    if frame.shape[0] == 0:
        raise DataError(
            f"{source}: the event log holds no decisions"
            + (f" for model_id {model_id!r}" if model_id is not None else "")
            + (" in the time range" if since is not None or until is not None else ""),
            field="path",
            value=source,
        )
    pending = (frame["status"] == "pending").to_numpy()
    n_pending = int(pending.sum())
    if n_pending == frame.shape[0]:
        raise DataError(
            f"{source}: all {n_pending} decisions are still pending (no attribution window has "
            "closed, so no decision has a final reward yet)",
            field="status",
            value=n_pending,
        )
    kept = frame.loc[~pending].reset_index(drop=True)
    table = kept.drop(columns=["reward"]) if reward_spec is not None else kept
    data = load_frame(table, source, reward_spec)
    has_z = "z_0" in kept.columns
    chosen = bundle_matrix(kept) if has_z else np.zeros((kept.shape[0], 0))
    return EngineLogData(
        action=data.action,
        action_ids=data.action_ids,
        reward=data.reward,
        pscore=data.pscore,
        context=data.context,
        candidates=data.candidates,
        timestamp=data.timestamp,
        decision_id=data.decision_id,
        frame=kept,
        chosen_features=chosen,
        n_pending=n_pending,
        model_ids=tuple(dict.fromkeys(str(m) for m in kept["model_id"])),
        path=source,
    )
