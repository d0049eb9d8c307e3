"""The engine and its event log kept in step: every process that logs goes through here.

:class:`LoggedEngine` decides, reports, applies catalog changes, learns, checkpoints and restarts
(checkpoint + roll-forward of the journal); the HTTP server adds group commit and timers around it,
the simulator's ``--log`` uses it as it is. :func:`apply_admin` is the one way a catalog change is
applied, live and when rolling forward.
"""

from .admin import ADMIN_OPS, apply_admin
from .checkpoints import Checkpointer, RestoreReport
from .logged import AppliedOp, LoggedEngine, LogProfiles

__all__ = [
    "ADMIN_OPS",
    "AppliedOp",
    "Checkpointer",
    "LogProfiles",
    "LoggedEngine",
    "RestoreReport",
    "apply_admin",
]
