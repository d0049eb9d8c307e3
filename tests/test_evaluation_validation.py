"""Bad estimator inputs give errors naming the field, the shapes and the offending rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bandit_engine.errors import DataError, ValidationError
from bandit_engine.evaluation import dm, dr, ips, snips


def _log(n: int = 6, k: int = 3) -> dict[str, Any]:
    return {
        "reward": np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])[:n],
        "action": np.array([0, 1, 2, 0, 1, 2])[:n],
        "pscore": np.full(n, 1.0 / k),
        "action_dist": np.full((n, k), 1.0 / k),
    }


def _raises(exc: type[Exception], fn: Any, **kwargs: Any) -> str:
    with pytest.raises(exc) as info:
        fn(**kwargs)
    return str(info.value)


def test_length_mismatch_names_each_array_and_length() -> None:
    log = _log()
    log["action"] = log["action"][:5]
    msg = _raises(ValidationError, ips, **log)
    assert "reward (n=6)" in msg and "action (n=5)" in msg and "pscore (n=6)" in msg


def test_pscore_out_of_range_counts_rows_and_shows_indices_and_values() -> None:
    log = _log()
    log["pscore"] = np.array([0.5, 0.0, 0.5, 0.5, 1.5, 0.5])
    msg = _raises(ValidationError, ips, **log)
    assert "pscore must be in (0, 1]" in msg
    assert "2 of 6 rows" in msg and "indices 1, 4" in msg and "values 0, 1.5" in msg


def test_missing_pscore_is_refused_with_a_pointer_to_dm() -> None:
    log = _log()
    log["pscore"] = np.array([0.5, np.nan, 0.5, np.nan, 0.5, 0.5])
    for fn in (ips, snips):
        with pytest.raises(DataError) as info:
            fn(**log)
        assert "pscore is missing (NaN)" in str(info.value)
        assert "indices 1, 3" in str(info.value) and "dm()" in str(info.value)
        assert info.value.field == "pscore"
    msg = _raises(DataError, ips, **{**log, "pscore": None})
    assert "dm()" in msg


def test_action_dist_shape_is_shown() -> None:
    log = _log()
    log["action_dist"] = np.full((5, 3), 1.0 / 3)
    msg = _raises(ValidationError, ips, **log)
    assert "action_dist" in msg and "(5, 3)" in msg and "n = 6" in msg


def test_action_outside_action_dist_columns() -> None:
    log = _log()
    log["action"] = np.array([0, 1, 3, 0, 7, 2])
    msg = _raises(ValidationError, ips, **log)
    assert "action must be in [0, 3)" in msg and "indices 2, 4" in msg and "(6, 3)" in msg


def test_negative_and_fractional_actions() -> None:
    log = _log()
    log["action"] = np.array([0, -1, 2, 0, 1, 2])
    assert "index 1" in _raises(ValidationError, ips, **log)
    log["action"] = np.array([0.0, 1.5, 2.0, 0.0, 1.0, 2.0])
    msg = _raises(ValidationError, ips, **log)
    assert "integer action indices" in msg and "index 1" in msg


def test_action_dist_rows_must_sum_to_one_and_be_non_negative() -> None:
    log = _log()
    log["action_dist"] = log["action_dist"].copy()
    log["action_dist"][3] = [0.5, 0.5, 0.5]
    msg = _raises(ValidationError, ips, **log)
    assert "sum to 1" in msg and "index 3" in msg and "values 1.5" in msg
    log["action_dist"][3] = [1.5, -0.5, 0.0]
    msg = _raises(ValidationError, ips, **log)
    assert "must be >= 0" in msg and "index 3" in msg


def test_non_finite_inputs() -> None:
    log = _log()
    log["reward"] = np.array([1.0, np.nan, 0.0, np.inf, 0.0, 0.0])
    msg = _raises(ValidationError, ips, **log)
    assert "reward must be finite" in msg and "indices 1, 3" in msg
    log = _log()
    log["action_dist"] = log["action_dist"].copy()
    log["action_dist"][5, 0] = np.nan
    assert "index 5" in _raises(ValidationError, ips, **log)


def test_exactly_one_of_action_dist_and_action_prob() -> None:
    log = _log()
    msg = _raises(ValidationError, ips, **log, action_prob=np.full(6, 1 / 3))
    assert "exactly one of action_dist (n, K) and action_prob (n,)" in msg
    del log["action_dist"]
    assert "needs action_dist (n, K) or action_prob (n,)" in _raises(ValidationError, ips, **log)
    log["action_prob"] = np.array([0.5, 0.5, 2.0, 0.5, 0.5, 0.5])
    msg = _raises(ValidationError, ips, **log)
    assert "action_prob must be in [0, 1]" in msg and "index 2" in msg


def test_estimated_rewards_shape_and_finiteness() -> None:
    log = _log()
    msg = _raises(ValidationError, dr, **log, estimated_rewards=np.zeros((6, 4)))
    assert "estimated_rewards must have shape (n, K) = (6, 3)" in msg and "(6, 4)" in msg
    q = np.zeros((6, 3))
    q[2, 1] = np.nan
    msg = _raises(ValidationError, dr, **log, estimated_rewards=q)
    assert "estimated_rewards must be finite" in msg and "index 2" in msg
    # DM with NaN in a zero-probability cell is still caught (0 * NaN is NaN).
    dist = np.zeros((6, 3))
    dist[:, 0] = 1.0
    msg = _raises(ValidationError, dm, action_dist=dist, estimated_rewards=q)
    assert "index 2" in msg


def test_three_dimensional_action_dist_needs_valid_positions() -> None:
    log = _log()
    log["action_dist"] = np.full((6, 3, 2), 1.0 / 3)
    msg = _raises(ValidationError, ips, **log)
    assert "position is required" in msg and "L = 2" in msg
    msg = _raises(ValidationError, ips, **log, position=np.array([0, 1, 2, 0, 1, 0]))
    assert "position must be in [0, 2)" in msg and "index 2" in msg
    est = ips(**log, position=np.array([0, 1, 1, 0, 1, 0]))
    assert est.value == pytest.approx(0.5)  # every weight is 1: the mean reward


def test_empty_log_is_a_data_error() -> None:
    msg = _raises(DataError, ips, reward=[], action=[], pscore=[], action_prob=[])
    assert "no logged rows" in msg


def test_two_dimensional_inputs_where_vectors_are_expected() -> None:
    log = _log()
    log["reward"] = np.zeros((6, 1))
    msg = _raises(ValidationError, ips, **log)
    assert "reward must be 1-d" in msg and "(6, 1)" in msg
