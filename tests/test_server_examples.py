"""The two server-side examples run and do what they say (smoke tests with real assertions)."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embed_web_app_logs_what_it_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "shop.sqlite"
    out = _load("embed_web_app").main(["--db", str(db), "--visits", "25", "--seed", "3"])
    assert out["offers"] + out["refused"] == 25 and out["offers"] > 0
    assert out["logged_decisions"] == out["offers"]  # every offer shown was logged
    assert out["logged_clicks"] == out["clicks"] > 0
    assert f"{out['offers']} offers" in capsys.readouterr().out
    con = sqlite3.connect(db)
    try:
        users = {r[0] for r in con.execute("SELECT user FROM decisions")}
    finally:
        con.close()
    assert all(len(u) == 64 and not u.startswith("U0") for u in users)  # pseudonyms, not raw ids


@pytest.mark.slow
def test_http_client_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """decisions -> events -> windows close -> learned -> `bandit evaluate` on the event log."""
    db = tmp_path / "events.sqlite"
    out = _load("http_client_end_to_end").main(
        ["--spawn", "--db", str(db), "--n", "30", "--window", "2"]
    )
    assert out["decisions"] + out["no_bundle"] == 30 and out["decisions"] > 0
    ev = out["events"]
    assert ev.get("duplicate", 0) >= 1 and ev.get("accepted", 0) >= ev["duplicate"]
    assert out["first_record"]["bundle_id"]
    assert out["last_status"] in ("learned", "default")  # the last window closed and was learned
    assert out["evaluate_exit_code"] == 0
    report = out["evaluate_output"]
    assert f"{out['decisions']} rows evaluated" in report
    for name in ("ips", "snips", "dm", "dr"):
        assert re.search(rf"^{name}\s+[-+]?\d", report, re.M), name
    text = capsys.readouterr().out
    assert f"$ bandit evaluate {db} --model" in text
    con = sqlite3.connect(db)
    try:
        n_dec = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
        n_ev = con.execute("SELECT count(*) FROM events").fetchone()[0]
        pending = con.execute("SELECT count(*) FROM decisions WHERE status = 'pending'").fetchone()
    finally:
        con.close()
    assert n_dec == out["decisions"]
    assert n_ev == ev["accepted"]  # duplicates were recognised and stored once
    assert pending[0] == 0
