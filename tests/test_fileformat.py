"""The single-file model format: round trip, corruption, truncation, version and no pickle."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bandit_engine.errors import ModelFileError
from bandit_engine.fileformat import FORMAT_VERSION, dump_state, load_state, read_state, write_state


def _state() -> dict[str, object]:
    return {
        "name": "x",
        "n": 3,
        "nested": {"arr": np.arange(6, dtype=np.float64).reshape(2, 3), "ids": ["a", "b"]},
        "list": [np.ones(2), {"blob": b"\x00vw-model\xff"}],
        "nan": float("nan"),
    }


def test_round_trip_restores_arrays_blobs_and_json(tmp_path: Path) -> None:
    path = tmp_path / "m.bandit"
    write_state(path, _state(), library_version="test")
    state = read_state(path)
    assert state["name"] == "x" and state["n"] == 3
    np.testing.assert_array_equal(state["nested"]["arr"], np.arange(6.0).reshape(2, 3))
    assert state["nested"]["ids"] == ["a", "b"]
    np.testing.assert_array_equal(state["list"][0], np.ones(2))
    assert state["list"][1]["blob"] == b"\x00vw-model\xff"
    assert np.isnan(state["nan"])
    assert not list(tmp_path.glob(".*tmp")), "temporary file left behind"


def test_the_fastest_compression_level_reads_back_the_same_state() -> None:
    # the learner publishes model versions with compresslevel=1 (issue 12)
    fast = load_state(dump_state(_state(), library_version="t", compresslevel=1), "v")
    default = load_state(dump_state(_state(), library_version="t"), "v")
    np.testing.assert_array_equal(fast["nested"]["arr"], default["nested"]["arr"])
    assert fast["list"][1]["blob"] == default["list"][1]["blob"] == b"\x00vw-model\xff"
    assert fast["nested"]["ids"] == default["nested"]["ids"] and fast["n"] == default["n"] == 3


def test_truncated_file_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "m.bandit"
    write_state(path, _state(), library_version="test")
    raw = path.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 5):
        path.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError, match=r"truncated or corrupted|not a bandit-engine"):
            read_state(path)


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.bandit"
    write_state(path, _state(), library_version="test")
    raw = bytearray(path.read_bytes())
    # flip bytes in the middle of the archive, where member data lives
    detected = 0
    for pos in range(40, len(raw) - 200, max(1, (len(raw) - 240) // 25)):
        damaged = bytearray(raw)
        damaged[pos] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            read_state(path)
        except ModelFileError:
            detected += 1
        else:  # a flip in ZIP padding/metadata that does not change content is harmless
            assert read_state(path)["n"] == 3
    assert detected >= 20


def _rewrite(
    path: Path,
    manifest_edit: dict[str, object] | None = None,
    member: tuple[str, bytes] | None = None,
) -> None:
    with zipfile.ZipFile(path) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(contents["manifest.json"])
    if manifest_edit:
        manifest.update(manifest_edit)
    if member:
        contents[member[0]] = member[1]
    contents["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in contents.items():
            zf.writestr(n, data)


def test_future_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.bandit"
    write_state(path, _state(), library_version="test")
    _rewrite(path, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(ModelFileError, match="format_version"):
        read_state(path)


def test_tampered_member_fails_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.bandit"
    write_state(path, _state(), library_version="test")
    _rewrite(path, member=("state.json", b'{"name": "evil"}'))
    with pytest.raises(ModelFileError, match="checksum"):
        read_state(path)


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    """An npz holding an object array (which would need pickle) must not load."""
    path = tmp_path / "m.bandit"
    write_state(path, {"a": np.zeros(1)}, library_version="test")
    buf = io.BytesIO()
    np.savez(buf, a0=np.array([{"x": 1}], dtype=object))
    evil = buf.getvalue()
    import hashlib

    _rewrite(
        path,
        {
            "members": {
                "state.json": hashlib.sha256(b'{"a": {"__array__": "a0"}}').hexdigest(),
                "arrays.npz": hashlib.sha256(evil).hexdigest(),
            }
        },
        member=("arrays.npz", evil),
    )
    with zipfile.ZipFile(path) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    contents["state.json"] = b'{"a": {"__array__": "a0"}}'
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in contents.items():
            zf.writestr(n, data)
    with pytest.raises(ModelFileError, match="cannot decode"):
        read_state(path)


def test_not_a_model_and_missing_file(tmp_path: Path) -> None:
    other = tmp_path / "x.pkl"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        read_state(other)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_state(tmp_path / "missing.bandit")


def test_unsupported_values_are_rejected_on_write(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\.f"):
        write_state(tmp_path / "m", {"f": object()}, library_version="t")
    assert not (tmp_path / "m").exists()
