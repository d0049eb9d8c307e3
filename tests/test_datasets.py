"""Loaders: the committed Open Bandit Dataset excerpt and crafted CSV / Parquet logs."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bandit_engine.errors import ConfigError, DataError, ValidationError
from bandit_engine.evaluation import dm, ips, replay
from bandit_engine.evaluation.datasets import load_log, load_obd
from bandit_engine.rewards import RewardSpec

EXCERPT = Path(__file__).parent / "data" / "obd_excerpt"
SHARED = Path("/work/shared/data/obd")


def _raw_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# -- Open Bandit Dataset -------------------------------------------------------------------


@pytest.mark.parametrize(("behavior", "n_rows"), [("random", 300), ("bts", 320)])
def test_load_obd_excerpt_matches_the_file(behavior: str, n_rows: int) -> None:
    data = load_obd(EXCERPT, behavior=behavior)  # type: ignore[arg-type]
    raw = _raw_rows(EXCERPT / behavior / "all" / "all.csv")
    assert data.n_rows == n_rows == len(raw)
    assert data.n_actions == 80 and data.action_context.shape[0] == 80
    # Files are 1-based (1, 2, 3); arrays are 0-based.
    assert {r["position"] for r in raw} == {"1", "2", "3"}
    np.testing.assert_array_equal(data.position, [int(r["position"]) - 1 for r in raw])
    np.testing.assert_array_equal(data.action, [int(r["item_id"]) for r in raw])
    np.testing.assert_allclose(data.pscore, [float(r["propensity_score"]) for r in raw])
    np.testing.assert_array_equal(data.reward, [float(r["click"]) for r in raw])
    assert data.n_positions == 3
    # Context: one-hot user features (one 1 per feature) then 80 affinities.
    n_user = sum(c.startswith("user_feature_") for c in data.context_columns)
    assert data.context.shape == (n_rows, n_user + 80)
    np.testing.assert_array_equal(data.context[:, :n_user].sum(axis=1), 4.0)
    np.testing.assert_allclose(
        data.context[:, n_user:],
        [[float(r[f"user-item_affinity_{j}"]) for j in range(80)] for r in raw],
    )
    assert data.timestamp.dtype == np.dtype("datetime64[ns]")
    assert str(data.timestamp[0]).startswith(raw[0]["timestamp"][:19].replace(" ", "T"))


def test_obd_random_logs_are_uniform_and_support_replay() -> None:
    data = load_obd(EXCERPT, behavior="random")
    np.testing.assert_allclose(data.pscore, 1.0 / 80)
    # Replay of the logging policy itself keeps every row: value = logged CTR.
    est = replay(
        reward=data.reward, action=data.action, policy_action=data.action, pscore=data.pscore
    )
    assert est.n == 300 and est.value == data.reward.mean()
    bts = load_obd(EXCERPT, behavior="bts")
    assert bts.reward.sum() == 1.0  # the click on data row 313 of the excerpt
    assert bts.pscore.min() < bts.pscore.max()  # BTS propensities vary
    est = ips(**bts.ope_arrays(), action_dist=np.full((320, 80), 1.0 / 80))
    assert np.isfinite(est.value) and est.n == 320


def test_load_obd_max_rows_and_errors(tmp_path: Path) -> None:
    assert load_obd(EXCERPT, behavior="bts", max_rows=25).n_rows == 25
    with pytest.raises(DataError, match="not found"):
        load_obd(tmp_path, behavior="random")
    with pytest.raises(ConfigError, match="behavior must be one of"):
        load_obd(EXCERPT, behavior="greedy")  # type: ignore[arg-type]
    # A copy with broken rows: every problem is reported with its 1-based data row number.
    folder = tmp_path / "random" / "all"
    folder.mkdir(parents=True)
    shutil.copy(EXCERPT / "random" / "all" / "item_context.csv", folder)
    frame = pd.read_csv(EXCERPT / "random" / "all" / "all.csv", index_col=0)
    frame.loc[4, "propensity_score"] = 0.0
    frame.loc[9, "propensity_score"] = 1.5
    frame.loc[6, "item_id"] = 80
    frame.loc[2, "click"] = 2
    frame.to_csv(folder / "all.csv")
    with pytest.raises(ValidationError) as info:
        load_obd(tmp_path, behavior="random")
    msg = str(info.value)
    assert "propensity_score must be in (0, 1]: 2 of 300 rows (rows 5, 10" in msg
    assert "item_id must be an item of item_context.csv, in [0, 80): 1 of 300 rows (row 7" in msg
    assert "click must be 0 or 1: 1 of 300 rows (row 3" in msg


@pytest.mark.skipif(not SHARED.is_dir(), reason="full OBD sample not available (fresh clone)")
def test_excerpt_is_the_head_of_the_shared_sample() -> None:
    full = load_obd(SHARED, behavior="bts")
    part = load_obd(EXCERPT, behavior="bts")
    np.testing.assert_array_equal(full.action[:320], part.action)
    np.testing.assert_array_equal(full.pscore[:320], part.pscore)
    assert full.n_rows == 10_000


# -- CSV / Parquet logs --------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """decision_id,timestamp,bundle_id,candidates,propensity,click,order,order_value,x_0,x_1
d1,2024-05-01T10:00:00Z,b2,"[""b1"", ""b2"", ""b10""]",0.5,1,0,0,0.1,1.0
d2,2024-05-01T10:01:00Z,b1,b1|b2,0.25,0,0,0,0.2,0.0
d3,2024-05-01T10:02:00Z,b10,b10|b1,0.5,1,1,30.0,0.3,1.0
d4,2024-05-01T10:03:00Z,b3,b3,1.0,0,0,0,0.4,0.0
"""


def test_load_log_csv_with_candidates_context_and_reward_spec(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    data = load_log(path)
    assert data.action_ids == ("b1", "b10", "b2", "b3")  # text ids sort as text
    np.testing.assert_array_equal(data.action, [2, 0, 1, 3])
    np.testing.assert_array_equal(data.reward, [1.0, 0.0, 1.0, 0.0])  # default: reward = click
    np.testing.assert_allclose(data.pscore, [0.5, 0.25, 0.5, 1.0])
    assert data.context is not None and data.context.shape == (4, 2)
    assert data.candidates is not None
    assert [c.tolist() for c in data.candidates] == [[0, 1, 2], [0, 2], [0, 1], [3]]
    np.testing.assert_array_equal(data.candidate_counts(), [3, 2, 2, 1])
    assert data.decision_id is not None and data.decision_id.tolist() == ["d1", "d2", "d3", "d4"]
    assert data.timestamp is not None and data.timestamp.dtype == np.dtype("datetime64[ns]")
    spec = RewardSpec(click=1.0, order=5.0, value_weight=0.1, cap=8.0, default_reward=-0.5)
    rewarded = load_log(path, reward_spec=spec)
    # d3: 1 click + 1 order (5) + 30 * 0.1 = 9, capped at 8; rows without events get -0.5.
    np.testing.assert_allclose(rewarded.reward, [1.0, -0.5, 8.0, -0.5])


def test_integer_ids_sort_numerically_and_parquet_equals_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(
        {
            "action": [10, 2, 2, 1],
            "propensity": [0.5, 0.5, 0.25, 0.25],
            "reward": [1.0, 0.0, 0.5, 0.0],
            "context": ["[1, 2]", "[3, 4]", "[5, 6]", "[7, 8]"],
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    a = load_log(tmp_path / "log.csv")
    b = load_log(tmp_path / "log.parquet")
    c = load_log(frame)
    for data in (a, b, c):
        assert data.action_ids == ("1", "2", "10")
        np.testing.assert_array_equal(data.action, [2, 1, 1, 0])
        np.testing.assert_array_equal(data.reward, [1.0, 0.0, 0.5, 0.0])
        assert data.context is not None
        np.testing.assert_array_equal(data.context, [[1, 2], [3, 4], [5, 6], [7, 8]])


BAD = """action,candidates,propensity,reward
a,a|b,0.5,1
b,a|b,0,0
c,a|b,0.5,1
a,a|b,,0
b,a|b,1.2,
a,a|b,0.5,1
"""


def test_load_log_reports_every_problem_with_counts_and_row_numbers(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_log(_write(tmp_path, BAD))
    msg = str(info.value)
    assert "3 problem(s)" in msg
    assert "propensity must be in (0, 1]: 2 of 6 rows (rows 2, 5; values 0, 1.2)" in msg
    assert "reward is missing: 1 of 6 rows (row 5)" in msg
    assert "action must be one of the row's candidates: 1 of 6 rows (row 3; values c)" in msg
    assert info.value.field == "propensity"
    # The same rows from Parquet give the same report.
    pytest.importorskip("pyarrow")
    pd.read_csv(tmp_path / "log.csv", dtype={"action": str}).to_parquet(tmp_path / "log.parquet")
    with pytest.raises(ValidationError) as again:
        load_log(tmp_path / "log.parquet")
    assert str(again.value).split(": ", 1)[1] == msg.split(": ", 1)[1]


def test_missing_propensities_load_but_weighting_estimators_point_at_dm(tmp_path: Path) -> None:
    text = "action,propensity,reward\nx,0.5,1\ny,,0\nx,0.5,0\ny,,1\n"
    data = load_log(_write(tmp_path, text))
    assert not data.has_pscore
    with pytest.raises(DataError) as info:
        data.require_pscore("ips")
    assert "rows 2, 4" in str(info.value) and "dm()" in str(info.value)
    assert data.pscore is not None
    with pytest.raises(DataError, match=r"rows 2, 4.*dm\(\)"):
        data.ope_arrays("ips")
    with pytest.raises(DataError, match=r"indices 1, 3.*dm\(\)"):
        ips(
            reward=data.reward,
            action=data.action,
            pscore=data.pscore,
            action_dist=np.full((4, 2), 0.5),
        )
    # DM needs no propensities.
    est = dm(action_dist=np.full((4, 2), 0.5), estimated_rewards=np.full((4, 2), 0.5))
    assert est.value == 0.5
    no_column = load_log(_write(tmp_path, "action,reward\nx,1\ny,0\n", "nop.csv"))
    assert no_column.pscore is None
    with pytest.raises(DataError, match=r"no 'propensity' column; use dm\(\)"):
        no_column.require_pscore("snips")


def test_load_log_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'action' \\(or 'bundle_id'\\) column is required"):
        load_log(_write(tmp_path, "reward\n1\n"))
    with pytest.raises(ValidationError, match=r"needs a 'reward' column or \['click'\]"):
        load_log(_write(tmp_path, "action\nx\n", "b.csv"))
    with pytest.raises(ValidationError, match=r"x_0\.\.x_1 without gaps"):
        load_log(_write(tmp_path, "action,reward,x_0,x_2\nx,1,0,0\n", "c.csv"))
    with pytest.raises(ConfigError, match="cannot infer"):
        load_log(tmp_path / "log.json")
    with pytest.raises(DataError, match="not found"):
        load_log(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="no rows"):
        load_log(_write(tmp_path, "action,reward\n", "e.csv"))
    with pytest.raises(ConfigError, match="reward_spec"):
        load_log(_write(tmp_path, "action,reward\nx,1\n", "f.csv"), reward_spec=RewardSpec())
    with pytest.raises(ValidationError, match=r"context must be a JSON list of 2 finite numbers"):
        load_log(
            pd.DataFrame(
                {"action": ["x", "y"], "reward": [1, 0], "context": ["[1, 2]", "[1, oops]"]}
            )
        )
