"""The event log on both backends: SQLite and PostgreSQL behind one store interface.

The backend-independent tests of the SQLite suite (``test_store.py``, left as it is) run here again
on every backend; the tests below them cover what opening differs in (URLs, schemas, migrations,
errors) and check that the two backends store and return the same thing for the same traffic.
PostgreSQL tests need the server of ``conftest.PG_URL``: without it they skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import test_store as sqlite_suite
from conftest import PG_URL, pg_schema_url
from test_store import KEY, log_one, make_decision

from bandit_engine.errors import (
    ConfigError,
    DataError,
    NotFoundError,
    StoreBusyError,
    ValidationError,
)
from bandit_engine.records import LearnedReward
from bandit_engine.store import SCHEMA_VERSION, EventLog, EventStore, open_log, redact
from bandit_engine.store import schema as sqlite_schema

# The SQLite suite's tests that use nothing but the store interface: each runs on both backends.
SHARED: list[Callable[[Any], None]] = [
    sqlite_suite.test_decision_roundtrip_and_duplicate_id,
    sqlite_suite.test_events_counters_learning_and_late_status,
    sqlite_suite.test_transaction_groups_and_rolls_back,
    sqlite_suite.test_decisions_frame_columns_sums_and_context,
    sqlite_suite.test_decisions_frame_refuses_mixed_dimensions,
    sqlite_suite.test_entries_since_in_commit_order,
    sqlite_suite.test_profiles_upsert_merge_replace,
    sqlite_suite.test_forget_user_removes_every_row_under_the_pseudonym,
    sqlite_suite.test_purge_respects_age_and_checkpoint,
    sqlite_suite.test_candidate_set_cache_survives_a_rollback,
]


@pytest.fixture
def log(db_target: str) -> Iterator[EventStore]:
    lg = open_log(db_target, hmac_key=KEY)
    yield lg
    lg.close()


@pytest.mark.parametrize("case", SHARED, ids=lambda f: f.__name__.removeprefix("test_"))
def test_the_sqlite_suite_on_each_backend(case: Callable[[Any], None], log: EventStore) -> None:
    case(log)


def test_the_factory_picks_the_backend_from_the_value(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg:
        kind = type(lg).__name__
        assert kind == ("PostgresEventLog" if db_target.startswith("postgresql") else "EventLog")
        assert lg.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert lg.integrity_check() == "ok"


# -- what both backends must do alike -----------------------------------------------------------


def test_a_duplicate_decision_does_not_undo_the_rest_of_its_transaction(log: EventStore) -> None:
    # a server batch: one request reuses a decision id, the others must still commit (on
    # PostgreSQL a unique violation would abort the whole transaction)
    log.begin()
    log_one(log, 1)
    with pytest.raises(ValidationError, match="already in the event log"):
        log_one(log, 1)
    assert log.log_event("dec1", "click", 0.0, 1001.0, "e1", "accepted")
    log_one(log, 2)
    log.commit()
    assert [e.seq for e in log.entries_since(0)] == [1, 2, 3]
    assert log.has_decision("dec2") and log.decision("dec1")["n_events"] == 1


def test_same_event_from_concurrent_connections_is_stored_once(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg:
        log_one(lg, 1)
    logs = [open_log(db_target, hmac_key=KEY) for _ in range(6)]
    results: list[bool] = []
    barrier = threading.Barrier(len(logs))

    def post(lg: EventStore) -> None:
        barrier.wait()
        results.append(lg.log_event("dec1", "click", 0.0, 1001.0, "same", "accepted"))

    threads = [threading.Thread(target=post, args=(lg,)) for lg in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert logs[0].decision("dec1")["n_events"] == 1
    # the journal stayed in commit order: one seq per stored row, no gap, no repeat
    assert [e.seq for e in logs[0].entries_since(0)] == [1, 2]
    for lg in logs:
        lg.close()


def test_writers_in_several_processes_take_turns_on_the_journal(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg:
        pass
    logs = [open_log(db_target, hmac_key=KEY) for _ in range(4)]
    barrier = threading.Barrier(len(logs))

    def write(k: int, lg: EventStore) -> None:
        barrier.wait()
        for i in range(10):
            log_one(lg, 100 * k + i, user=f"user{k}")

    threads = [threading.Thread(target=write, args=(k, lg)) for k, lg in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in logs[0].entries_since(0)]
    assert seqs == list(range(1, 41)) and logs[0].last_seq() == 40
    for lg in logs:
        lg.close()


def test_reopening_keeps_everything_and_refuses_another_key(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg:
        log_one(lg, 1)
        lg.upsert_profile("alice", "groupbuy", {"city": "x"})
        lg.set_meta("checkpoint_seq", "1")
    with open_log(db_target, hmac_key=KEY) as lg:  # migrations find the current version: no-op
        assert lg.get_meta("checkpoint_seq") == "1" and lg.last_seq() == 1
        assert lg.decision_ids_of("alice") == ["dec1"]
        assert lg.get_profile("alice") == {"groupbuy": {"city": "x"}}
    with pytest.raises(ConfigError, match="does not match the key"):
        open_log(db_target, hmac_key=b"another-key-0123456789")
    with open_log(db_target, hmac_key=None, read_only=True) as ro:
        assert len(ro.decisions_frame()) == 1
        with pytest.raises(ConfigError, match="read_only"):
            log_one(ro, 2, user=None)
        with pytest.raises(ConfigError, match="without an HMAC key"):
            ro.get_profile("alice")


def test_must_exist_never_creates_a_log(db_target: str) -> None:
    with pytest.raises(NotFoundError, match="is not an existing event log") as info:
        open_log(db_target, hmac_key=None, must_exist=True)
    assert info.value.field in ("db", "path")
    with pytest.raises(NotFoundError, match="is not an existing event log"):
        open_log(db_target, hmac_key=None, read_only=True)
    open_log(db_target, hmac_key=KEY).close()
    open_log(db_target, hmac_key=None, must_exist=True).close()


def _traffic(lg: EventStore) -> None:
    """The same writes, whatever the backend: every kind of row, odd values included."""
    for i in range(5):
        log_one(lg, i, user=["alice", "bob", None][i % 3], ts=1000.0 + i)
    lg.log_event("dec0", "click", 0.0, 1001.0, "a", "accepted")
    lg.log_event("dec0", "order", 12.5, 1002.0, None, "accepted")
    lg.log_event("dec1", "click", 0.0, 1003.0, "a", "accepted")
    lg.log_event("dec1", "click", 0.0, 1003.0, "a", "accepted")  # duplicate: once
    lg.log_admin("add_deals", {"z": 1e300, "a": -0.0, "n": [1, 2.5, "x"]}, ts=1004.0)
    lg.log_learned(LearnedReward("dec0", "d1+c1", 3.25, "learned", 2, 5000.0))
    lg.log_learned(LearnedReward("dec2", "d1+c1", 0.0, "default", 0, 5000.0))
    lg.log_event("dec2", "order", 99.0, 9000.0, "late", "late")
    lg.upsert_profile("alice", "groupbuy", {"city": "shanghai", "avg": 0.1})
    lg.upsert_profile("bob", "knowledge", {"topics": ["a", "b"]})
    lg.forget_user("bob")


def test_both_backends_store_and_return_the_same(tmp_path: Any, pg_url: str) -> None:
    out = []
    for target in (str(tmp_path / "e.sqlite"), pg_url):
        with open_log(target, hmac_key=KEY) as lg:
            _traffic(lg)
            out.append(
                {
                    "journal": [(e.seq, e.kind, _plain(e.data)) for e in lg.entries_since(0)],
                    "decisions": [lg.decision(f"dec{i}") for i in (0, 2, 3)],
                    "frame": lg.decisions_frame(),
                    "counts": lg.counts(),
                    "profile": lg.get_profile("alice"),
                    "ids": lg.decision_ids_of("alice"),
                    "last": lg.last_seq(),
                }
            )
    sqlite, pg = out
    pd.testing.assert_frame_equal(sqlite.pop("frame"), pg.pop("frame"))
    assert sqlite == pg
    admin = next(d for _, kind, d in pg["journal"] if kind == "admin")
    assert admin["payload"] == {"z": 1e300, "a": -0.0, "n": [1, 2.5, "x"]}
    assert list(admin["payload"]) == ["z", "a", "n"]  # JSON, not JSONB: keys keep their order
    assert isinstance(admin["payload"]["z"], float)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}


# -- PostgreSQL: opening, schemas, migrations, errors -----------------------------------------


def test_pseudonyms_are_bytea_and_raw_ids_never_reach_the_database(pg_url: str) -> None:
    import psycopg

    with open_log(pg_url, hmac_key=KEY) as lg:
        log_one(lg, 1, user="alice-raw-id")
        lg.upsert_profile("alice-raw-id", "groupbuy", {"city": "x"})
        pseudonym = lg.pseudonym("alice-raw-id")
    with psycopg.connect(pg_url) as conn:
        users = conn.execute('SELECT "user" FROM decisions UNION ALL SELECT "user" FROM profiles')
        assert [bytes(r[0]) for r in users] == [bytes.fromhex(pseudonym)] * 2
        dump = " ".join(
            str(r)
            for table in ("decisions", "profiles", "meta", "candidate_sets")
            for r in conn.execute(f"SELECT * FROM {table}")
        )
        kinds = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'decisions'"
            ).fetchall()
        )
    assert "alice-raw-id" not in dump
    assert (kinds["user"], kinds["x"], kinds["ts"], kinds["seq"]) == (
        "bytea",
        "bytea",
        "double precision",
        "bigint",
    )


def test_same_tables_and_columns_as_sqlite(tmp_path: Any, pg_url: str) -> None:
    import sqlite3

    import psycopg

    EventLog(tmp_path / "e.sqlite", hmac_key=KEY).close()
    open_log(pg_url, hmac_key=KEY).close()
    con = sqlite3.connect(tmp_path / "e.sqlite")
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in tables}
    lite_idx = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    con.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ).fetchall()
        pg_idx = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            )
        }
    pg: dict[str, list[str]] = {}
    for table, column in rows:
        pg.setdefault(table, []).append(column)
    assert pg == lite
    assert {i for i in lite_idx if i.startswith("idx_")} <= pg_idx


def test_migrations_run_the_steps_above_the_stored_version(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from bandit_engine.store import pg_schema

    assert pg_schema.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION == SCHEMA_VERSION
    open_log(pg_url, hmac_key=KEY).close()  # version 1 from an empty schema
    ran: list[int] = []

    def version_2(conn: psycopg.Connection[Any]) -> None:
        ran.append(2)
        conn.execute("CREATE TABLE IF NOT EXISTS extra (id BIGINT PRIMARY KEY)")

    nxt = pg_schema.SCHEMA_VERSION + 1  # one step past the current version
    monkeypatch.setattr(pg_schema, "MIGRATIONS", (*pg_schema.MIGRATIONS, version_2))
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", nxt)
    with open_log(pg_url, hmac_key=KEY) as lg:
        assert lg.get_meta("schema_version") == str(nxt)
    open_log(pg_url, hmac_key=KEY).close()
    assert ran == [2]  # once: the second opening finds version 2 already
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"schema_version .*newer"):
        open_log(pg_url, hmac_key=KEY)


def test_a_failed_migration_leaves_the_old_version_whole(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from bandit_engine.store import pg_schema

    open_log(pg_url, hmac_key=KEY).close()

    def broken(conn: psycopg.Connection[Any]) -> None:
        conn.execute("CREATE TABLE half_done (id BIGINT)")
        conn.execute("SELECT no_such_function()")

    monkeypatch.setattr(pg_schema, "MIGRATIONS", (*pg_schema.MIGRATIONS, broken))
    monkeypatch.setattr(pg_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(DataError, match="refused the schema"):
        open_log(pg_url, hmac_key=KEY)
    monkeypatch.undo()
    with open_log(pg_url, hmac_key=KEY) as lg, psycopg.connect(pg_url) as conn:
        assert lg.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)


def test_two_processes_creating_one_log_at_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        barrier.wait()
        try:
            open_log(pg_url, hmac_key=KEY).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_log(pg_url, hmac_key=KEY) as lg:
        assert lg.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_another_applications_schema_is_refused(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT)")
    with pytest.raises(DataError, match="another application") as info:
        open_log(pg_url, hmac_key=KEY)
    assert info.value.field == "db"
    with psycopg.connect(pg_url) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
    assert names == {"users"}  # nothing was added


def test_a_search_path_naming_no_schema_is_a_clear_error(pg_server: str) -> None:
    url = pg_schema_url(pg_server, "bandit_no_such_schema")
    with pytest.raises(NotFoundError, match="no existing schema") as info:
        open_log(url, hmac_key=KEY)
    assert info.value.field == "db"


def test_bad_urls_and_unreachable_servers_name_the_field_and_hide_the_password() -> None:
    with pytest.raises(ConfigError, match="db must be a valid PostgreSQL URL") as info:
        open_log("postgresql://app:s3cret@127.0.0.1/%zz", hmac_key=KEY)
    assert info.value.field == "db" and "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="db must name a port") as info:
        open_log("postgresql://app:s3cret@127.0.0.1:notaport/test", hmac_key=KEY)
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="must be a file path or a postgresql:// URL") as info:
        open_log("mysql://app:s3cret@127.0.0.1/test", hmac_key=KEY)
    assert "s3cret" not in str(info.value)
    # port 9 (discard) on loopback: nothing listens there
    with pytest.raises(StoreBusyError, match="db must name a reachable PostgreSQL server") as info:
        open_log("postgresql://app:s3cret@127.0.0.1:9/test", hmac_key=KEY)
    assert info.value.field == "db" and "s3cret" not in str(info.value)
    assert "app:***@127.0.0.1:9" in str(info.value)


def test_a_database_the_server_refuses_is_a_config_error(pg_server: str) -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/bandit_no_such_database"
    with pytest.raises(ConfigError, match="db must name a PostgreSQL database") as info:
        open_log(url, hmac_key=KEY)
    assert info.value.field == "db"


def test_redact_hides_passwords_in_every_place_a_url_carries_one() -> None:
    assert redact("postgresql://app:pw@h:5432/db") == "postgresql://app:***@h:5432/db"
    assert redact("postgres://app:p@ss/w@h/db") == "postgres://app:***@h/db"
    assert redact("postgresql://h/db?user=a&password=pw&x=1") == (
        "postgresql://h/db?user=a&password=***&x=1"
    )
    assert redact("events.sqlite") == "events.sqlite"


def test_the_password_stays_out_of_repr_and_busy_errors(pg_url: str) -> None:
    # trust authentication ignores the password, which lets a test put one in the URL
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    with open_log(url, hmac_key=KEY) as lg:
        assert "s3cret" not in repr(lg) and "***" in repr(lg)
        assert "s3cret" not in lg.where


def test_a_lost_connection_is_a_store_busy_error_and_the_pool_recovers(pg_url: str) -> None:
    import psycopg

    with open_log(pg_url, hmac_key=KEY) as lg:
        log_one(lg, 1)
        with psycopg.connect(PG_URL, autocommit=True) as admin:  # kill the log's connections
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'bandit-engine' AND pid <> pg_backend_pid()"
            )
        lg.begin()  # the pool checks what it hands out: a fresh connection
        log_one(lg, 2)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'bandit-engine' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreBusyError) as info:
            lg.commit()
        assert info.value.field == "db"
        assert not lg.has_decision("dec2")  # nothing of the failed transaction
        log_one(lg, 3)
        assert [e.seq for e in lg.entries_since(0)] == [1, 2]


def test_a_writer_holding_the_journal_makes_another_wait_then_fail(pg_url: str) -> None:
    holder = open_log(pg_url, hmac_key=KEY)
    waiter = open_log(pg_url, hmac_key=KEY, busy_timeout=0.2)
    try:
        holder.begin()
        log_one(holder, 1)
        with pytest.raises(StoreBusyError) as info:
            waiter.log_admin("add_deals", {"deals": []}, ts=1.0)
        assert info.value.field == "db"
        holder.commit()
        waiter.log_admin("add_deals", {"deals": []}, ts=2.0)  # usable once the lock is gone
        assert waiter.last_seq() == 2
    finally:
        holder.close()
        waiter.close()


def test_synchronous_maps_to_synchronous_commit(pg_url: str) -> None:
    from bandit_engine.store.postgres import PostgresEventLog

    for level, expected in (("OFF", "off"), ("FULL", "on")):
        with open_log(pg_url, hmac_key=KEY, synchronous=level) as lg:  # type: ignore[arg-type]
            assert isinstance(lg, PostgresEventLog)
            with lg._pool.connection() as conn:
                assert conn.execute("SHOW synchronous_commit").fetchone() == (expected,)
            assert lg.commit_waits


def test_the_shared_sql_has_no_percent_signs(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bandit_engine.store import postgres

    seen: list[str] = []
    real = postgres.to_pg

    def spy(sql: str) -> str:
        seen.append(sql)
        return real(sql)

    monkeypatch.setattr(postgres, "to_pg", spy)
    with open_log(pg_url, hmac_key=KEY) as lg:
        _traffic(lg)
        for e in lg.entries_since(0):
            assert e.seq > 0
        lg.decisions_frame()
        lg.purge(1.0, now=1e9)
        lg.integrity_check()
    assert len(set(seen)) > 20
    assert not [s for s in seen if "%" in s]


def test_an_unreachable_service_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import require_service

    def down() -> None:
        raise ConnectionRefusedError("nothing listens on 127.0.0.1:9")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Thing is unreachable .*127\.0\.0\.1:9"):
        require_service("Thing", down)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_service("Thing", down)
    require_service("Thing", lambda: None)  # a service that answers: nothing happens


def test_a_url_without_psycopg_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bandit_engine.store.postgres", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'bandit-engine\[postgres\]'") as info:
        open_log("postgresql://app:s3cret@127.0.0.1/test", hmac_key=KEY)
    assert info.value.field == "db" and "s3cret" not in str(info.value)


# -- writes that do not wait for the server (issue 12: fewer round trips) ----------------------


def _log_nowait(lg: EventStore, i: int) -> int:
    x = np.array([1.0, float(i), 0.5])
    z = np.array([1.0, 0.0, 2.0, 3.0])
    return lg.log_decision(
        make_decision(i, 1000.0), user_id="alice", x=x, z=z, model_id="m1", wait=False
    )


def test_writes_that_do_not_wait_are_stored_like_the_others(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg, lg.transaction():
        _log_nowait(lg, 1)
        assert lg.log_event("dec1", "click", 1.0, 1001.0, "e1", "accepted", wait=False)
        # a read in the same transaction sees what was queued before it
        assert lg.has_decision("dec1")
        _log_nowait(lg, 2)
        lg.log_event("dec1", "click", 1.0, 1002.0, "e1", "duplicate", wait=False)  # kept once
    with open_log(db_target, hmac_key=KEY) as lg:
        assert lg.has_decision("dec2") and lg.decision("dec1")["n_events"] == 1
        # in commit order; a pair kept once may leave a gap in seq on PostgreSQL
        seqs = [e.seq for e in lg.entries_since(0)]
        assert len(seqs) == 3 and seqs == sorted(seqs)


def test_a_reused_id_that_was_not_waited_for_fails_the_whole_transaction(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as lg:
        log_one(lg, 1)
        pg = db_target.startswith("postgresql")
        # SQLite answers at once, as when waiting; PostgreSQL learns it at the next round trip
        # and then refuses the whole transaction: nothing of it may be acknowledged half-written
        expected = StoreBusyError if pg else ValidationError
        with pytest.raises(expected, match=r"refused|already"), lg.transaction():
            _log_nowait(lg, 2)
            _log_nowait(lg, 1)
            lg.has_decision("dec2")
        if pg:
            assert not lg.has_decision("dec2")
        log_one(lg, 3)  # the log is usable afterwards
        assert lg.has_decision("dec3") and lg.integrity_check() == "ok"


def test_a_read_on_a_connection_the_server_closed_is_retried(pg_url: str) -> None:
    import psycopg

    with open_log(pg_url, hmac_key=KEY) as lg:
        log_one(lg, 1)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'bandit-engine' AND pid <> pg_backend_pid()"
            )
        assert lg.has_decision("dec1")  # a read is safe to repeat on a fresh connection
        log_one(lg, 2)
        assert lg.last_seq() == 2
