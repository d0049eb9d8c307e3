"""Policies: every one implements :class:`~bandit_engine.policies.base.Policy`."""

from __future__ import annotations

from .base import BasePolicy, Policy

__all__ = ["BasePolicy", "Policy"]
