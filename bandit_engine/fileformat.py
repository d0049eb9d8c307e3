"""The engine's single-file format: a ZIP archive of JSON, ``.npz`` arrays and opaque blobs.

Layout::

    manifest.json   {"format": "bandit-engine", "format_version": 1, "library_version": ...,
                     "members": {name: sha256-hex}}
    state.json      the engine's state as JSON; arrays and blobs are replaced by references
                    {"__array__": key} / {"__blob__": key}
    arrays.npz      every array, loaded with ``allow_pickle=False``
    blobs/<key>     opaque bytes (for example a Vowpal Wabbit model)

Nothing is unpickled: JSON, numeric arrays and bytes are all a loaded file can produce, so a file from an
untrusted source cannot run code. Each member's SHA-256 is checked against the manifest (and ZIP's own
CRC-32 catches most corruption before that); a truncated, corrupted or future-version file raises
:class:`~bandit_engine.errors.ModelFileError`. Writes go to a temporary file in the target folder,
are flushed to disk and then renamed over the target, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "dump_state",
    "load_state",
    "read_state",
    "write_state",
]

FORMAT_NAME = "bandit-engine"
FORMAT_VERSION = 1


def _split(tree: Any, arrays: dict[str, np.ndarray], blobs: dict[str, bytes], path: str) -> Any:
    if isinstance(tree, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = tree
        return {"__array__": key}
    if isinstance(tree, bytes | bytearray):
        key = f"b{len(blobs)}"
        blobs[key] = bytes(tree)
        return {"__blob__": key}
    if isinstance(tree, Mapping):
        out = {}
        for k, v in tree.items():
            if not isinstance(k, str):
                raise TypeError(f"state key {path}.{k!r} must be a string")
            out[k] = _split(v, arrays, blobs, f"{path}.{k}")
        return out
    if isinstance(tree, list | tuple):
        return [_split(v, arrays, blobs, f"{path}[{i}]") for i, v in enumerate(tree)]
    if isinstance(tree, np.generic):
        return tree.item()
    if tree is None or isinstance(tree, str | int | float | bool):
        return tree
    raise TypeError(f"state value at {path} has unsupported type {type(tree).__name__}")


def _join(tree: Any, arrays: Mapping[str, np.ndarray], blobs: Mapping[str, bytes]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            key = tree["__array__"]
            if key not in arrays:
                raise ModelFileError(f"state refers to a missing array {key!r}", field="arrays.npz")
            return arrays[key]
        if set(tree) == {"__blob__"}:
            key = tree["__blob__"]
            if key not in blobs:
                raise ModelFileError(f"state refers to a missing blob {key!r}", field="blobs")
            return blobs[key]
        return {k: _join(v, arrays, blobs) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays, blobs) for v in tree]
    return tree


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_state(
    state: Mapping[str, Any], *, library_version: str, compresslevel: int | None = None
) -> bytes:
    """``state`` (JSON data, numpy arrays and bytes) as the bytes of a model file (what
    :func:`write_state` writes; a model version stored in the event log holds them).
    ``compresslevel``: zlib's level (1 fastest; ``None``: its default, 6)."""
    arrays: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    json_tree = _split(state, arrays, blobs, "state")
    members: dict[str, bytes] = {
        "state.json": json.dumps(json_tree, allow_nan=True, sort_keys=True).encode("utf-8")
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    members["arrays.npz"] = buf.getvalue()
    for key, blob in blobs.items():
        members[f"blobs/{key}"] = blob
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": library_version,
        "members": {name: _sha256(data) for name, data in members.items()},
    }
    out = io.BytesIO()
    with zipfile.ZipFile(
        out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
    ) as zf:
        zf.writestr("manifest.json", json.dumps(manifest, sort_keys=True, indent=1))
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def write_state(
    path: str | os.PathLike[str], state: Mapping[str, Any], *, library_version: str
) -> None:
    """Write ``state`` (JSON data, numpy arrays and bytes) atomically to ``path``."""
    data = dump_state(state, library_version=library_version)
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and verify a file written by :func:`write_state`; returns the state tree."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ModelFileError(
            f"model file {where!r} does not exist", field="path", value=where
        ) from None
    except OSError as exc:
        raise ModelFileError(
            f"cannot read model file {where!r}: {exc}", field="path", value=where
        ) from None
    return load_state(raw, where)


def load_state(raw: bytes, where: str) -> dict[str, Any]:
    """Verify and decode the bytes of a model file (:func:`dump_state`); ``where`` names them in
    errors."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = set(zf.namelist())
            if "manifest.json" not in names:
                raise ModelFileError(
                    f"{where!r} is not a bandit-engine model (no manifest.json)",
                    field="path",
                    value=where,
                )
            manifest = json.loads(zf.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise ModelFileError(
                    f"{where!r} is not a bandit-engine model (format {manifest.get('format')!r})"
                    if isinstance(manifest, dict)
                    else f"{where!r} has a malformed manifest",
                    field="manifest.format",
                )
            version = manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise ModelFileError(
                    f"{where!r} has format_version {version!r}; this library reads version "
                    f"{FORMAT_VERSION} (written by bandit-engine {manifest.get('library_version')!r})",
                    field="manifest.format_version",
                    value=version,
                )
            expected = manifest.get("members")
            if not isinstance(expected, dict) or "state.json" not in expected:
                raise ModelFileError(
                    f"{where!r} has a malformed manifest", field="manifest.members"
                )
            contents: dict[str, bytes] = {}
            for name, digest in expected.items():
                if name not in names:
                    raise ModelFileError(f"{where!r} lacks member {name!r}", field=name)
                data = zf.read(name)
                if _sha256(data) != digest:
                    raise ModelFileError(
                        f"{where!r}: checksum mismatch in {name!r} (file corrupted)", field=name
                    )
                contents[name] = data
    except ModelFileError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        UnicodeDecodeError,
    ) as exc:
        raise ModelFileError(
            f"{where!r} is truncated or corrupted ({type(exc).__name__}: {exc})",
            field="path",
            value=where,
        ) from None
    try:
        tree = json.loads(contents["state.json"])
        with np.load(io.BytesIO(contents["arrays.npz"]), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise ModelFileError(
            f"{where!r}: cannot decode state ({type(exc).__name__}: {exc})", field="state.json"
        ) from None
    blobs = {
        name[len("blobs/") :]: data for name, data in contents.items() if name.startswith("blobs/")
    }
    state = _join(tree, arrays, blobs)
    if not isinstance(state, dict):
        raise ModelFileError(f"{where!r}: state is not an object", field="state.json")
    return state
