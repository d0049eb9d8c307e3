"""Loader of the engine's own SQLite event log (:class:`~bandit_engine.store.EventLog`): its
decisions as a :class:`~bandit_engine.evaluation.datasets.LoggedData`, validated the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError
from ...rewards import RewardSpec
from .._validate import FloatArray
from ..support import no_randomisation_warning
from .tables import LoggedData, load_frame

__all__ = ["EngineLogData", "load_engine_log", "randomisation_warnings"]


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
    logging = _logging_dist(kept, data.action_ids)
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
        logging_dist=logging,
    )


def _logging_dist(frame: pd.DataFrame, action_ids: tuple[str, ...]) -> FloatArray | None:
    """(n, K) logged distributions over the candidates (NaN rows where the policy logged none),
    or ``None`` when no decision has one."""
    probs = frame["probabilities"].tolist()
    if all(p is None for p in probs):
        return None
    index = {a: j for j, a in enumerate(action_ids)}
    out = np.zeros((len(probs), len(action_ids)))
    for i, (cands, p) in enumerate(zip(frame["candidates"].tolist(), probs, strict=True)):
        if p is None or len(p) != len(cands):
            out[i] = np.nan
            continue
        out[i, [index[str(c)] for c in cands]] = p
    return out


def randomisation_warnings(path: str | Path, names: Mapping[str, str] | None = None) -> list[str]:
    """One warning per logging policy of an event log whose logged propensities are mostly 1
    (:func:`~bandit_engine.evaluation.support.no_randomisation_warning`): logs that will not
    support off-policy evaluation of other policies. ``names`` maps model ids to the names to
    show (model ids with the same name are judged together); others are shown as their model
    id. Empty for a log without decisions.

    Limitation: when the log's models have contexts or bundle features of different lengths it
    cannot be read as one table: then only the model ids in ``names`` are checked (one by one),
    and without ``names`` the DataError saying so is raised.
    """
    from ...store import EventLog

    with EventLog(path, hmac_key=None, read_only=True) as log:
        try:
            frames = [log.decisions_frame()]
        except DataError:
            if not names:
                raise
            frames = [log.decisions_frame(model_id=m) for m in names]
    frame = pd.concat(
        [f[["model_id", "propensity", "probabilities"]] for f in frames], ignore_index=True
    )
    out: list[str] = []
    if frame.shape[0] == 0:
        return out
    shown = {str(m): f"model {m}" for m in frame["model_id"].unique()}
    shown.update(names or {})
    who = frame["model_id"].astype(str).map(shown)
    for name, group in frame.groupby(who, sort=False):
        pscore = group["propensity"].to_numpy(dtype=np.float64)
        smallest = np.array(
            [
                np.nan if p is None or len(p) == 0 else float(np.min(p))
                for p in group["probabilities"]
            ]
        )
        message = no_randomisation_warning(pscore, str(name), smallest)
        if message is not None:
            out.append(message)
    return out
