"""What a ``--db`` value names: a SQLite file or a PostgreSQL URL, and how to show it safely.

A value that starts with ``postgresql://`` or ``postgres://`` (any case) is a PostgreSQL URL in
libpq's format; any other value is the path of a SQLite file. A URL may carry a password: every
message, log line and ``repr`` shows :func:`redact`'s form instead, with the password replaced by
``***``. (Better still, keep the password out of the URL, where ``ps`` can see it: libpq reads
``PGPASSWORD`` and ``~/.pgpass``.)
"""

from __future__ import annotations

import os
import re

__all__ = ["URL_SCHEMES", "is_url", "looks_like_url", "redact"]

URL_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&]*")


def _scheme(db: str | os.PathLike[str]) -> str | None:
    match = _SCHEME.match(os.fspath(db)) if isinstance(db, str) else None
    return None if match is None else match.group(1).lower()


def is_url(db: str | os.PathLike[str]) -> bool:
    """Whether ``db`` is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return _scheme(db) in URL_SCHEMES


def looks_like_url(db: str | os.PathLike[str]) -> bool:
    """Whether ``db`` has the shape ``scheme://...`` of any URL (a typo such as ``postgresq://``
    or another database's URL must not silently become a SQLite file of that name)."""
    return _scheme(db) is not None


def redact(db: str | os.PathLike[str]) -> str:
    """``db`` for messages: a URL with its password (in the user part or as a ``password=``
    parameter) replaced by ``***``; a path unchanged."""
    text = os.fspath(db)
    if not looks_like_url(text):
        return text
    scheme, rest = text.split("://", 1)
    # the user part ends at the last '@' (a password may hold an unencoded '@'), the hosts at the
    # next '/' or '?'; an '@' further on (in a parameter) only makes this redact too much
    at = rest.rfind("@")
    ends = [i for i in (rest.find("/", at + 1), rest.find("?", at + 1)) if i >= 0]
    cut = min(ends, default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, hosts = authority.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        authority = f"{userinfo}@{hosts}"
    tail = _QUERY_PASSWORD.sub(r"\1***", tail)
    return f"{scheme}://{authority}{tail}"
