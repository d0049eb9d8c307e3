"""Bulk profiles (issue 14, item 1): ``bandit profiles import`` and the server's profile store.

Shared behaviour runs on both backends (``db_target``: a SQLite file and a PostgreSQL schema).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bandit_engine import (
    Boolean,
    Categorical,
    Engine,
    Numeric,
    ProfileSchema,
    Recency,
    Tags,
)
from bandit_engine.cli import app as cli_app
from bandit_engine.demo import demo_engine, demo_tables
from bandit_engine.errors import ConfigError, NotFoundError, ValidationError
from bandit_engine.features import FeatureMap
from bandit_engine.service.profile_import import ProfileImportError, import_profiles
from bandit_engine.store import EventStore, open_log

KEY = b"profiles-import-test-key-0123456789"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def demo() -> Any:
    return demo_engine(seed=0)


@pytest.fixture(scope="module")
def demo_data() -> dict[str, pd.DataFrame]:
    return demo_tables(seed=0)


@pytest.fixture
def log(db_target: str) -> Any:
    with open_log(db_target, hmac_key=KEY) as opened:
        yield opened


def _fm() -> FeatureMap:
    """A small schema with every field kind (CSV typing covers each)."""
    schema = ProfileSchema(
        {
            "shop": [
                Categorical("city"),
                Tags("cuisines"),
                Tags("labels", sep="|"),
                Numeric("avg_ticket", log=True),
                Recency("last_order_at"),
                Boolean("member"),
            ]
        }
    )
    table = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "city": ["beijing", "shanghai"],
            "cuisines": [["hotpot"], ["bbq"]],
            "labels": ["x|y", "z"],
            "avg_ticket": [50.0, 80.0],
            "last_order_at": [T0 - 86_400, T0 - 3 * 86_400],
            "member": [True, False],
        }
    )
    return schema.fit({"shop": table})


CSV_HEADER = "user_id,city,cuisines,labels,avg_ticket,last_order_at,member\n"


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# -- the happy paths, on both backends ----------------------------------------------------------


def test_parquet_import_stores_what_the_engine_reads(
    log: EventStore, demo: Any, demo_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    fm = demo.features
    for platform in ("knowledge", "groupbuy"):
        table = demo_data[platform]
        path = tmp_path / f"{platform}.parquet"
        table.to_parquet(path)
        rep = import_profiles(log, fm, path, platform=platform, chunk_rows=300, commit_rows=500)
        assert (rep.rows_read, rep.rows_written, rep.errors) == (len(table), len(table), [])
        # a transaction ends at the first chunk that reaches commit_rows: 600 rows each
        assert rep.commits == -(-len(table) // 600)
    assert log.profile_counts() == {
        "groupbuy": len(demo_data["groupbuy"]),
        "knowledge": len(demo_data["knowledge"]),
    }
    # each stored record is exactly the validated record of the batch path, for both platforms
    expected = dict(fm.profiles({p: demo_data[p] for p in ("knowledge", "groupbuy")}))
    for user in list(expected)[:: max(1, len(expected) // 25)]:
        stored = log.get_profile(user)
        want = {p: v for p, v in expected[user].items() if v is not None}
        assert stored == want, user
        # and it encodes to the same vector the batch path gives
        np.testing.assert_array_equal(
            fm.transform_one(stored or {}, now=T0), fm.transform_one(expected[user], now=T0)
        )
    # raw ids never reach the database: the user column holds pseudonyms only
    assert log.get_profile("not-a-user") is None


def test_csv_types_every_field_kind(log: EventStore, tmp_path: Path) -> None:
    fm = _fm()
    path = _write(
        tmp_path / "shop.csv",
        CSV_HEADER
        + 'u1,beijing,"[""hotpot"",""bbq""]",x| y ,12.5,1699913600,true\n'
        + "u2,,[],,,2023-11-14T10:00:00+08:00,0\n"
        + "3,shanghai,,z,0,,\n",
    )
    rep = import_profiles(log, fm, path, platform="shop")
    assert rep.rows_written == 3 and rep.ok
    assert log.get_profile("u1") == {
        "shop": {
            "city": "beijing",
            "cuisines": ["hotpot", "bbq"],
            "labels": ["x", "y"],
            "avg_ticket": 12.5,
            "last_order_at": 1699913600.0,
            "member": True,
        }
    }
    u2 = (log.get_profile("u2") or {})["shop"]
    assert u2["city"] is None and u2["cuisines"] == [] and u2["avg_ticket"] is None
    assert u2["last_order_at"] == pd.Timestamp("2023-11-14T02:00:00Z").timestamp()
    assert u2["member"] is False
    assert (log.get_profile("3") or {})["shop"]["member"] is None  # integer ids in decimal


def test_upsert_and_replace(log: EventStore, tmp_path: Path) -> None:
    fm = _fm()
    first = _write(
        tmp_path / "a.csv",
        CSV_HEADER + "u1,beijing,[],,10,,true\nu2,beijing,[],,20,,true\nu3,xian,[],,30,,\n",
    )
    import_profiles(log, fm, first, platform="shop", now=T0)
    second = _write(tmp_path / "b.csv", CSV_HEADER + "u2,shanghai,[],,21,,\nu2,chengdu,[],,22,,\n")
    rep = import_profiles(log, fm, second, platform="shop", now=T0 + 10)
    assert rep.deleted == 0
    # a repeated user keeps their last row; the others are untouched
    assert (log.get_profile("u2") or {})["shop"]["city"] == "chengdu"
    assert (log.get_profile("u1") or {})["shop"]["city"] == "beijing"
    # a record written by someone else while a replace runs is newer and kept
    log.upsert_profile("u9", "shop", {"city": "wuhan"}, now=T0 + 30)
    rep = import_profiles(log, fm, second, platform="shop", mode="replace", now=T0 + 20)
    assert rep.deleted == 2  # u1 and u3
    assert log.get_profile("u1") is None and log.get_profile("u3") is None
    assert (log.get_profile("u2") or {})["shop"]["avg_ticket"] == 22.0
    assert (log.get_profile("u9") or {})["shop"]["city"] == "wuhan"
    assert log.profile_counts() == {"shop": 2}


# -- bad input ----------------------------------------------------------------------------------


def test_every_bad_row_is_reported_and_nothing_is_written(log: EventStore, tmp_path: Path) -> None:
    fm = _fm()
    path = _write(
        tmp_path / "bad.csv",
        CSV_HEADER
        + "u1,beijing,[],,12,,true\n"
        + "u2,beijing,[],,cheap,,true\n"  # row 2: not a number
        + "u3,beijing,hotpot,,1,,true\n"  # row 3: tags not a JSON list
        + ",beijing,[],,1,,true\n"  # row 4: no user id
        + "u5,beijing,[],,-3,yesterday,maybe\n"  # row 5: three bad fields
        + "u6,beijing,[],,1e400,,\n",  # row 6: overflows a float
    )
    with pytest.raises(ProfileImportError) as info:
        import_profiles(log, fm, path, platform="shop")
    rep = info.value.report
    got = [(e.row, e.field) for e in rep.errors]
    assert got == [
        (2, "shop.avg_ticket"),
        (3, "shop.cuisines"),
        (4, "shop.user_id"),
        (5, "shop.avg_ticket"),
        (5, "shop.last_order_at"),
        (5, "shop.member"),
        (6, "shop.avg_ticket"),
    ]
    assert "'cheap'" in rep.errors[0].message and "must be a number" in rep.errors[0].message
    assert ">= 0" in rep.errors[3].message and "-3" in rep.errors[3].message
    assert rep.rows_written == 0 and log.profile_counts() == {}
    assert "row 2: shop.avg_ticket" in str(info.value)
    assert info.value.field == "shop.avg_ticket"


def test_a_value_the_encoder_refuses_is_refused_at_import(
    log: EventStore, demo: Any, demo_data: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # finite, valid for the column rules, but log1p-standardizing it overflows: the engine would
    # fail this user's every decision, so the import refuses the row instead
    table = demo_data["groupbuy"].head(5).copy()
    table.loc[table.index[3], "coupon_rate"] = 1e308
    path = tmp_path / "g.parquet"
    table.to_parquet(path)
    with pytest.raises(ProfileImportError) as info:
        import_profiles(log, demo.features, path, platform="groupbuy")
    assert [(e.row, e.field) for e in info.value.report.errors] == [(4, "groupbuy.coupon_rate")]


def test_a_bad_chunk_keeps_earlier_chunks_and_a_rerun_completes(
    log: EventStore, tmp_path: Path
) -> None:
    fm = _fm()
    rows = [f"u{i},beijing,[],,{i},,true\n" for i in range(1, 11)]
    rows[6] = "u7,beijing,[],,seven,,true\n"  # row 7, in the third chunk of 3
    path = _write(tmp_path / "c.csv", CSV_HEADER + "".join(rows))
    with pytest.raises(ProfileImportError) as info:
        import_profiles(log, fm, path, platform="shop", chunk_rows=3, mode="replace")
    rep = info.value.report
    assert [(e.row, e.field) for e in rep.errors] == [(7, "shop.avg_ticket")]
    # the rows of the two chunks before the bad one are committed and said so; nothing after it
    # was written (the rest of the file was still checked), and replace deleted nothing
    assert (rep.rows_written, rep.commits, rep.rows_read) == (6, 1, 10)
    assert "6 good rows before the chunk holding the first bad row were committed" in str(
        info.value
    )
    assert log.profile_counts() == {"shop": 6}
    rows[6] = "u7,beijing,[],,7,,true\n"
    _write(path, CSV_HEADER + "".join(rows))
    rep = import_profiles(log, fm, path, platform="shop", chunk_rows=3, mode="replace")
    assert rep.rows_written == 10 and log.profile_counts() == {"shop": 10}


def test_skip_bad_rows_writes_the_good_ones(log: EventStore, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.csv",
        CSV_HEADER + "u1,beijing,[],,1,,\nu2,beijing,[],,x,,\nu3,beijing,[],,3,,\n",
    )
    rep = import_profiles(log, _fm(), path, platform="shop", skip_bad_rows=True, chunk_rows=2)
    assert [(e.row, e.field) for e in rep.errors] == [(2, "shop.avg_ticket")]
    assert rep.rows_written == 2 and log.get_profile("u2") is None


def test_max_errors_stops_reading(log: EventStore, tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", CSV_HEADER + "u,b,[],,x,,\n" * 50)
    with pytest.raises(ProfileImportError) as info:
        import_profiles(log, _fm(), path, platform="shop", max_errors=5, chunk_rows=10)
    rep = info.value.report
    assert rep.truncated and len(rep.errors) == 5 and rep.rows_read == 10
    assert "--max-errors" in str(info.value)


def test_dry_run_checks_without_writing(log: EventStore, tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", CSV_HEADER + "u1,beijing,[],,1,,\n")
    rep = import_profiles(log, _fm(), path, platform="shop", dry_run=True, mode="replace")
    assert rep.ok and rep.rows_read == 1 and rep.rows_written == 0
    assert log.profile_counts() == {}


def test_wrong_columns_are_named_before_reading(tmp_path: Path) -> None:
    fm = _fm()
    path = _write(
        tmp_path / "w.csv",
        "user_id,cty,cuisines,labels,avg_tiket,last_order_at,member,email\nu1,b,[],,1,,,e\n",
    )
    with open_log(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        with pytest.raises(ValidationError) as info:
            import_profiles(log, fm, path, platform="shop")
        message = str(info.value)
        assert "missing column(s) ['city', 'avg_ticket']" in message
        assert "'cty' (did you mean 'city'?)" in message
        assert "'avg_tiket' (did you mean 'avg_ticket'?)" in message
        assert "'email'" in message and info.value.field == "shop.columns"
        # --ignore-extra-columns skips the unknown ones, the missing ones still fail
        with pytest.raises(ValidationError, match=r"missing column\(s\)"):
            import_profiles(log, fm, path, platform="shop", ignore_extra=True)
        with pytest.raises(ConfigError, match="did you mean 'shop'"):
            import_profiles(log, fm, path, platform="shops")
        with pytest.raises(NotFoundError):
            import_profiles(log, fm, tmp_path / "nope.csv", platform="shop")
        with pytest.raises(ConfigError, match="csv or parquet"):
            import_profiles(log, fm, _write(tmp_path / "x.json", "{}"), platform="shop")


def test_encodings(tmp_path: Path) -> None:
    fm = _fm()
    with open_log(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        # a stray Latin-1 byte in row 2: the row and the column are named, the others pass
        raw = (CSV_HEADER + "u1,beijing,[],,1,,\nu2,caf\xe9,[],,1,,\nu3,xian,[],,1,,\n").encode(
            "latin-1"
        )
        path = tmp_path / "latin.csv"
        path.write_bytes(raw)
        with pytest.raises(ProfileImportError) as info:
            import_profiles(log, fm, path, platform="shop")
        [err] = info.value.report.errors
        assert (err.row, err.field) == (2, "city") and "--encoding" in err.message
        # a GB18030 file, read as such
        gb = _write(tmp_path / "gb.csv", CSV_HEADER + "u1,北京,[],,1,,\n", encoding="gb18030")
        rep = import_profiles(log, fm, gb, platform="shop", encoding="gb18030")
        assert rep.ok and (log.get_profile("u1") or {})["shop"]["city"] == "北京"
        with pytest.raises(ConfigError, match="encoding"):
            import_profiles(log, fm, gb, platform="shop", encoding="klingon")


# -- the command --------------------------------------------------------------------------------


def test_cli_import_and_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDIT_HMAC_KEY", KEY.decode())
    table = demo_tables(seed=0)["groupbuy"].head(40)
    good = tmp_path / "g.parquet"
    table.to_parquet(good)
    db = str(tmp_path / "events.sqlite")
    runner = CliRunner()
    args = ["profiles", "import", str(good), "--db", db, "--platform", "groupbuy"]
    r = runner.invoke(cli_app, args)
    assert r.exit_code == 3 and "--model ENGINE" in r.output  # neither --model nor --demo
    r = runner.invoke(cli_app, [*args, "--demo"])
    assert r.exit_code == 0, r.output
    assert "40 rows read, 40 written" in r.output and "groupbuy=40" in r.output
    bad = tmp_path / "bad.csv"
    table.head(3).assign(avg_ticket=["1", "x", "3"], cuisines="[]").to_csv(bad, index=False)
    r = runner.invoke(
        cli_app, ["profiles", "import", str(bad), "--db", db, "--platform", "groupbuy", "--demo"]
    )
    assert r.exit_code == 3
    assert "row 2: groupbuy.avg_ticket must be a number, got 'x'" in r.output


# -- the server ---------------------------------------------------------------------------------


def test_server_uses_imported_profiles(
    tmp_path: Path, demo_data: dict[str, pd.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    token = "profiles-test-token-0123456789abc"
    auth = {"Authorization": f"Bearer {token}"}
    model = tmp_path / "model.bandit"
    engine = demo_engine(seed=0)
    engine.save(model)  # the saved file carries no profiles
    db = str(tmp_path / "events.sqlite")
    settings = ServerSettings(db=db, api_token=Secret(token.encode()), model=str(model))
    deals = demo_data["deals"].set_index("deal_id")
    user = "U000001"
    city = demo_data["groupbuy"].set_index("user_id").loc[user, "city"]

    def candidates_of_a_decision() -> list[str]:
        with caplog.at_level(logging.INFO, logger="bandit_engine.server"):
            app, log = open_server(settings, hmac_key=KEY)
        try:
            with TestClient(app) as c:
                r = c.post("/v1/decisions", json={"user_id": user}, headers=auth)
                assert r.status_code == 200, r.text
                record = c.get(f"/v1/decisions/{r.json()['decision_id']}", headers=auth).json()
        finally:
            log.close()
        return list(record["candidates"])

    # before: nothing stored, said at start, and the known user gets a cold-start decision
    before = candidates_of_a_decision()
    assert "holds no profiles" in caplog.text
    assert len({deals.loc[b.split("+")[0], "city"] for b in before}) > 1
    caplog.clear()
    with open_log(db, hmac_key=KEY) as log:
        for platform in ("knowledge", "groupbuy"):
            path = tmp_path / f"{platform}.parquet"
            demo_data[platform].to_parquet(path)
            import_profiles(log, engine.features, path, platform=platform)
    after = candidates_of_a_decision()
    n_group, n_know = len(demo_data["groupbuy"]), len(demo_data["knowledge"])
    assert f"knowledge={n_know:,}, groupbuy={n_group:,}" in caplog.text
    assert "holds no profiles" not in caplog.text
    # the decision uses their city: every candidate is a deal in it
    assert {deals.loc[b.split("+")[0], "city"] for b in after} == {city}
    assert len(after) < len(before)


def test_admin_endpoint_refuses_what_the_import_refuses(tmp_path: Path) -> None:
    """One rule set: a value the import reports is a 422 at the admin endpoint, naming the same
    field and the value, and nothing is stored."""
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    token = "profiles-test-token-0123456789abc"
    auth = {"Authorization": f"Bearer {token}"}
    model = tmp_path / "model.bandit"
    demo_engine(seed=0).save(model)
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"), api_token=Secret(token.encode()), model=str(model)
    )
    table = demo_tables(seed=0)["groupbuy"].head(2).copy()
    table["avg_ticket"] = table["avg_ticket"].astype(object)
    table.loc[table.index[1], "avg_ticket"] = -5.0  # declared log=True: must be >= 0
    path = tmp_path / "g.parquet"
    table.to_parquet(path)
    app, log = open_server(settings, hmac_key=KEY)
    try:
        with pytest.raises(ProfileImportError) as info:
            import_profiles(log, Engine.load(model).features, path, platform="groupbuy")
        [err] = info.value.report.errors
        with TestClient(app) as c:
            body = {"user_id": "zed", "profile": {"groupbuy": {"avg_ticket": -5.0}}}
            r = c.post("/v1/admin/profiles", json=body, headers=auth)
            assert r.status_code == 422, r.text
            assert r.json()["field"] == err.field == "groupbuy.avg_ticket"
            assert "-5.0" in r.json()["message"] and ">= 0" in r.json()["message"]
        assert log.get_profile("zed") is None
    finally:
        log.close()


def test_stored_text_is_json_of_the_validated_record(tmp_path: Path) -> None:
    """The bulk path builds each record's JSON column by column; it must parse back to what the
    one-record path (``json.dumps`` of the validated record) would store."""
    data = demo_tables(seed=1)
    fm = demo_engine(seed=1).features
    with open_log(tmp_path / "t.sqlite", hmac_key=KEY) as log:
        for platform in ("knowledge", "groupbuy"):
            path = tmp_path / f"{platform}.parquet"
            data[platform].to_parquet(path)
            import_profiles(log, fm, path, platform=platform)
        expected = dict(fm.profiles({p: data[p] for p in ("knowledge", "groupbuy")}))
        for user in list(expected)[:200]:
            want = {p: v for p, v in expected[user].items() if v is not None}
            assert log.get_profile(user) == json.loads(json.dumps(want)), user


def test_bulk_records_are_sealed_like_single_ones(
    db_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With encryption at rest on, imported records are stored sealed (no plaintext value in the
    table), and read back like the admin endpoint's."""
    import secrets

    from bandit_engine.store.crypto import ENV_KEY

    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    path = _write(tmp_path / "e.csv", CSV_HEADER + "u1,zhangjiakou,[],,12,,true\n")
    with open_log(db_target, hmac_key=KEY) as log:
        import_profiles(log, _fm(), path, platform="shop")
        log.upsert_profile("u2", "shop", {"city": "zhangjiakou"})
        assert (log.get_profile("u1") or {})["shop"]["city"] == "zhangjiakou"
        conn: Any = cast(Any, log)._conn  # the raw table: every stored record is sealed
        rows = conn.execute("SELECT fields FROM profiles").fetchall()
        assert len(rows) == 2
        assert all("zhangjiakou" not in str(r[0]) for r in rows)


# -- the worker process (issue 14: reading and checking beside the writes) ---------------------


def _stored_rows(log: EventStore) -> list[tuple[Any, ...]]:
    """The profile table as stored (pseudonym, platform, record text, time stamp)."""
    conn: Any = cast(Any, log)._conn
    rows = conn.execute(
        'SELECT "user", platform, fields, updated_at FROM profiles ORDER BY "user", platform'
    ).fetchall()
    return [(bytes(u), p, str(f), float(t)) for u, p, f, t in rows]


def _same_report(a: Any, b: Any) -> None:
    fields = ("rows_read", "rows_written", "deleted", "commits", "errors", "truncated")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


def test_digester_is_hmac_sha256() -> None:
    """The bulk path's HMAC, written out over precomputed pads, equals :func:`hmac.digest` for
    keys shorter than, as long as and longer than SHA-256's 64-byte block."""
    import hmac

    from bandit_engine.store.profile_bulk import ProfileDigester

    ids = ["U000001", "é中文", "x" * 300, "a\nb"]
    for key in (b"k" * 32, bytes(range(64)), b"z" * 65, b"long key " * 30):
        want = [hmac.digest(key, u.encode("utf-8"), "sha256") for u in ids]
        assert ProfileDigester(key)(ids) == want


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_worker_process_stores_what_this_process_stores(
    log: EventStore, demo: Any, demo_data: dict[str, pd.DataFrame], tmp_path: Path, mode: str
) -> None:
    """The same file imported in this process and through the worker gives the same table, byte
    for byte, on both backends: several batches, a user repeated across batches (the last row
    wins), numbers with missing values, empty and missing tags."""
    table = demo_data["knowledge"].copy()
    repeat_rows = table.head(10).assign(membership="none", courses_bought=np.nan)
    # users repeated within the first batch (the worker sorts a batch by pseudonym: the last
    # row must stay last) and across batches
    again = table.iloc[10:20].assign(membership="premium")
    table = pd.concat([table.iloc[:50], again, table.iloc[50:], repeat_rows], ignore_index=True)
    table.loc[table.index[5], "topics"] = None
    table.loc[table.index[6], "topics"] = []
    path = tmp_path / "k.parquet"
    table.to_parquet(path)
    got = {}
    reports = {}
    for workers in (0, 1):
        log.upsert_profile("someone-else", "knowledge", {"membership": "basic"}, now=T0 - 1)
        reports[workers] = import_profiles(
            log,
            demo.features,
            path,
            platform="knowledge",
            mode=mode,  # type: ignore[arg-type]
            chunk_rows=128,
            commit_rows=300,
            now=T0,
            workers=workers,
        )
        got[workers] = _stored_rows(log)
        for user, membership in (("U000006", "none"), ("U000024", "premium")):
            assert (log.get_profile(user) or {})["knowledge"]["membership"] == membership
        log.delete_profiles_before("knowledge", T0 + 1)  # empty again for the other path
    _same_report(reports[0], reports[1])
    # transactions end at the first chunk reaching 300 rows: 384, 384, then the last 313
    assert reports[1].rows_written == len(table) and reports[1].commits == 3
    assert got[0] == got[1] and len(got[1]) == len(demo_data["knowledge"]) + (mode == "upsert")
    assert log.get_profile("U000001") is None  # emptied


def test_worker_process_reports_bad_rows_alike(log: EventStore, tmp_path: Path) -> None:
    """Bad rows, a bad chunk after good ones, skip_bad_rows, max_errors and consent columns:
    the reports (every bad row, its number, field and wording) and the table are the same
    through the worker."""
    fm = _fm()
    rows = [f"u{i},beijing,[],,{i},,true,true\n" for i in range(1, 31)]
    rows[6] = "u7,beijing,[],,seven,,true,true\n"
    rows[7] = "u8,beijing,hotpot,,8,,maybe,true\n"
    rows[12] = ",beijing,[],,13,,,\n"
    rows[20] = "u21,beijing,[],,21,,,false\n"  # consent withheld: not stored, consent recorded
    rows[21] = "u22,beijing,[],,22,,,perhaps\n"
    path = _write(tmp_path / "c.csv", CSV_HEADER.replace("\n", ",consent\n") + "".join(rows))
    cases: list[dict[str, Any]] = [
        dict(chunk_rows=3),
        dict(chunk_rows=3, mode="replace"),
        dict(chunk_rows=4, skip_bad_rows=True),
        dict(chunk_rows=5, max_errors=2),
        dict(chunk_rows=4, dry_run=True),
    ]
    for case in cases:
        outcome: dict[int, tuple[Any, list[tuple[Any, ...]], str | None]] = {}
        for workers in (0, 1):
            try:
                rep = import_profiles(
                    log, fm, path, platform="shop", now=T0, workers=workers, **case
                )
                outcome[workers] = (rep, _stored_rows(log), None)
            except ProfileImportError as exc:
                outcome[workers] = (exc.report, _stored_rows(log), str(exc))
            log.delete_profiles_before("shop", T0 + 1)
        (rep0, rows0, msg0), (rep1, rows1, msg1) = outcome[0], outcome[1]
        _same_report(rep0, rep1)
        assert (rows0, msg0) == (rows1, msg1), case
        assert rep1.errors, case
    # the last case's worker did find every bad row (7: number, 8: tags and flag, 13: no id,
    # 22: consent) with its wording
    assert [(e.row, e.field) for e in rep1.errors] == [
        (7, "shop.avg_ticket"),
        (8, "shop.cuisines"),
        (8, "shop.member"),
        (13, "shop.user_id"),
        (22, "shop.consent"),
    ]
    assert "must be a number, got 'seven'" in rep1.errors[0].message


def test_a_worker_that_dies_stops_the_import_with_a_clear_error(
    tmp_path: Path, demo: Any, demo_data: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checking process killed half-way: the import stops (no hang) with an error naming
    the process and its exit, and the batches committed before stay."""
    import os
    import signal

    from bandit_engine.service import _import_worker

    started: list[Any] = []
    real_init = _import_worker.WorkerEvents.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(_import_worker.WorkerEvents, "__init__", spy)
    base = demo_data["groupbuy"]
    # 40 copies under new ids: batches of 2,000 rows (about 400 kB each) fill the pipe, so the
    # worker is still at work when it is killed after the first chunk
    table = pd.concat(
        [base.assign(user_id=base["user_id"] + f"-{k}") for k in range(40)], ignore_index=True
    )
    path = tmp_path / "g.parquet"
    table.to_parquet(path)
    killed: list[int] = []

    def progress(read: int, written: int) -> None:
        if written and not killed:
            killed.append(started[0].pid)
            os.kill(started[0].pid, signal.SIGKILL)

    with open_log(tmp_path / "events.sqlite", hmac_key=KEY) as log:
        with pytest.raises(ProfileImportError) as info:
            import_profiles(
                log,
                demo.features,
                path,
                platform="groupbuy",
                chunk_rows=1000,
                commit_rows=2000,
                workers=1,
                progress=progress,
            )
        rep = info.value.report
        message = str(info.value)
        assert killed and f"checking process (pid {killed[0]}) died (exit code -9)" in message
        assert info.value.field == "worker"
        assert 0 < rep.rows_written < len(table) and rep.rows_written % 2000 == 0
        assert log.profile_counts() == {"groupbuy": rep.rows_written}


def test_cli_workers_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDIT_HMAC_KEY", KEY.decode())
    good = tmp_path / "g.parquet"
    demo_tables(seed=0)["groupbuy"].head(40).to_parquet(good)
    db = str(tmp_path / "events.sqlite")
    args = ["profiles", "import", str(good), "--db", db, "--platform", "groupbuy", "--demo"]
    r = CliRunner().invoke(cli_app, [*args, "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "40 rows read, 40 written" in r.output and "groupbuy=40" in r.output
    r = CliRunner().invoke(cli_app, [*args, "--workers", "2"])
    assert r.exit_code == 3 and "workers must be 0, 1" in r.output


def test_a_plain_tags_column_is_checked_at_once_like_cell_by_cell() -> None:
    """The column-at-once path for tags (lists of str and None, as Parquet gives) returns what
    the per-cell rule returns, and any other column still names its bad row."""
    from bandit_engine.features._columns import canonical_column
    from bandit_engine.features._values import to_tags

    spec = Tags("t")
    where = lambda i: f"row {i + 1}"  # noqa: E731
    plain: list[list[Any]] = [[["a", "b"], None, []], [None, None], [], [["x"] * 3, ["y"]]]
    for values in plain:
        col = pd.Series(values, dtype=object)
        want = [to_tags("p.t", v, None) for v in values]
        assert canonical_column(spec, "p.t", col, where) == want
    wrong: list[tuple[list[Any], str]] = [
        ([["a"], ["a", ""]], "''"),
        ([["a", 1]], "1"),
        ([["a"], "a"], "'a'"),
    ]
    for values, bad in wrong:
        with pytest.raises(ValidationError) as info:
            canonical_column(spec, "p.t", pd.Series(values, dtype=object), where)
        assert bad in info.value.message and f"row {len(values)}" in info.value.message


def test_the_worker_is_used_for_large_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from bandit_engine.service import _import_worker
    from bandit_engine.service.profile_files import open_profile_file

    path = tmp_path / "g.parquet"
    demo_tables(seed=0)["groupbuy"].head(40).to_parquet(path)
    csv = _write(tmp_path / "s.csv", CSV_HEADER + "u1,beijing,[],,1,,\n" * 40)
    cols = ["city", "cuisines", "avg_ticket", "orders_90d", "coupon_rate", "last_order_at"]
    parquet = open_profile_file(path, declared=cols, key="user_id", platform="groupbuy")
    text = open_profile_file(
        csv, declared=[s.name for s in _fm().blocks["shop"].specs], key="user_id", platform="shop"
    )
    assert _import_worker.estimated_rows(parquet) == 40  # Parquet: its metadata
    assert _import_worker.estimated_rows(text) == csv.stat().st_size // 64
    two_cpus = len(os.sched_getaffinity(0)) >= 2
    assert _import_worker.worker_count(None, parquet) == 0  # 40 rows < 200,000
    monkeypatch.setattr(_import_worker, "PARALLEL_ROWS", 40)
    assert _import_worker.worker_count(None, parquet) == int(two_cpus)
    assert _import_worker.worker_count(0, parquet) == 0
    with (
        open_log(tmp_path / "e.sqlite", hmac_key=KEY) as log,
        pytest.raises(ConfigError, match="workers must be 0, 1 or None"),
    ):
        import_profiles(log, _fm(), csv, platform="shop", workers=2)
