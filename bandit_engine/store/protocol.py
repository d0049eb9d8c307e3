"""What an event store is to the code above it: the :class:`EventStore` protocol.

Both backends (:class:`~bandit_engine.store.EventLog` on SQLite,
:class:`~bandit_engine.store.postgres.PostgresEventLog` on PostgreSQL) satisfy it; the service, the
server, the CLI and the evaluation loaders are typed against it and get one from
:func:`~bandit_engine.store.open_log`, so none of them knows which database it writes to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self

import pandas as pd

from ..records import Decision, LearnedReward
from .connection import Synchronous
from .consent import ConsentChange
from .profile_bulk import ProfileDigester
from .rows import FloatArray, JournalEntry
from .versions import LeaseRow, VersionInfo

__all__ = ["EventStore"]


class EventStore(Protocol):
    """The event log's methods; see :class:`~bandit_engine.store.EventLog` for each one's
    contract, which both backends keep."""

    path: str
    synchronous: Synchronous
    read_only: bool

    @property
    def where(self) -> str:
        """The database as shown in messages (a URL without its password)."""

    @property
    def pseudonymizes(self) -> bool: ...

    @property
    def commit_waits(self) -> bool: ...

    def pseudonym(self, user_id: str) -> str: ...

    # transactions and the journal
    def transaction(self) -> AbstractContextManager[Any]: ...

    def begin(self) -> None: ...

    def begin_if_free(self) -> bool: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def last_seq(self) -> int: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    # writing
    def log_decision(
        self,
        decision: Decision,
        *,
        user_id: str | None,
        x: FloatArray,
        z: FloatArray,
        model_id: str,
        wait: bool = ...,
    ) -> int: ...

    def log_event(
        self,
        decision_id: str,
        type: str,
        value: float,
        ts: float,
        event_id: str | None,
        status: str,
        *,
        wait: bool = ...,
    ) -> bool: ...

    def log_learned(self, learned: LearnedReward) -> bool: ...

    def log_admin(self, op: str, payload: Mapping[str, Any], *, ts: float | None = None) -> int: ...

    def upsert_profile(
        self,
        user_id: str,
        platform: str,
        fields: Mapping[str, Any],
        *,
        replace: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]: ...

    # profiles in bulk (store/profile_bulk.py)
    def write_profiles(
        self,
        platform: str,
        user_ids: Sequence[str],
        texts: Sequence[str],
        *,
        now: float | None = None,
    ) -> int: ...

    def profile_digester(self) -> ProfileDigester: ...

    def write_profile_digests(
        self,
        platform: str,
        digests: Sequence[bytes],
        texts: Sequence[str],
        *,
        now: float | None = None,
    ) -> int: ...

    def delete_profiles_before(self, platform: str, stamp: float) -> int: ...

    # consent (store/consent.py)
    def set_consent(
        self,
        user_id: str,
        consent: Mapping[str, Any],
        *,
        source: str = "api",
        now: float | None = None,
    ) -> dict[str, bool]: ...

    def write_consents(
        self,
        user_ids: Sequence[str],
        records: Sequence[Mapping[str, bool]],
        *,
        source: str = "import",
        now: float | None = None,
    ) -> int: ...

    def consent_log_of(self, user_id: str) -> list[ConsentChange]: ...

    def profile_counts(self) -> dict[str, int]: ...

    # reading
    def get_profile(self, user_id: str) -> dict[str, dict[str, Any]] | None: ...

    def decision_ids_of(self, user_id: str) -> list[str]: ...

    def has_decision(self, decision_id: str) -> bool: ...

    def decision(self, decision_id: str) -> dict[str, Any]: ...

    def counts(self) -> dict[str, int]: ...

    def entries_since(self, seq: int) -> Iterator[JournalEntry]: ...

    def decisions_frame(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        model_id: str | None = None,
    ) -> pd.DataFrame: ...

    # column reads for reports and exports (store/columns.py)
    def decision_chunks(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 500_000,
        after: int = 0,
    ) -> Iterator[list[tuple[Any, ...]]]: ...

    def event_totals(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        events_after: int = 0,
        events_upto: int | None = None,
    ) -> list[tuple[int, str, int, float]]: ...

    def live_marks(self) -> tuple[int, int, int]: ...

    def rewards_of(self, seqs: Sequence[int]) -> list[tuple[int, float]]: ...

    def decision_health(
        self, *, after: int = 0, upto: int | None = None, small: float = 0.01
    ) -> list[tuple[str, int, float, float, int, int]]: ...

    def decision_at(self, seq: int) -> tuple[str, str, float] | None: ...

    def users_before(self, ts: float) -> list[Any]: ...

    def group_counts(
        self, *, since: float | None = None, until: float | None = None
    ) -> list[tuple[str, int, int]]: ...

    def export_chunks(
        self,
        table: str,
        *,
        since: float | None = None,
        until: float | None = None,
        chunk: int = 200_000,
    ) -> Iterator[tuple[Sequence[str], list[tuple[Any, ...]]]]: ...

    # business rules' counters and decision modes (store/rule_rows.py)
    def rule_history(
        self, pseudonym: str, since: float, *, orders: bool
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]]]: ...

    def rule_budget_used(self, day: int, at_least: int = 1) -> dict[tuple[str, str], int]: ...

    def rule_record_show(
        self,
        pseudonym: str | None,
        shows: Sequence[tuple[str, str]],
        budget_units: Sequence[tuple[str, str]],
        *,
        now: float,
        day: int,
        forget_before: float,
    ) -> None: ...

    def rule_record_order(self, budget_units: Sequence[tuple[str, str]], *, day: int) -> None: ...

    def log_mode(self, decision_id: str, mode: str, target_p: float | None = None) -> None: ...

    def decision_modes(self, *, closed_only: bool = False) -> list[dict[str, Any]]: ...

    # shared live behaviour (issue 12: store/behaviour_rows.py)
    def put_behaviour(self, rows: Iterable[tuple[str, int, bytes]], *, seq: int) -> int: ...

    def behaviour_of(self, key_hex: str) -> tuple[int, bytes] | None: ...

    def behaviour_count(self) -> int: ...

    def forget_behaviour_rows(self, key_hex: str, *, notify_learner: bool) -> int: ...

    def take_behaviour_forgets(self) -> list[str]: ...

    def has_behaviour_forgets(self) -> bool: ...

    # retention and housekeeping
    def forget_user(self, user_id: str) -> dict[str, int]: ...

    def purge(
        self,
        older_than_seconds: float,
        now: float | None = None,
        *,
        keep_after: int | None = None,
    ) -> dict[str, int]: ...

    def truncate_wal(self) -> bool: ...

    def integrity_check(self) -> str: ...

    def close(self) -> None: ...

    # model versions and the learner lease (issue 12: store/versions.py)
    def publish_version(
        self,
        state: bytes,
        *,
        log_seq: int,
        model_id: str,
        policy_version: str,
        n_learned: int,
        learner: str,
        keep: int = 5,
        now: float | None = None,
    ) -> int: ...

    def latest_version(self) -> VersionInfo | None: ...

    def version_state(self, version: int) -> bytes | None: ...

    def versions(self) -> list[VersionInfo]: ...

    def lease_row(self) -> LeaseRow: ...

    def lease_take(self, holder: str, *, now: float, ttl: float, force: bool = False) -> bool: ...

    def lease_renew(self, holder: str, *, now: float, ttl: float, position: int | None) -> bool: ...

    def lease_release(self, holder: str) -> None: ...

    def decision_window(self, decision_id: str) -> tuple[float, str, str] | None: ...

    def has_event(self, decision_id: str, event_id: str) -> bool: ...

    def tail(self, since: int, until: int) -> list[JournalEntry]: ...

    def pending_as_of(
        self, seq: int, model_id: str
    ) -> tuple[list[JournalEntry], list[JournalEntry]]: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
