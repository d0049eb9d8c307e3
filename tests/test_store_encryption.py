"""Encryption at rest of profile values and context vectors in the event log (store/crypto.py)."""

from __future__ import annotations

import io
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import service_unavailable

from bandit_engine.demo import demo_engine
from bandit_engine.errors import ConfigError, DataError
from bandit_engine.records import Decision
from bandit_engine.service import Checkpointer, LoggedEngine
from bandit_engine.store import EventLog, context_matrix, open_log
from bandit_engine.store.crypto import (
    ENV_KEY,
    ENV_OLD_KEYS,
    OVERHEAD,
    FieldCipher,
    cipher_from_env,
    key_id,
)
from bandit_engine.store.rekey import reencrypt_log

HMAC = b"encryption-test-hmac-key-0123456"
T0 = 1_700_000_000.0


def _decision(i: int) -> Decision:
    return Decision(
        decision_id=f"d{i}",
        timestamp=T0 + i,
        bundle_id="b1",
        deal_id="deal1",
        course_id="c1",
        propensity=0.5,
        candidates=("b1", "b2"),
        scores=(0.2, 0.1),
        policy_version="v1",
        probabilities=(0.5, 0.5),
    )


# -- keys --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["ab" * 16, "ab" * 33, "zz" * 32, "short"])
def test_a_key_of_the_wrong_size_or_form_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ENV_KEY, value)
    with pytest.raises(ConfigError) as info:
        cipher_from_env()
    assert info.value.field == ENV_KEY and ENV_KEY in str(info.value)
    assert value not in str(info.value)


def test_old_keys_are_checked_too_and_need_an_active_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_OLD_KEYS, secrets.token_hex(32))
    with pytest.raises(ConfigError, match=ENV_KEY):
        cipher_from_env()
    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    monkeypatch.setenv(ENV_OLD_KEYS, f"{secrets.token_hex(32)},{'cd' * 8}")
    with pytest.raises(ConfigError) as info:
        cipher_from_env()
    assert info.value.field == f"{ENV_OLD_KEYS}[1]" and "got 8 bytes" in str(info.value)
    monkeypatch.delenv(ENV_KEY)
    monkeypatch.delenv(ENV_OLD_KEYS)
    assert cipher_from_env() is None  # opt-in: no key, no encryption


def test_sealed_values_open_only_with_their_key_and_in_their_row() -> None:
    key = secrets.token_bytes(32)
    cipher = FieldCipher(key)
    sealed = cipher.seal(b"secret", b"row-1")
    assert len(sealed) == len(b"secret") + OVERHEAD and sealed[1:5] == key_id(key)
    assert b"secret" not in sealed
    assert cipher.open(sealed, b"row-1", "x") == b"secret"
    assert cipher.seal(b"secret", b"row-1") != sealed  # fresh nonce every time
    with pytest.raises(DataError, match="moved from another row"):
        cipher.open(sealed, b"row-2", "x")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DataError, match="failed authentication"):
        cipher.open(tampered, b"row-1", "x")
    with pytest.raises(DataError, match=ENV_OLD_KEYS):
        FieldCipher(secrets.token_bytes(32)).open(sealed, b"row-1", "x")


# -- the log, both backends ----------------------------------------------------------------------
def _write(target: str) -> None:
    with open_log(target, hmac_key=HMAC) as log:
        for i in range(3):
            log.log_decision(
                _decision(i), user_id="alice", x=np.arange(5.0) + i, z=np.ones(2), model_id="m"
            )
        log.upsert_profile("alice", "groupbuy", {"city": "chengdu", "avg_ticket": 88.5})


def _raw(target: str) -> tuple[list[bytes], list[str]]:
    with open_log(target, hmac_key=None, read_only=True) as log:
        c = log._conn
        xs = [bytes(r[0]) for r in c.execute("SELECT x FROM decisions ORDER BY seq").fetchall()]
        fields = [str(r[0]) for r in c.execute("SELECT fields FROM profiles").fetchall()]
    return xs, fields


def test_profiles_and_contexts_are_sealed_and_read_back(
    db_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    _write(db_target)
    xs, fields = _raw(db_target)
    assert [len(b) for b in xs] == [5 * 8 + OVERHEAD] * 3
    assert all(f.startswith('"!e1:') and "chengdu" not in f for f in fields)
    with open_log(db_target, hmac_key=HMAC) as log:
        frame = log.decisions_frame()
        np.testing.assert_array_equal(context_matrix(frame), np.arange(5.0) + np.arange(3)[:, None])
        assert log.get_profile("alice") == {"groupbuy": {"city": "chengdu", "avg_ticket": 88.5}}
        log.upsert_profile("alice", "groupbuy", {"avg_ticket": 90.0})  # merge reads the sealed row
        assert log.get_profile("alice") == {"groupbuy": {"city": "chengdu", "avg_ticket": 90.0}}
        entries = [e for e in log.entries_since(0) if e.kind == "decision"]
        np.testing.assert_array_equal(entries[2].data["x"], np.arange(5.0) + 2)
    monkeypatch.delenv(ENV_KEY)
    with open_log(db_target, hmac_key=HMAC) as log, pytest.raises(DataError, match=ENV_KEY):
        log.decisions_frame()


def test_rotation_new_key_writes_old_key_reads(
    db_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    monkeypatch.setenv(ENV_KEY, old)
    _write(db_target)
    monkeypatch.setenv(ENV_KEY, new)
    monkeypatch.setenv(ENV_OLD_KEYS, old)
    with open_log(db_target, hmac_key=HMAC) as log:
        log.log_decision(_decision(9), user_id="bob", x=np.ones(5), z=np.ones(2), model_id="m")
        assert len(log.decisions_frame()) == 4  # old rows and new rows both open
        assert log.get_profile("alice") is not None
    xs, _ = _raw(db_target)
    ids = [b[1:5].hex() for b in xs]
    assert ids[:3] == [key_id(bytes.fromhex(old)).hex()] * 3
    assert ids[3] == key_id(bytes.fromhex(new)).hex()
    monkeypatch.delenv(ENV_OLD_KEYS)  # the old key dropped too early: a clear error
    with open_log(db_target, hmac_key=HMAC) as log, pytest.raises(DataError, match=ENV_OLD_KEYS):
        log.decisions_frame()
    monkeypatch.setenv(ENV_OLD_KEYS, old)  # the last step: rewrite under the new key
    with open_log(db_target, hmac_key=HMAC) as log:
        assert reencrypt_log(log) == {"decisions": 3, "profiles": 1}
    monkeypatch.delenv(ENV_OLD_KEYS)
    with open_log(db_target, hmac_key=HMAC) as log:
        assert len(log.decisions_frame()) == 4
        assert log.get_profile("alice") == {"groupbuy": {"city": "chengdu", "avg_ticket": 88.5}}
    xs, _ = _raw(db_target)
    assert {b[1:5].hex() for b in xs} == {key_id(bytes.fromhex(new)).hex()}


def test_rows_written_before_encryption_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "e.sqlite")
    _write(path)  # no key: plaintext
    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    with open_log(path, hmac_key=HMAC) as log:
        log.log_decision(_decision(7), user_id="bob", x=np.ones(5), z=np.ones(2), model_id="m")
        assert len(log.decisions_frame()) == 4
        assert log.get_profile("alice") == {"groupbuy": {"city": "chengdu", "avg_ticket": 88.5}}


# -- the canary ------------------------------------------------------------------------------------
RAW_ID = "CANARY-raw-user-7f3a9"
VALUES = {"membership": "canary-membership-qz81", "topics": ["canary-topic-wx52"]}
CITY_VALUE = "canary-cuisine-kp47"


def _every_readable_byte(root: Path) -> list[tuple[str, bytes]]:
    """Every file under ``root``, and every member of every ZIP among them (model files and
    checkpoints are ZIPs, their arrays ``.npz`` ZIPs inside), decompressed."""
    out: list[tuple[str, bytes]] = []

    def visit(name: str, data: bytes) -> None:
        out.append((name, data))
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for member in z.namelist():
                    visit(f"{name}!{member}", z.read(member))

    for path in sorted(root.rglob("*")):
        if path.is_file():
            visit(str(path.relative_to(root)), path.read_bytes())
    return out


def _serve_the_canary(root: Path) -> None:
    base = lambda: demo_engine(seed=0, start_time=T0, clock=lambda: T0)  # noqa: E731
    with EventLog(root / "events.sqlite", hmac_key=HMAC) as log:
        service, _ = LoggedEngine.restore(
            base, log, Checkpointer(root / "checkpoints"), profiles_in_log=True
        )
        service.upsert_profile(RAW_ID, "knowledge", VALUES)
        service.upsert_profile(RAW_ID, "groupbuy", {"city": "beijing", "cuisines": [CITY_VALUE]})
        for i in range(30):
            d = service.decide(RAW_ID, now=T0 + 10.0 * i)
            service.report(d.decision_id, "click", at=T0 + 10.0 * i + 1)
        service.checkpoint()
        service.engine.save(root / "engine.bandit")
        for i in range(30, 40):  # pending decisions in the WAL after the checkpoint
            service.decide(RAW_ID, now=T0 + 10.0 * i)
        # a restart rolls the journal forward, reading the (sealed) contexts back
        again, report = LoggedEngine.restore(
            base, log, Checkpointer(root / "checkpoints"), profiles_in_log=True
        )
        assert report.redone_decisions == 10
        assert again.engine.n_decisions == service.engine.n_decisions == 40


def _found(root: Path) -> set[str]:
    needles = [RAW_ID, VALUES["membership"], VALUES["topics"][0], CITY_VALUE]
    hits = set()
    for name, data in _every_readable_byte(root):
        for needle in needles:
            for enc in ("utf-8", "utf-16-le"):
                if needle.encode(enc) in data:
                    hits.add(f"{needle} in {name}")
    return hits


def test_canary_nothing_readable_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decisions for a recognisable raw id with recognisable profile values: no file the
    service wrote (database, WAL, checkpoints, model file, their ZIP members) holds any of
    them. The same run without the key is the control: it must find the profile values (so the
    search can fail), and never the raw id (pseudonyms hold with or without encryption)."""
    plain = tmp_path / "plain"
    plain.mkdir()
    _serve_the_canary(plain)
    control = _found(plain)
    assert any(VALUES["membership"] in hit for hit in control), control
    assert not any(RAW_ID in hit for hit in control), control

    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    sealed = tmp_path / "sealed"
    sealed.mkdir()
    _serve_the_canary(sealed)
    names = {name for name, _ in _every_readable_byte(sealed)}
    assert any(n.startswith("checkpoints") for n in names) and "engine.bandit" in names
    assert "events.sqlite-wal" in names or "events.sqlite" in names
    assert _found(sealed) == set()


# -- serve-policy ----------------------------------------------------------------------------------
def test_serve_policy_refuses_a_malformed_key_and_warns_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bandit_engine.cli import app

    runner = CliRunner()
    monkeypatch.setenv("BANDIT_API_TOKEN", "a-long-enough-token-0123")
    monkeypatch.setenv("BANDIT_HMAC_KEY", HMAC.decode())
    args = ["serve-policy", "--db", str(tmp_path / "e.sqlite"), "--model", str(tmp_path / "no")]
    bad = "0123456789abcdef" * 3  # 24 bytes: not an AES-256 key
    monkeypatch.setenv(ENV_KEY, bad)
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert ENV_KEY in result.output and "got 24 bytes" in result.output
    assert bad not in result.output
    monkeypatch.delenv(ENV_KEY)
    result = runner.invoke(app, args)  # stops at the missing model, after the warning
    assert f"warning: {ENV_KEY} is not set" in result.output


def _pg_data_files(pg_url: str) -> list[Path] | None:
    """Every file of the PostgreSQL cluster's data directory after a CHECKPOINT (which writes
    the dirty pages out), or ``None`` when this process cannot read them (a server on another
    machine or in a container, a non-superuser)."""
    import psycopg

    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error:
        return None
    root = Path(str(row[0])) if row else None
    if root is None or not os.access(root, os.R_OK | os.X_OK):
        return None
    return [p for p in root.rglob("*") if p.is_file() and os.access(p, os.R_OK)]


def test_canary_nothing_readable_in_postgresqls_files(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same canary on PostgreSQL: profile values written with the key appear nowhere in the
    cluster's files (tables, WAL), while a control value written without it does (so the search
    can fail). Raw ids never reach the database at all."""
    import uuid

    tag = uuid.uuid4().hex[:12]
    sealed_value, plain_value, raw_id = f"canary-sealed-{tag}", f"canary-plain-{tag}", f"RAW-{tag}"
    monkeypatch.setenv(ENV_KEY, secrets.token_hex(32))
    with open_log(pg_url, hmac_key=HMAC) as log:
        log.upsert_profile(raw_id, "knowledge", {"membership": sealed_value})
        log.log_decision(_decision(1), user_id=raw_id, x=np.ones(3), z=np.ones(2), model_id="m")
    monkeypatch.delenv(ENV_KEY)
    with open_log(pg_url, hmac_key=HMAC) as log:
        log.upsert_profile(f"control-{tag}", "knowledge", {"membership": plain_value})
    files = _pg_data_files(pg_url)
    if files is None:
        # the canary must search the server's files: skip locally, fail under CI=true
        service_unavailable("the PostgreSQL data directory", "not readable from this process")
    found: set[str] = set()
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:  # a file removed while we walked (WAL recycling)
            continue
        for needle in (sealed_value, plain_value, raw_id):
            if needle.encode() in data:
                found.add(needle)
    assert plain_value in found, "the control value was not found: the search sees nothing"
    assert sealed_value not in found and raw_id not in found
