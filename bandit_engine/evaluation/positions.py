"""Per-position estimates for position-based logs (e.g. the Open Bandit Dataset's three slots)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError
from ..records import Estimate
from ._validate import as_action

__all__ = ["per_position"]


def per_position(
    estimator_fn: Callable[..., Estimate], *, position: ArrayLike, **kwargs: Any
) -> dict[int, Estimate]:
    """Run an estimator separately on the rows of each position.

    The estimators themselves pool positions: their value is the average over all logged rows,
    i.e. the mean reward per displayed slot. This returns one estimate per position instead
    (the mean reward of slot ``l``), keyed by the 0-based position.

    Parameters
    ----------
    estimator_fn
        One of ``ips``, ``snips``, ``dm``, ``dr``, ``sndr``, ``switch_dr``, ``replay``.
    position
        (n,) 0-based positions.
    kwargs
        The estimator's keyword arguments. Every array whose first dimension is ``n`` is cut to
        the position's rows; everything else (``clip``, ``seed`` ...) is passed unchanged. An
        (n, K, L) ``action_dist`` is cut by rows and still indexed with ``position``.

    Returns
    -------
    dict[int, Estimate]
        One estimate per position present in ``position``, in increasing order.
    """
    pos = as_action("position", position)
    n = int(pos.shape[0])
    if n == 0:
        raise DataError("no logged rows: position is empty", field="position", value=0)
    sliced: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, list | tuple):
            value = np.asarray(value)
        sliced[key] = value
    out: dict[int, Estimate] = {}
    for level_pos in np.unique(pos):
        rows = np.flatnonzero(pos == level_pos)
        args = {
            key: (
                value[rows]
                if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n
                else value
            )
            for key, value in sliced.items()
        }
        out[int(level_pos)] = estimator_fn(position=pos[rows], **args)
    return out
