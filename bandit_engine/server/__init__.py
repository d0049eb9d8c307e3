"""HTTP policy server: FastAPI over the :class:`~bandit_engine.Engine` and the
event log it opens with :func:`~bandit_engine.store.open_log` (``bandit serve-policy``)."""

from __future__ import annotations

from .app import create_app, open_server
from .auth import Secret, load_api_token
from .settings import ServerSettings

__all__ = ["Secret", "ServerSettings", "create_app", "load_api_token", "open_server"]
