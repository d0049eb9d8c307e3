"""Loader of the Open Bandit Dataset layout (Saito et al., NeurIPS 2021 D&B, arXiv 2008.07146)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ...errors import ConfigError, DataError, ValidationError
from .._validate import FloatArray, IntArray
from .problems import Problems

__all__ = ["OBD_BEHAVIORS", "OBD_CAMPAIGNS", "ObdData", "load_obd"]

OBD_BEHAVIORS = ("random", "bts")
OBD_CAMPAIGNS = ("all", "men", "women")
_OBD_USER_COLUMNS = tuple(f"user_feature_{i}" for i in range(4))
_OBD_ITEM_CATEGORIES = tuple(f"item_feature_{i}" for i in range(1, 4))
_OBD_REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")


@dataclass(frozen=True, eq=False)
class ObdData:
    """One file of the Open Bandit Dataset, as arrays for off-policy evaluation.

    Attributes
    ----------
    reward
        (n,) clicks (0.0 / 1.0).
    action
        (n,) item ids, which are already indices in [0, n_actions).
    position
        (n,) 0-based display position (the files use 1, 2, 3; here 0, 1, 2).
    pscore
        (n,) logging policy's propensity of the shown item (``propensity_score``).
    context
        (n, d) user context: one-hot encoding of the four hashed ``user_feature_*`` columns
        (one column per category value present in the loaded rows, sorted, named
        ``user_feature_j=<value>``), then the ``user-item_affinity_*`` columns as they are.
    action_context
        (n_actions, p) item features: ``item_feature_0`` (numeric), then one-hot encodings of the
        hashed ``item_feature_1..3``.
    n_actions, n_positions
        Number of items (rows of ``item_context.csv``) and of positions seen (3 in the data).
    timestamp
        (n,) ``datetime64[ns]`` UTC times of the impressions.
    behavior, campaign
        Which logging policy (``"random"``, ``"bts"``) and campaign (``"all"``, ``"men"``,
        ``"women"``) the file holds.
    context_columns, action_context_columns
        Column names of ``context`` and ``action_context``.
    frame
        The log as read (row index column dropped), for anything not covered above.
    """

    reward: FloatArray
    action: IntArray
    position: IntArray
    pscore: FloatArray
    context: FloatArray
    action_context: FloatArray
    n_actions: int
    n_positions: int
    timestamp: NDArray[np.datetime64]
    behavior: str
    campaign: str
    context_columns: tuple[str, ...]
    action_context_columns: tuple[str, ...]
    frame: pd.DataFrame

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    def ope_arrays(self) -> dict[str, NDArray[Any]]:
        """``reward``, ``action``, ``pscore`` and ``position`` as estimator keyword arguments."""
        return {
            "reward": self.reward,
            "action": self.action,
            "pscore": self.pscore,
            "position": self.position,
        }


def _one_hot(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[FloatArray, list[str]]:
    blocks: list[FloatArray] = []
    names: list[str] = []
    for col in columns:
        values = frame[col].astype(str).to_numpy()
        cats, codes = np.unique(values, return_inverse=True)
        blocks.append(np.eye(cats.shape[0])[codes])
        names.extend(f"{col}={c}" for c in cats)
    if not blocks:
        return np.zeros((frame.shape[0], 0)), names
    return np.hstack(blocks), names


def load_obd(
    folder: str | Path,
    *,
    behavior: Literal["random", "bts"] = "random",
    campaign: Literal["all", "men", "women"] = "all",
    max_rows: int | None = None,
) -> ObdData:
    """Load one Open Bandit Dataset file (Saito et al., NeurIPS 2021 D&B, arXiv 2008.07146).

    Reads ``{folder}/{behavior}/{campaign}/{campaign}.csv`` and the ``item_context.csv`` beside it.
    Positions in the files are 1-based (1, 2, 3) and are returned 0-based. Each row is one
    (impression, position); estimators pool the positions (see
    :func:`~bandit_engine.evaluation.per_position`).

    Parameters
    ----------
    folder
        Directory holding ``random/`` and ``bts/``.
    behavior, campaign
        Which logging policy and campaign.
    max_rows
        Read only the first ``max_rows`` rows (the one-hot context then covers only the
        category values present in them).

    Raises
    ------
    DataError
        When a file is missing or cannot be parsed.
    ValidationError
        Missing columns, propensities outside (0, 1], item ids outside the item table, clicks
        other than 0/1, positions below 1, missing values (all reported with row numbers).
    """
    if behavior not in OBD_BEHAVIORS:
        raise ConfigError.for_field("behavior", behavior, f"must be one of {list(OBD_BEHAVIORS)}")
    if campaign not in OBD_CAMPAIGNS:
        raise ConfigError.for_field("campaign", campaign, f"must be one of {list(OBD_CAMPAIGNS)}")
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1
    ):
        raise ConfigError.for_field("max_rows", max_rows, "must be an int >= 1 or None")
    base = Path(folder) / behavior / campaign
    log_path, item_path = base / f"{campaign}.csv", base / "item_context.csv"
    for path in (log_path, item_path):
        if not path.is_file():
            raise DataError(
                f"Open Bandit Dataset file not found: {path} (expected the layout "
                "{folder}/{behavior}/{campaign}/{campaign}.csv with item_context.csv beside it)",
                field="folder",
                value=str(folder),
            )
    try:
        frame = pd.read_csv(log_path, index_col=0, nrows=max_rows)
        items = pd.read_csv(item_path, index_col=0)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"cannot parse {log_path}: {exc}", field="folder", value=str(folder)
        ) from exc
    source = str(log_path)
    affinity = [c for c in frame.columns if str(c).startswith("user-item_affinity_")]
    missing = [c for c in (*_OBD_REQUIRED, *_OBD_USER_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{source}: missing columns {missing} (found {list(frame.columns)[:12]} ...)",
            field=missing[0],
            value=missing,
        )
    missing_items = [
        c for c in ("item_id", "item_feature_0", *_OBD_ITEM_CATEGORIES) if c not in items.columns
    ]
    if missing_items:
        raise ValidationError(
            f"{item_path}: missing columns {missing_items}",
            field=missing_items[0],
            value=missing_items,
        )
    items = items.sort_values("item_id").reset_index(drop=True)
    n_actions = int(items.shape[0])
    if not np.array_equal(items["item_id"].to_numpy(), np.arange(n_actions)):
        raise ValidationError(
            f"{item_path}: item_id must be 0..{n_actions - 1} (one row per item)",
            field="item_id",
            value=items["item_id"].tolist()[:10],
        )

    n = int(frame.shape[0])
    problems = Problems(source, n)
    for col in (*_OBD_REQUIRED, *_OBD_USER_COLUMNS, *affinity):
        problems.add(col, "is missing", frame[col].isna().to_numpy())
    item = pd.to_numeric(frame["item_id"], errors="coerce").to_numpy(dtype=np.float64)
    problems.add(
        "item_id",
        f"must be an item of item_context.csv, in [0, {n_actions})",
        ~np.isnan(item) & ~((item >= 0) & (item < n_actions) & (item == np.round(item))),
        item,
    )
    pos = pd.to_numeric(frame["position"], errors="coerce").to_numpy(dtype=np.float64)
    problems.add(
        "position",
        "must be a 1-based position (1, 2, 3 ...)",
        ~np.isnan(pos) & ~((pos >= 1) & (pos == np.round(pos))),
        pos,
    )
    click = pd.to_numeric(frame["click"], errors="coerce").to_numpy(dtype=np.float64)
    problems.add("click", "must be 0 or 1", ~np.isnan(click) & (click != 0) & (click != 1), click)
    ps = pd.to_numeric(frame["propensity_score"], errors="coerce").to_numpy(dtype=np.float64)
    problems.add(
        "propensity_score", "must be in (0, 1]", ~np.isnan(ps) & ~((ps > 0) & (ps <= 1)), ps
    )
    problems.raise_if_any()

    try:
        timestamp = pd.to_datetime(frame["timestamp"], utc=True).to_numpy(dtype="datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"{source}: timestamp is not parseable as dates: {exc}", field="timestamp", value=None
        ) from exc
    user_onehot, user_names = _one_hot(frame, _OBD_USER_COLUMNS)
    aff = frame[affinity].to_numpy(dtype=np.float64)
    item_onehot, item_names = _one_hot(items, _OBD_ITEM_CATEGORIES)
    action_context = np.hstack((items[["item_feature_0"]].to_numpy(dtype=np.float64), item_onehot))
    position = pos.astype(np.int64) - 1
    return ObdData(
        reward=click,
        action=item.astype(np.int64),
        position=position,
        pscore=ps,
        context=np.hstack((user_onehot, aff)),
        action_context=action_context,
        n_actions=n_actions,
        n_positions=int(position.max()) + 1 if n else 0,
        timestamp=timestamp,
        behavior=behavior,
        campaign=campaign,
        context_columns=(*user_names, *affinity),
        action_context_columns=("item_feature_0", *item_names),
        frame=frame,
    )
