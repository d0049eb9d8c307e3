"""The optional compiled kernels (extra ``fast``, numba): one switch for all of them.

Each kernel module mirrors a numpy implementation that always exists; the environment variable
``BANDIT_ENGINE_NO_NUMBA`` (any non-empty value) forces the numpy code even when numba is installed.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["compiled_module"]


def compiled_module(name: str) -> ModuleType | None:
    """``bandit_engine.policies.<name>`` if numba is installed and not switched off, else ``None``."""
    if os.environ.get("BANDIT_ENGINE_NO_NUMBA"):
        return None
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:  # numba not installed: the numpy implementation runs
        return None
