"""Loader of decision logs in CSV, Parquet or a DataFrame (the documented columns of
:func:`load_log`), and the validation every log (engine logs included) goes through."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ...errors import ConfigError, DataError, ValidationError
from ...rewards import RewardSpec
from .._validate import FloatArray, IntArray, preview_rows
from .columns import column_notes, normalise_columns
from .problems import Problems

__all__ = ["LoggedData", "load_frame", "load_log", "load_logs"]


@dataclass(frozen=True, eq=False)
class LoggedData:
    """A validated log of decisions, as arrays for off-policy evaluation.

    Attributes
    ----------
    action
        (n,) indices into ``action_ids``.
    action_ids
        Vocabulary: ``action_ids[k]`` is the original id (as text) of action index ``k``. Ids
        from the action column and the candidate lists, sorted numerically when all are
        integers, else as text.
    reward
        (n,) rewards (the ``reward`` column, or computed from click / order / order_value).
    pscore
        (n,) logging propensities, ``NaN`` where a row has none; ``None`` when the log has no
        ``propensity`` column. Weighting estimators refuse NaN rows (use DM, or drop them).
    context
        (n, d) context features, or ``None``.
    candidates
        Per row, the candidate action indices (sorted), or ``None`` without a candidates column.
    timestamp
        (n,) ``datetime64[ns]`` (text dates) or float (numeric) times, or ``None``.
    decision_id
        (n,) decision ids as text, or ``None``.
    frame
        The table as read.
    logging_dist
        (n, K) the logging policy's whole distribution over the actions on each row (0 outside
        the row's candidates; NaN rows where unknown), or ``None``: only the engine's event log
        records it (:mod:`~bandit_engine.evaluation.support` uses it to judge support exactly).
    notes
        What the reader of the evaluation should know about how the log was read: an aliased
        propensity column, columns not read (with a hint when they look relevant), a missing
        propensity column (:mod:`~bandit_engine.evaluation.datasets.columns`).
    """

    action: IntArray
    action_ids: tuple[str, ...]
    reward: FloatArray
    pscore: FloatArray | None
    context: FloatArray | None
    candidates: tuple[IntArray, ...] | None
    timestamp: NDArray[Any] | None
    decision_id: NDArray[Any] | None
    frame: pd.DataFrame
    logging_dist: FloatArray | None = field(default=None, kw_only=True)
    notes: tuple[str, ...] = field(default=(), kw_only=True)

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.action_ids)

    @property
    def has_pscore(self) -> bool:
        """Every row has a logging propensity."""
        return self.pscore is not None and not bool(np.isnan(self.pscore).any())

    def require_pscore(self, estimator: str = "ips") -> FloatArray:
        """The propensities, or a DataError pointing at DM when some (or all) are missing."""
        if self.pscore is None:
            raise DataError(
                f"{estimator} needs the logging propensity of every row, but the log has no "
                "'propensity' column; use dm(), which needs no propensities",
                field="propensity",
                value=None,
            )
        missing = np.isnan(self.pscore)
        if missing.any():
            rows = np.flatnonzero(missing)
            raise DataError(
                f"{estimator} needs the logging propensity of every row, but propensity is "
                f"missing in {preview_rows(rows, total=self.n_rows, one_based=True)}; use dm(), "
                "which needs no propensities, or drop those rows",
                field="propensity",
                value=(rows[:5] + 1).tolist(),
            )
        return self.pscore

    def ope_arrays(self, estimator: str = "ips") -> dict[str, NDArray[Any]]:
        """``reward``, ``action`` and ``pscore`` as estimator keyword arguments.

        Raises the :meth:`require_pscore` DataError (pointing at DM) when propensities are
        missing; DM needs only ``reward`` and ``action`` (or neither).
        """
        return {
            "reward": self.reward,
            "action": self.action,
            "pscore": self.require_pscore(estimator),
        }

    def candidate_counts(self) -> IntArray | None:
        """(n,) size of each row's candidate set, or ``None``."""
        if self.candidates is None:
            return None
        return np.array([c.shape[0] for c in self.candidates], dtype=np.int64)


def _read_table(
    path_or_frame: str | Path | pd.DataFrame, fmt: str | None
) -> tuple[pd.DataFrame, str]:
    if isinstance(path_or_frame, pd.DataFrame):
        if fmt is not None:
            raise ConfigError.for_field("format", fmt, "must be None when a DataFrame is given")
        return path_or_frame.reset_index(drop=True), "DataFrame"
    path = Path(path_or_frame)
    if fmt is None:
        suffix = path.suffix.lower()
        if suffix in (".csv", ".txt"):
            fmt = "csv"
        elif suffix in (".parquet", ".pq"):
            fmt = "parquet"
        else:
            raise ConfigError.for_field(
                "format",
                None,
                f"must be given ('csv' or 'parquet'): cannot infer it from {path.name!r}",
            )
    if fmt not in ("csv", "parquet"):
        raise ConfigError.for_field("format", fmt, "must be 'csv', 'parquet' or None")
    if not path.is_file():
        raise DataError(f"log file not found: {path}", field="path", value=str(path))
    try:
        if fmt == "csv":
            text_cols = {"action": str, "bundle_id": str, "candidates": str, "decision_id": str}
            frame = pd.read_csv(path, dtype=text_cols, keep_default_na=True)
        else:
            frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ConfigError(
            "reading Parquet needs pyarrow: pip install 'bandit-engine[parquet]'",
            field="format",
            value=fmt,
        ) from exc
    except (
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
        OSError,
        ValueError,
    ) as exc:
        raise DataError(
            f"cannot read {path} as {fmt}: {exc}", field="path", value=str(path)
        ) from exc
    return frame, str(path)


def _id_text(series: pd.Series) -> NDArray[np.object_]:
    """Ids as text, ``None`` where missing; integral floats (ints upcast by NaN) lose the '.0'."""
    out = np.empty(series.shape[0], dtype=object)
    for i, v in enumerate(series.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out[i] = None
        elif isinstance(v, float) and v.is_integer():
            out[i] = str(int(v))
        else:
            text = str(v).strip()
            out[i] = text if text else None
    return out


def _parse_candidates(value: Any) -> list[str] | None:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(parsed, list):
            return None
        return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in parsed]
    return [part.strip() for part in text.split("|") if part.strip()]


def _vocabulary(ids: set[str]) -> tuple[str, ...]:
    try:
        return tuple(sorted(ids, key=int))
    except ValueError:
        return tuple(sorted(ids))


def _context(frame: pd.DataFrame, problems: Problems) -> FloatArray | None:
    x_cols = [c for c in frame.columns if str(c).startswith("x_") and str(c)[2:].isdigit()]
    if x_cols:
        numbers = sorted(int(str(c)[2:]) for c in x_cols)
        if numbers != list(range(len(numbers))):
            raise ValidationError(
                f"context columns must be x_0..x_{len(numbers) - 1} without gaps, got "
                f"{sorted(map(str, x_cols))}",
                field="x_",
                value=sorted(map(str, x_cols)),
            )
        ordered = [f"x_{i}" for i in numbers]
        block: FloatArray = (
            frame[ordered].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        )
        bad = ~np.all(np.isfinite(block), axis=1, keepdims=False)
        problems.add("context", "(x_* columns) must be finite numbers", bad)
        return block
    if "context" not in frame.columns:
        return None
    parsed: list[list[float] | None] = []
    for v in frame["context"].tolist():
        try:
            vec = json.loads(v) if isinstance(v, str) else list(v)
            parsed.append([float(t) for t in vec])
        except (TypeError, ValueError, json.JSONDecodeError):
            parsed.append(None)
    lengths = [len(p) for p in parsed if p is not None]
    d = max(set(lengths), key=lengths.count) if lengths else 0
    bad_rows = np.array([p is None or len(p) != d or not np.all(np.isfinite(p)) for p in parsed])
    problems.add("context", f"must be a JSON list of {d} finite numbers", bad_rows)
    out = np.zeros((len(parsed), d))
    for i, p in enumerate(parsed):
        if p is not None and len(p) == d:
            out[i] = p
    return out


def _reward(frame: pd.DataFrame, spec: RewardSpec | None, problems: Problems) -> FloatArray:
    if "reward" in frame.columns:
        if spec is not None:
            raise ConfigError(
                "the log has a 'reward' column, so reward_spec (which combines click, order and "
                "order_value) does not apply; drop one of them",
                field="reward_spec",
                value=spec.to_dict(),
            )
        values = pd.to_numeric(frame["reward"], errors="coerce").to_numpy(dtype=np.float64)
        problems.add("reward", "is missing", frame["reward"].isna().to_numpy())
        problems.add(
            "reward",
            "must be a finite number",
            frame["reward"].notna().to_numpy() & ~np.isfinite(values),
            frame["reward"].to_numpy(),
        )
        return values
    rs = spec if spec is not None else RewardSpec()
    needed = ["click"]
    if rs.order != 0.0 or rs.value_weight != 0.0:
        needed.append("order")
    if rs.value_weight != 0.0:
        needed.append("order_value")
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise ValidationError(
            f"rewards are missing: the log needs a 'reward' column or {needed} for reward_spec "
            f"{rs.to_dict()}; absent: {absent} (columns: {list(frame.columns)})",
            field=absent[0],
            value=absent,
        )
    cols: dict[str, FloatArray] = {}
    for c in needed:
        vals = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        problems.add(c, "is missing", frame[c].isna().to_numpy())
        problems.add(
            c,
            "must be a finite number >= 0",
            frame[c].notna().to_numpy() & ~(np.isfinite(vals) & (vals >= 0)),
            frame[c].to_numpy(),
        )
        cols[c] = vals
    zeros = np.zeros(frame.shape[0])
    clicks, orders = cols["click"], cols.get("order", zeros)
    total = rs.click * clicks + rs.order * orders + rs.value_weight * cols.get("order_value", zeros)
    if rs.cap is not None:
        total = np.minimum(total, rs.cap)
    # A decision without events learns the default reward (as the engine does when a window closes).
    no_event = (clicks == 0) & (orders == 0)
    out: FloatArray = np.where(no_event, rs.default_reward, total)
    return out


def load_log(
    path_or_frame: str | Path | pd.DataFrame,
    *,
    format: Literal["csv", "parquet"] | None = None,
    reward_spec: RewardSpec | None = None,
) -> LoggedData:
    """Load and validate a decision log from CSV, Parquet or a DataFrame.

    Columns
    -------
    ``action`` (or ``bundle_id``)
        Required. Id of the logged action (text or integer ids; mapped to indices).
    ``propensity`` (or ``pscore``, Open Bandit Pipeline's name)
        Logging probability of the logged action, in (0, 1]. May be absent or empty: such rows
        load (``pscore`` NaN) but the weighting estimators refuse them and point at DM. A missing
        column, and every column not read, is reported in ``notes``.
    ``reward`` or ``click`` [, ``order``, ``order_value``]
        Required. Either the reward itself, or event counts combined by ``reward_spec``
        (:class:`~bandit_engine.rewards.RewardSpec`; default: reward = clicks). With a spec, a
        row with no click and no order gets ``spec.default_reward``; ``spec.cap`` applies.
    ``candidates``
        Optional candidate set per row: a JSON list (``["b1", "b2"]``) or ``|``-separated ids
        (``b1|b2``). The logged action must be one of them.
    ``timestamp``, ``decision_id``
        Optional.
    ``x_0 .. x_{d-1}`` or ``context``
        Optional context: numeric columns, or one column of JSON lists.

    Parameters
    ----------
    path_or_frame
        A ``.csv`` / ``.parquet`` path, or a DataFrame.
    format
        ``"csv"`` or ``"parquet"``; inferred from the suffix when ``None``.
    reward_spec
        How click / order / order_value make the reward (only without a ``reward`` column).

    Raises
    ------
    ValidationError
        Listing every problem with its count and first 1-based data row numbers, e.g.
        ``propensity must be in (0, 1]: 3 of 1000 rows (rows 5, 17, 230; values ...)``.
    DataError
        Unreadable or missing file, or an empty log.
    """
    frame, source = _read_table(path_or_frame, format)
    frame, notes = normalise_columns(frame)
    data = load_frame(frame, source, reward_spec)
    return replace(data, notes=tuple(notes + column_notes(frame)))


def load_logs(
    paths: Sequence[str | Path],
    *,
    format: Literal["csv", "parquet"] | None = None,
    reward_spec: RewardSpec | None = None,
) -> LoggedData:
    """Load several log files as one log: their rows in the order given (files in turn), with
    one action vocabulary, validated together as :func:`load_log` does (row numbers in messages
    count the rows of all the files in that order)."""
    if not paths:
        raise DataError("no log files given", field="path", value=[])
    if len(paths) == 1:
        return load_log(paths[0], format=format, reward_spec=reward_spec)
    frames = [_read_table(p, format)[0] for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    source = f"{paths[0]} and {len(paths) - 1} more file(s)"
    frame, notes = normalise_columns(frame)
    data = load_frame(frame, source, reward_spec)
    return replace(data, notes=tuple(notes + column_notes(frame)))


def load_frame(frame: pd.DataFrame, source: str, reward_spec: RewardSpec | None) -> LoggedData:
    """Validate a table read by :func:`load_log` (``source`` names it in messages)."""
    n = int(frame.shape[0])
    if n == 0:
        raise DataError(f"{source}: the log has no rows", field="action", value=0)
    action_col = "action" if "action" in frame.columns else "bundle_id"
    if action_col not in frame.columns:
        raise ValidationError(
            f"{source}: an 'action' (or 'bundle_id') column is required; columns: "
            f"{list(frame.columns)}",
            field="action",
            value=list(frame.columns),
        )
    problems = Problems(source, n)
    ids = _id_text(frame[action_col])
    missing_action = np.array([v is None for v in ids])
    problems.add(action_col, "is missing", missing_action)

    pscore: FloatArray | None = None
    if "propensity" in frame.columns:
        raw = frame["propensity"]
        pscore = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        unparsed = raw.notna().to_numpy() & np.isnan(pscore)
        problems.add("propensity", "must be a number", unparsed, raw.to_numpy())
        present = ~np.isnan(pscore)
        problems.add(
            "propensity", "must be in (0, 1]", present & ~((pscore > 0) & (pscore <= 1)), pscore
        )

    reward = _reward(frame, reward_spec, problems)

    cand_lists: list[list[str] | None] | None = None
    vocab_ids: set[str] = {v for v in ids if v is not None}
    if "candidates" in frame.columns:
        cand_lists = [_parse_candidates(v) for v in frame["candidates"].tolist()]
        problems.add(
            "candidates",
            "must be a JSON list or '|'-separated ids",
            np.array([c is None or len(c) == 0 for c in cand_lists]),
        )
        for c in cand_lists:
            if c:
                vocab_ids.update(c)
        outside = np.array(
            [
                v is not None and c is not None and len(c) > 0 and v not in c
                for v, c in zip(ids, cand_lists, strict=True)
            ]
        )
        problems.add(action_col, "must be one of the row's candidates", outside, ids)

    context = _context(frame, problems)

    timestamp: NDArray[Any] | None = None
    if "timestamp" in frame.columns:
        ts = frame["timestamp"]
        if pd.api.types.is_numeric_dtype(ts):
            timestamp = ts.to_numpy(dtype=np.float64)
            problems.add("timestamp", "is missing", np.isnan(timestamp))
        else:
            parsed = pd.to_datetime(ts, utc=True, errors="coerce", format="mixed")
            problems.add("timestamp", "is missing or not a date", parsed.isna().to_numpy(), ts)
            timestamp = parsed.to_numpy(dtype="datetime64[ns]")
    decision_id = _id_text(frame["decision_id"]) if "decision_id" in frame.columns else None

    problems.raise_if_any()

    vocabulary = _vocabulary(vocab_ids)
    index = {v: i for i, v in enumerate(vocabulary)}
    action = np.array([index[v] for v in ids], dtype=np.int64)
    candidates = None
    if cand_lists is not None:
        candidates = tuple(
            np.array(sorted({index[v] for v in c}), dtype=np.int64) for c in cand_lists if c
        )
    return LoggedData(
        action=action,
        action_ids=vocabulary,
        reward=reward,
        pscore=pscore,
        context=context,
        candidates=candidates,
        timestamp=timestamp,
        decision_id=decision_id,
        frame=frame,
    )


# --------------------------------------------------------------------------------------------
