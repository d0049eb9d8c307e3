"""`bandit purge`, `bandit forget-user` and the refusals of `bandit serve-policy`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.records import Decision
from bandit_engine.store import EventLog

KEY = "cli-test-hmac-key-0123456789"
runner = CliRunner()


def _log_decisions(db: Path, users: list[str], ts: list[float]) -> None:
    with EventLog(db, hmac_key=KEY.encode()) as log:
        for i, (u, t) in enumerate(zip(users, ts, strict=True)):
            d = Decision(f"d{i}", "a+b", "a", "b", 1.0, ("a+b",), (0.0,), "p", t)
            log.log_decision(d, user_id=u, x=np.ones(2), z=np.ones(2), model_id="m")


def test_purge_deletes_rows_older_than_the_cutoff(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    now = time.time()  # purge measures age against the wall clock
    _log_decisions(db, ["a", "b", "c"], [now - 10 * 86400, now - 3 * 86400, now])
    result = runner.invoke(app, ["purge", "--db", str(db), "--older-than", "36500"])
    assert result.exit_code == 0, result.output
    assert "decisions=0" in result.output
    result = runner.invoke(app, ["purge", "--db", str(db), "--older-than", "5"])
    assert result.exit_code == 0 and "decisions=1 " in result.output
    result = runner.invoke(app, ["purge", "--db", str(db), "--older-than", "1"])
    assert result.exit_code == 0 and "decisions=1 " in result.output
    with EventLog(db, hmac_key=None) as log:
        assert list(log.decisions_frame()["decision_id"]) == ["d2"]
    bad = runner.invoke(app, ["purge", "--db", str(db), "--older-than", "0"])
    assert bad.exit_code == 3 and "older_than must be > 0" in bad.output
    missing = runner.invoke(
        app, ["purge", "--db", str(tmp_path / "nope.sqlite"), "--older-than", "1"]
    )
    assert missing.exit_code == 4


def test_forget_user_by_argument_and_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "events.sqlite"
    _log_decisions(db, ["alice", "bob", "alice", "carol"], [1.0, 2.0, 3.0, 4.0])
    monkeypatch.delenv("BANDIT_HMAC_KEY", raising=False)
    result = runner.invoke(app, ["forget-user", "alice", "--db", str(db)])
    assert result.exit_code == 3 and "BANDIT_HMAC_KEY" in result.output
    monkeypatch.setenv("BANDIT_HMAC_KEY", KEY)
    result = runner.invoke(app, ["forget-user", "alice", "--db", str(db)])
    assert result.exit_code == 0 and "decisions=2" in result.output
    result = runner.invoke(app, ["forget-user", "-", "--db", str(db)], input="bob\n\ncarol\n")
    assert result.exit_code == 0 and "decisions=2" in result.output
    with EventLog(db, hmac_key=KEY.encode()) as log:
        assert len(log.decisions_frame()) == 0
    monkeypatch.setenv("BANDIT_HMAC_KEY", "another-key-0123456789abc")
    result = runner.invoke(app, ["forget-user", "alice", "--db", str(db)])
    assert result.exit_code == 3 and "does not match" in result.output


def test_serve_policy_refuses_to_start_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANDIT_API_TOKEN", raising=False)
    monkeypatch.delenv("BANDIT_HMAC_KEY", raising=False)
    db = str(tmp_path / "e.sqlite")
    result = runner.invoke(app, ["serve-policy", "--db", db])
    assert result.exit_code == 3 and "BANDIT_API_TOKEN" in result.output
    monkeypatch.setenv("BANDIT_API_TOKEN", "a-long-enough-token-0123")
    result = runner.invoke(app, ["serve-policy", "--db", db])
    assert result.exit_code == 3 and "BANDIT_HMAC_KEY" in result.output
    monkeypatch.setenv("BANDIT_HMAC_KEY", KEY)
    result = runner.invoke(app, ["serve-policy", "--db", db, "--synchronous", "sometimes"])
    assert result.exit_code == 3 and "synchronous" in result.output
    result = runner.invoke(
        app, ["serve-policy", "--db", db, "--model", str(tmp_path / "no.bandit")]
    )
    assert result.exit_code in (4, 5), result.output  # a missing model file is refused, not a crash
    assert "a-long-enough-token-0123" not in result.output
