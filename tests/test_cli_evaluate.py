"""``bandit evaluate`` through typer's CliRunner: table, JSON schema, PNG, errors -> exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_policy_eval import click_prob, contexts, make_engine, write_engine_log
from typer.testing import CliRunner

from bandit_engine import Catalog, ProfileSchema
from bandit_engine.cli import app
from bandit_engine.errors import ConfigError
from bandit_engine.policies import LinUCB, UniformRandom

EXCERPT = Path(__file__).parent / "data" / "obd_excerpt"
runner = CliRunner()


@pytest.fixture
def csv_log(tmp_path: Path) -> Path:
    """A uniformly random log of 600 rows over arms a..d with a 3-feature context."""
    rng = np.random.default_rng(0)
    n = 600
    X = contexts(rng, n)
    a = rng.integers(0, 4, n)
    r = (rng.random(n) < click_prob(X)[np.arange(n), a]).astype(int)
    frame = pd.DataFrame(
        {
            "action": np.array(list("abcd"))[a],
            "candidates": "a|b|c|d",
            "propensity": 0.25,
            "reward": r,
            **{f"x_{j}": X[:, j] for j in range(3)},
        }
    )
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["evaluate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_table_output(csv_log: Path) -> None:
    code, out, err = invoke(
        str(csv_log), "--policy", "linucb:alpha=0.3,epsilon=0.1", "--estimators", "ips,dr,replay"
    )
    assert code == 0, err
    assert f"log:     {csv_log} (csv)" in out
    assert "300 rows evaluated, 300 earlier rows used to train the policy; 4 actions" in out
    assert "policy:  linucb(alpha=0.3, l2=1.0, epsilon=0.1)" in out
    assert "action distribution: exact" in out
    assert "logging policy (on-policy mean reward):" in out
    lines = out.splitlines()
    rows = {
        ln.split()[0]: ln.split()
        for ln in lines
        if ln.split() and ln.split()[0] in ("ips", "dr", "replay")
    }
    assert set(rows) == {"ips", "dr", "replay"}
    assert "uplift over the logging policy (paired interval on the same rows):" in out
    # Each estimator appears twice: once with its estimate, once with its uplift.
    assert sum(1 for ln in lines if ln.startswith("ips ")) == 2
    value = float(rows["ips"][1])
    assert 0.0 <= value <= 1.0
    assert err == ""


def test_json_schema_is_stable_and_strict(csv_log: Path, tmp_path: Path) -> None:
    code, out, err = invoke(
        str(csv_log),
        "--policy",
        "epsilon_greedy:epsilon=0.2",
        "--estimators",
        "snips,dm,ips",
        "--json",
        "--bootstrap",
        "50",
        "--seed",
        "3",
    )
    assert code == 0, err
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert list(doc) == [
        "schema",
        "log",
        "policy",
        "n_rows",
        "n_actions",
        "n_nonzero_rewards",
        "logging_policy",
        "estimates",
        "skipped",
        "support",
        "warnings",
        "settings",
    ]
    assert doc["schema"] == "bandit-evaluate/1"
    assert doc["log"]["format"] == "csv" and doc["log"]["uniform_logging"] is True
    assert doc["log"]["n_rows_loaded"] == 600 and doc["log"]["n_rows_evaluated"] == 300
    assert doc["policy"]["source"] == "policy" and doc["policy"]["train_rows"] == 300
    assert [e["estimator"] for e in doc["estimates"]] == ["snips", "dm", "ips"]
    for e in doc["estimates"]:
        assert {"value", "ci_low", "ci_high", "std_error", "n", "ess", "ci_method"} <= set(e)
        assert e["ci_method"] == "bootstrap"
        assert set(e["uplift"]) == {
            "estimator",
            "value",
            "ci_low",
            "ci_high",
            "std_error",
            "level",
            "ci_method",
            "significant",
            "supported",
        }
        assert e["uplift"]["value"] == pytest.approx(e["value"] - doc["logging_policy"]["value"])
    dm = next(e for e in doc["estimates"] if e["estimator"] == "dm")
    assert dm["ess"] is None  # DM has no weights: null, not NaN
    assert doc["settings"]["seed"] == 3 and doc["settings"]["n_bootstrap"] == 50
    # Same seed, same output.
    assert invoke(
        str(csv_log), "--policy", "epsilon_greedy:epsilon=0.2", "--estimators", "snips,dm,ips",
        "--json", "--bootstrap", "50", "--seed", "3",
    )[1] == out  # fmt: skip


def test_plot_is_a_png(csv_log: Path, tmp_path: Path) -> None:
    png = tmp_path / "estimates.png"
    code, out, err = invoke(str(csv_log), "--policy", "uniform", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a real figure, not an empty canvas
    assert f"plot written to {png}" in out


def test_engine_log_with_a_saved_model(
    tmp_path: Path, schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog
) -> None:
    db = tmp_path / "events.sqlite"
    write_engine_log(db, make_engine(schema, tables, catalog, UniformRandom(seed=1)), 200, 4)
    model = tmp_path / "model.bandit"
    make_engine(schema, tables, catalog, LinUCB(alpha=0.2, epsilon=0.2, seed=2)).save(model)
    code, out, err = invoke(
        str(db), "--model", str(model), "--estimators", "ips,snips,replay", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["log"]["format"] == "sqlite"
    assert doc["log"]["n_pending_skipped"] > 0  # the last attribution window is still open
    assert doc["log"]["n_rows_evaluated"] == doc["log"]["n_rows_loaded"]  # model: no training
    assert doc["policy"] == {
        "description": "linucb(alpha=0.2, l2=1.0, epsilon=0.2)",
        "action_dist": "exact",
        "source": "model",
        "model": str(model),
        "train_rows": 0,
    }
    # An untrained LinUCB ties every arm: its distribution is the uniform logging policy's,
    # so IPS and SNIPS reproduce the logged mean exactly.
    for e in doc["estimates"][:2]:
        assert e["value"] == pytest.approx(doc["logging_policy"]["value"], abs=1e-12)


def test_obd_folder(tmp_path: Path) -> None:
    code, out, err = invoke(
        str(EXCERPT), "--policy", "linucb:epsilon=0.1", "--estimators", "ips,online_replay"
    )
    assert code == 0, err
    assert "(obd)" in out and "80 actions" in out
    assert "warnings:" in out and "only 0 of 150 rows have a non-zero reward" in out


@pytest.mark.parametrize(
    ("args", "code", "field"),
    [
        ([], 3, "--model"),
        (["--policy", "linucb", "--model", "m.bandit"], 3, "--model"),
        (["--policy", "nonsense"], 3, "name"),
        (["--policy", "linucb:alpha=-1"], 3, "alpha must be >= 0, got -1"),
        (["--policy", "linucb:speed=3"], 3, "linucb.speed"),
        (["--policy", "linucb:alpha"], 3, "policy"),
        (["--policy", "uniform", "--estimators", "ips,magic"], 3, "estimators"),
        (["--policy", "uniform", "--reward-model", "forest"], 3, "reward-model"),
        (["--policy", "uniform", "--format", "xml"], 3, "format"),
        (["--policy", "uniform", "--plot", "out.jpg"], 3, "plot"),
        (["--policy", "uniform", "--train-fraction", "1.5"], 3, "train_fraction"),
        (["--policy", "uniform", "--bootstrap", "1"], 3, "bootstrap"),
    ],
)
def test_errors_map_to_exit_codes_with_one_line_naming_the_field(
    csv_log: Path, args: list[str], code: int, field: str
) -> None:
    rc, out, err = invoke(str(csv_log), *args)
    assert rc == code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert field in lines[0]


def test_file_and_data_errors(tmp_path: Path, csv_log: Path) -> None:
    rc, _, err = invoke(str(tmp_path / "absent.csv"), "--policy", "uniform")
    assert rc == 4 and "log" in err and "does not exist" in err
    rc, _, err = invoke(str(csv_log), "--model", str(tmp_path / "absent.bandit"))
    assert rc == 4 and "model" in err
    broken = tmp_path / "broken.bandit"
    broken.write_bytes(b"garbage" * 50)
    rc, _, err = invoke(str(csv_log), "--model", str(broken))
    assert rc == 5 and err.startswith("error: ")
    # Bad rows: reported with counts and row numbers (exit 3).
    bad = tmp_path / "bad.csv"
    bad.write_text("action,propensity,reward,x_0\na,0.5,1,0.1\nb,0,0,0.2\nb,1.5,0,0.3\n")
    rc, _, err = invoke(str(bad), "--policy", "uniform")
    assert rc == 3 and "propensity must be in (0, 1]: 2 of 3 rows (rows 2, 3" in err
    # No propensities: the weighting estimators are refused, pointing at DM (exit 6) ...
    nops = tmp_path / "nops.csv"
    nops.write_text(
        "action,reward,x_0\n" + "".join(f"{'ab'[i % 2]},{i % 3 == 0:d},{i}\n" for i in range(40))
    )
    rc, _, err = invoke(str(nops), "--policy", "uniform", "--estimators", "ips,snips")
    assert rc == 6 and "use dm" in err
    # ... while DM runs, and the refusal of IPS is a warning in the report.
    rc, out, err = invoke(str(nops), "--policy", "uniform", "--estimators", "ips,dm")
    assert rc == 0, err
    assert "ips skipped: ips needs the logging propensity" in out


def test_policy_spec_errors_name_the_parameter(csv_log: Path) -> None:
    """The --policy syntax is the simulator's (one parser); its errors reach the user as exit 3."""
    code, _, err = invoke(str(csv_log), "--policy", "linucb:alpah=0.3")
    assert code == 3
    assert "linucb.alpah" in err and "0.3" in err
    code, _, err = invoke(str(csv_log), "--policy", "linucb:alpha")
    assert code == 3 and "key=value" in err


def test_evaluate_log_is_the_library_behind_the_command(csv_log: Path) -> None:
    """The command renders what evaluate_log returns: same document from the library call."""
    from bandit_engine.evaluation import LogEvaluation, evaluate_log
    from bandit_engine.policies import make_policy

    args = ["--estimators", "ips,dm,replay", "--seed", "5", "--json"]
    code, out, err = invoke(str(csv_log), "--policy", "linucb:alpha=0.3", *args)
    assert code == 0, err
    result = evaluate_log(
        csv_log,
        policy=make_policy("linucb", alpha=0.3, seed=5),
        policy_spec="linucb:alpha=0.3",
        estimators=["ips", "dm", "replay"],
        seed=5,
    )
    assert isinstance(result, LogEvaluation)
    assert result.to_dict() == json.loads(out)
    assert result.policy["train_rows"] == 300 and result.log["n_rows_evaluated"] == 300
    # Without a spec the policy is described by its parameters; model and policy exclude each other.
    described = evaluate_log(csv_log, policy=make_policy("uniform", seed=0), estimators="ips")
    assert described.policy["spec"] == described.evaluation.policy
    with pytest.raises(ConfigError, match="exactly one of model"):
        evaluate_log(csv_log, estimators="ips")


def test_pair_policies_are_refused_offline_with_the_reason(csv_log: Path) -> None:
    """pair_ucb / pair_ts score per-user candidate rows a log does not hold: a clear error
    pointing to the simulator, not a shape error from inside the policy."""
    code, out, err = invoke(str(csv_log), "--policy", "pair_ucb")
    assert code != 0
    text = out + err
    assert "pair_ucb" in text and "bandit simulate" in text
    assert "Traceback" not in text
