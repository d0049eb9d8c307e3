"""Tests of the SQLite event log (bandit_engine.store)."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bandit_engine.errors import ConfigError, DataError, NotFoundError, ValidationError
from bandit_engine.records import Decision, LearnedReward
from bandit_engine.store import (
    SCHEMA_VERSION,
    EventLog,
    bundle_matrix,
    context_matrix,
    load_hmac_key,
)

KEY = b"test-key-0123456789abcdef"


def make_decision(i: int, ts: float = 1000.0, bundle: str = "d1+c1") -> Decision:
    return Decision(
        decision_id=f"dec{i}",
        bundle_id=bundle,
        deal_id=bundle.split("+")[0],
        course_id=bundle.split("+")[1],
        propensity=0.5,
        candidates=("d1+c1", "d2+c1"),
        scores=(0.25, 0.125),
        policy_version="linucb:abc:0",
        timestamp=ts,
        probabilities=(0.5, 0.5),
    )


def log_one(log: EventLog, i: int, *, user: str | None = "alice", ts: float = 1000.0) -> int:
    x = np.array([1.0, float(i), 0.5])
    z = np.array([1.0, 0.0, 2.0, 3.0])
    return log.log_decision(make_decision(i, ts), user_id=user, x=x, z=z, model_id="m1")


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    lg = EventLog(tmp_path / "events.sqlite", hmac_key=KEY)
    yield lg
    lg.close()


# -- opening, settings, keys ------------------------------------------------------------------


def test_schema_wal_and_synchronous_settings(tmp_path: Path) -> None:
    for name, code in (("OFF", 0), ("NORMAL", 1), ("FULL", 2)):
        lg = EventLog(tmp_path / f"{name}.sqlite", hmac_key=KEY, synchronous=name)  # type: ignore[arg-type]
        c = lg._conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA synchronous").fetchone()[0] == code
        assert lg.get_meta("schema_version") == str(SCHEMA_VERSION)
        lg.close()


def test_bad_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous must be"):
        EventLog(tmp_path / "a.sqlite", hmac_key=KEY, synchronous="SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="busy_timeout must be > 0"):
        EventLog(tmp_path / "a.sqlite", hmac_key=KEY, busy_timeout=-1)
    with pytest.raises(ConfigError, match="hmac_key must hold at least 16 bytes, got 3"):
        EventLog(tmp_path / "a.sqlite", hmac_key=b"abc")
    with pytest.raises(NotFoundError, match="folder that does not exist"):
        EventLog(tmp_path / "missing" / "a.sqlite", hmac_key=KEY)


def test_not_an_event_log_and_future_schema(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DataError, match="not a bandit-engine event log"):
        EventLog(junk, hmac_key=KEY)
    path = tmp_path / "future.sqlite"
    EventLog(path, hmac_key=KEY).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(DataError, match=r"schema_version .*newer"):
        EventLog(path, hmac_key=KEY)


def test_wrong_key_is_refused_and_none_key_reads(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with EventLog(path, hmac_key=KEY) as lg:
        log_one(lg, 1)
    with pytest.raises(ConfigError, match="does not match the key"):
        EventLog(path, hmac_key=b"another-key-0123456789")
    with EventLog(path, hmac_key=None) as lg:  # analysis without the key
        assert len(lg.decisions_frame()) == 1
        with pytest.raises(ConfigError, match="without an HMAC key"):
            lg.get_profile("alice")


def test_load_hmac_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANDIT_HMAC_KEY", raising=False)
    with pytest.raises(ConfigError, match="BANDIT_HMAC_KEY") as info:
        load_hmac_key()
    assert "token_hex" in str(info.value)  # the hint shows how to make one
    with pytest.warns(RuntimeWarning, match="ephemeral"):
        k1 = load_hmac_key(ephemeral=True)
    with pytest.warns(RuntimeWarning):
        k2 = load_hmac_key(ephemeral=True)
    assert len(k1) == 32 and k1 != k2
    monkeypatch.setenv("BANDIT_HMAC_KEY", "  from-the-environment-123  ")
    assert load_hmac_key() == b"from-the-environment-123"
    f = tmp_path / "key"
    f.write_text("from-a-file-0123456789\n")
    assert load_hmac_key(file=f) == b"from-a-file-0123456789"  # the file wins over the env
    monkeypatch.setenv("BANDIT_HMAC_KEY", "shortsecret")
    with pytest.raises(ConfigError, match="at least 16 bytes, got 11") as info:
        load_hmac_key()
    assert "shortsecret" not in str(info.value)
    with pytest.raises(ConfigError, match="hmac_key_file must be an existing file"):
        load_hmac_key(file=tmp_path / "nope")


def test_pseudonym_is_hmac_sha256_and_raw_ids_never_reach_disk(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    raw = "user-RAW-ID-4242@example.com"
    lg = EventLog(path, hmac_key=KEY)
    expected = hmac.new(KEY, raw.encode(), hashlib.sha256).hexdigest()
    assert lg.pseudonym(raw) == expected
    assert lg.pseudonym(raw) != EventLog(":memory:", hmac_key=b"x" * 16 + KEY).pseudonym(raw)
    log_one(lg, 1, user=raw)
    lg.upsert_profile(raw, "groupbuy", {"city": "shanghai"})
    lg.log_event("dec1", "click", 0.0, 1001.0, "e1", "accepted")
    # bytes of the database and its WAL: the raw id must be absent, its pseudonym present
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("events"))
    assert raw.encode() not in blob
    assert expected.encode() in blob
    assert KEY not in blob
    lg.close()


# -- decisions, events, learning --------------------------------------------------------------


def test_decision_roundtrip_and_duplicate_id(log: EventLog) -> None:
    seq = log_one(log, 1)
    assert seq == 1 and log.last_seq() == 1
    d = log.decision("dec1")
    assert d["bundle_id"] == "d1+c1" and d["deal_id"] == "d1" and d["course_id"] == "c1"
    assert d["candidates"] == ["d1+c1", "d2+c1"] and d["probabilities"] == [0.5, 0.5]
    assert d["status"] == "pending" and d["reward"] is None and d["events"] == []
    assert "x" not in d and "user" not in d
    with pytest.raises(ValidationError, match=r"decision_id .*already in the event log"):
        log_one(log, 1)
    assert log.last_seq() == 1  # the failed insert consumed no seq
    with pytest.raises(NotFoundError, match="decision_id"):
        log.decision("nope")
    with pytest.raises(ValidationError, match="x must be a 1-D array"):
        log.log_decision(
            make_decision(2), user_id=None, x=np.ones((2, 2)), z=np.ones(3), model_id="m"
        )


def test_events_counters_learning_and_late_status(log: EventLog) -> None:
    log_one(log, 1)
    log_one(log, 2)
    assert log.log_event("dec1", "click", 0.0, 1001.0, "e1", "accepted")
    assert not log.log_event("dec1", "click", 0.0, 1002.0, "e1", "accepted")  # same id: once
    assert log.log_event("dec1", "order", 30.0, 1003.0, None, "accepted")
    assert log.log_event("dec1", "order", 30.0, 1003.0, None, "accepted")  # no id: no dedupe
    assert log.log_learned(LearnedReward("dec1", "d1+c1", 3.0, "learned", 3, 5000.0))
    assert log.log_learned(LearnedReward("dec2", "d1+c1", 0.0, "default", 0, 5000.0))
    assert log.log_event("dec2", "click", 0.0, 9000.0, "late1", "late")
    assert not log.log_learned(LearnedReward("ghost", "d1+c1", 0.0, "default", 0, 5000.0))
    # learning the same decision again (a replay) keeps the first record
    assert not log.log_learned(LearnedReward("dec1", "d1+c1", 9.0, "learned", 3, 7000.0))
    d1, d2 = log.decision("dec1"), log.decision("dec2")
    assert (d1["status"], d1["reward_status"], d1["reward"], d1["n_events"]) == (
        "learned",
        "learned",
        3.0,
        3,
    )
    assert [e["event_id"] for e in d1["events"]] == ["e1", None, None]
    assert (d2["status"], d2["reward_status"], d2["n_late"]) == ("default", "late", 1)
    # the engine checks a type against its RewardSpec (declared types beyond click / order);
    # the log refuses what is no type name at all
    for bad in ("", "x" * 33, None):
        with pytest.raises(ValidationError, match="type must be an event type name"):
            log.log_event("dec1", bad, 0.0, 1.0, None, "accepted")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="value must be a finite number"):
        log.log_event("dec1", "order", float("nan"), 1.0, None, "accepted")
    counts = log.counts()
    assert counts["decisions"] == 2 and counts["events"] == 4 and counts["learned"] == 2


def test_transaction_groups_and_rolls_back(log: EventLog) -> None:
    with log.transaction():
        log_one(log, 1)
        with log.transaction():  # nested: joins
            log_one(log, 2)
    assert log.last_seq() == 2
    with pytest.raises(RuntimeError), log.transaction():
        log_one(log, 3)
        log.log_event("dec3", "click", 0.0, 1001.0, "e", "accepted")
        raise RuntimeError("boom")
    assert not log.has_decision("dec3")
    assert log.last_seq() == 2  # seqs of the rolled-back writes are not burnt
    assert log_one(log, 4) == 3


def test_read_only(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with pytest.raises(NotFoundError, match="path"):
        EventLog(path, hmac_key=KEY, read_only=True)
    with EventLog(path, hmac_key=KEY) as lg:
        log_one(lg, 1)
    with EventLog(path, hmac_key=KEY, read_only=True) as ro:
        assert ro.decision("dec1")["bundle_id"] == "d1+c1"
        with pytest.raises(ConfigError, match="read_only"):
            log_one(ro, 2)


# -- frames and journal -----------------------------------------------------------------------


def test_decisions_frame_columns_sums_and_context(log: EventLog) -> None:
    for i in range(4):
        log_one(log, i, ts=1000.0 + i)
    log.log_event("dec0", "click", 0.0, 1001.0, "a", "accepted")
    log.log_event("dec0", "order", 40.0, 1002.0, "b", "accepted")
    log.log_event("dec0", "order", 2.5, 1003.0, "c", "accepted")
    log.log_event("dec0", "order", 999.0, 9999.0, "d", "late")  # not in window: not summed
    log.log_learned(LearnedReward("dec0", "d1+c1", 3.0, "learned", 3, 5000.0))
    frame = log.decisions_frame()
    assert list(frame["decision_id"]) == ["dec0", "dec1", "dec2", "dec3"]
    row = frame.iloc[0]
    assert (row["click"], row["order"], row["order_value"], row["n_late"]) == (1, 2, 42.5, 1)
    assert row["reward"] == 3.0 and row["status"] == "learned"
    assert np.isnan(frame["reward"].iloc[1]) and frame["status"].iloc[1] == "pending"
    assert frame["candidates"].iloc[0] == ("d1+c1", "d2+c1")
    np.testing.assert_array_equal(frame["probabilities"].iloc[0], [0.5, 0.5])
    # one stored candidate list serves every decision that had it
    assert log._conn.execute("SELECT count(*) FROM candidate_sets").fetchone()[0] == 1
    X = context_matrix(frame)
    assert X.shape == (4, 3)
    np.testing.assert_array_equal(X[:, 1], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(bundle_matrix(frame)[0], [1.0, 0.0, 2.0, 3.0])
    sub = log.decisions_frame(since=1001.0, until=1003.0)
    assert list(sub["decision_id"]) == ["dec1", "dec2"]
    assert log.decisions_frame(model_id="other").empty
    with pytest.raises(DataError, match="no x_0"):
        context_matrix(pd.DataFrame({"a": [1]}))


def test_decisions_frame_refuses_mixed_dimensions(log: EventLog) -> None:
    log_one(log, 1)
    log.log_decision(make_decision(2), user_id=None, x=np.ones(5), z=np.ones(4), model_id="m2")
    with pytest.raises(DataError, match="pass model_id"):
        log.decisions_frame()
    assert context_matrix(log.decisions_frame(model_id="m2")).shape == (1, 5)


def test_entries_since_in_commit_order(log: EventLog) -> None:
    log_one(log, 1)
    log.log_admin("add_deals", {"deals": [{"deal_id": "d9"}]}, ts=1000.5)
    log.log_event("dec1", "click", 0.0, 1001.0, "e1", "accepted")
    log_one(log, 2)
    log.log_learned(LearnedReward("dec1", "d1+c1", 1.0, "learned", 1, 5000.0))
    kinds = [(e.seq, e.kind) for e in log.entries_since(0)]
    assert kinds == [(1, "decision"), (2, "admin"), (3, "event"), (4, "decision"), (5, "learned")]
    tail = list(log.entries_since(3))
    assert [e.seq for e in tail] == [4, 5]
    first = next(iter(log.entries_since(0)))
    np.testing.assert_array_equal(first.data["x"], [1.0, 1.0, 0.5])
    assert first.data["candidates"] == ["d1+c1", "d2+c1"]
    admin = next(e for e in log.entries_since(0) if e.kind == "admin")
    assert admin.data["payload"] == {"deals": [{"deal_id": "d9"}]}
    with pytest.raises(ValidationError, match="payload must be finite JSON"):
        log.log_admin("add_deals", {"price": float("inf")})
    with pytest.raises(ValidationError, match="seq must be an integer >= 0"):
        list(log.entries_since(-1))


# -- profiles, forgetting, purging ------------------------------------------------------------


def test_profiles_upsert_merge_replace(log: EventLog) -> None:
    assert log.get_profile("bob") is None
    log.upsert_profile("bob", "groupbuy", {"city": "shanghai", "avg_ticket": 80})
    log.upsert_profile("bob", "groupbuy", {"avg_ticket": 95})
    log.upsert_profile("bob", "courses", {"member": True})
    assert log.get_profile("bob") == {
        "groupbuy": {"city": "shanghai", "avg_ticket": 95},
        "courses": {"member": True},
    }
    log.upsert_profile("bob", "groupbuy", {"city": "beijing"}, replace=True)
    assert log.get_profile("bob")["groupbuy"] == {"city": "beijing"}  # type: ignore[index]
    with pytest.raises(ValidationError, match="fields must be JSON values with finite numbers"):
        log.upsert_profile("bob", "groupbuy", {"avg_ticket": float("nan")})
    assert log.get_profile("bob")["groupbuy"] == {"city": "beijing"}  # type: ignore[index]


def test_forget_user_removes_every_row_under_the_pseudonym(log: EventLog) -> None:
    log_one(log, 1, user="carol")
    log_one(log, 2, user="carol")
    log_one(log, 3, user="dave")
    log.log_event("dec1", "click", 0.0, 1001.0, "e", "accepted")
    log.log_event("dec3", "click", 0.0, 1001.0, "e", "accepted")
    log.log_learned(LearnedReward("dec1", "d1+c1", 1.0, "learned", 1, 5000.0))
    log.upsert_profile("carol", "groupbuy", {"city": "x"})
    # the shared live-behaviour rows (split roles) are keyed by the pseudonym's first 12 bytes
    row = bytes(28)  # one float32 and the row's three timestamps
    log.put_behaviour([(log.pseudonym(u)[:24], 1, row) for u in ("carol", "dave")], seq=0)
    counts = log.forget_user("carol")
    assert counts == {
        "profiles": 1,
        "decisions": 2,
        "events": 1,
        "learned": 1,
        "behaviour": 1,
        "consent_log": 0,
        "rule_shows": 0,
        "decision_modes": 0,
    }
    assert log.get_profile("carol") is None
    assert list(log.decisions_frame()["decision_id"]) == ["dec3"]
    assert log.decision("dec3")["n_events"] == 1
    assert log.behaviour_of(log.pseudonym("carol")[:24]) is None
    assert log.behaviour_of(log.pseudonym("dave")[:24]) == (1, row)
    # a pending decision of a forgotten user learns in memory but writes nothing back
    assert not log.log_learned(LearnedReward("dec2", "d1+c1", 0.0, "default", 0, 5000.0))
    assert log.forget_user("carol") == {
        "profiles": 0,
        "decisions": 0,
        "events": 0,
        "learned": 0,
        "behaviour": 0,
        "consent_log": 0,
        "rule_shows": 0,
        "decision_modes": 0,
    }


def test_purge_respects_age_and_checkpoint(log: EventLog) -> None:
    day = 86400.0
    for i in range(4):
        log_one(log, i, ts=i * day)
        log.log_event(f"dec{i}", "click", 0.0, i * day + 1, "e", "accepted")
    log.log_admin("retire_deals", {"deal_ids": ["d1"]}, ts=0.5)
    # shared live-behaviour rows (split roles): one last updated on day 1, one on day 2
    rows = [
        (f"{u:024x}", 1, bytes(4) + np.array([t, 0, 0], "<f8").tobytes())
        for u, t in ((1, 1 * day), (2, 2 * day))
    ]
    log.put_behaviour(rows, seq=0)
    with pytest.raises(ValidationError, match="older_than_seconds must be >= 0"):
        log.purge(-1.0, now=0.0)
    # a checkpoint covering only the first 2 journal rows protects everything after it
    log.set_meta("checkpoint_seq", "2")
    counts = log.purge(1.5 * day, now=3 * day)
    # behaviour rows are current state, not journal: the checkpoint does not protect them
    assert counts == {"decisions": 1, "events": 1, "learned": 0, "admin": 0, "behaviour": 1}
    assert log.behaviour_of(f"{1:024x}") is None and log.behaviour_of(f"{2:024x}") is not None
    log.set_meta("checkpoint_seq", str(log.last_seq()))
    counts = log.purge(1.5 * day, now=3 * day)
    assert counts == {"decisions": 1, "events": 1, "learned": 0, "admin": 1, "behaviour": 0}
    assert list(log.decisions_frame()["decision_id"]) == ["dec2", "dec3"]
    assert log.integrity_check() == "ok"


def test_candidate_set_cache_survives_a_rollback(log: EventLog) -> None:
    odd = Decision(
        decision_id="odd",
        bundle_id="d9+c9",
        deal_id="d9",
        course_id="c9",
        propensity=1.0,
        candidates=("d9+c9",),
        scores=(0.0,),
        policy_version="p",
        timestamp=1.0,
    )
    x, z = np.ones(3), np.ones(4)
    with pytest.raises(RuntimeError), log.transaction():
        log.log_decision(odd, user_id=None, x=x, z=z, model_id="m")
        raise RuntimeError("rolled back: the new candidate set is gone too")
    log.log_decision(odd, user_id=None, x=x, z=z, model_id="m")
    assert log.decision("odd")["candidates"] == ["d9+c9"]
    assert log.decision("odd")["probabilities"] is None


def test_migrations_run_the_steps_above_the_stored_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bandit_engine.store import schema

    path = tmp_path / "m.sqlite"
    EventLog(path, hmac_key=KEY).close()  # version 1
    ran: list[int] = []

    def version_2(conn: sqlite3.Connection) -> None:
        ran.append(2)
        conn.execute("CREATE TABLE IF NOT EXISTS extra (id INTEGER PRIMARY KEY)")

    nxt = schema.SCHEMA_VERSION + 1  # one step past the current version
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, version_2))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", nxt)
    with EventLog(path, hmac_key=KEY) as lg:
        assert lg.get_meta("schema_version") == str(nxt)
    with EventLog(path, hmac_key=KEY):
        pass
    assert ran == [2]  # once: the second opening finds version 2 already
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone()
    con.close()


def test_a_held_write_lock_is_a_store_busy_error_naming_the_db(tmp_path: Path) -> None:
    from bandit_engine.errors import StoreBusyError

    path = tmp_path / "busy.sqlite"
    with EventLog(path, hmac_key=KEY, busy_timeout=0.05) as lg:
        blocker = sqlite3.connect(path, timeout=0.01)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusyError) as info:
                lg.log_admin("add_deals", {"deals": []}, ts=1.0)
            assert info.value.field == "db"
        finally:
            blocker.rollback()
            blocker.close()
        lg.log_admin("add_deals", {"deals": []}, ts=2.0)  # usable again once the lock is gone
        assert lg.last_seq() == 1


def test_another_applications_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="another application") as info:
        EventLog(path, hmac_key=KEY)
    assert info.value.field == "path"
    con = sqlite3.connect(path)  # nothing was added to it
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert names == {"users"}
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # an empty database is fine
    EventLog(empty, hmac_key=KEY).close()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (unwritable)")
def test_an_unwritable_place_is_a_config_error_naming_the_path() -> None:
    with pytest.raises(ConfigError, match="cannot be opened for writing") as info:
        EventLog("/proc/bandit-test-events.sqlite", hmac_key=KEY)
    assert info.value.field == "path"
