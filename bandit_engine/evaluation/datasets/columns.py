"""Which columns of a CSV / Parquet / DataFrame log are read, under which name, and a note for
every column that is not read but looks as if it should be.

A log whose propensities are silently ignored is the worst kind of wrong answer: only DM runs and
the command still succeeds. So the propensity column is also recognised under Open Bandit
Pipeline's name ``pscore`` (renamed to ``propensity``, with a note), and every column the loader
does not read is named in a note, with a hint when its name looks like a propensity, a reward, a
context feature or an action.
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["KNOWN_COLUMNS", "PROPENSITY_ALIASES", "column_notes", "normalise_columns"]

#: Column names :func:`~bandit_engine.evaluation.datasets.load_log` reads (besides ``x_0 ..``).
KNOWN_COLUMNS = (
    "action",
    "bundle_id",
    "propensity",
    "reward",
    "click",
    "order",
    "order_value",
    "candidates",
    "timestamp",
    "decision_id",
    "context",
)
#: Other names of the propensity column: Open Bandit Pipeline calls it ``pscore``.
PROPENSITY_ALIASES = ("pscore",)

_CONTEXT = re.compile(r"^x_\d+$")
_PROPENSITY_LIKE = re.compile(
    r"propens|pscore|prob|^p$|^ps$|^mu$|^pi_?b$|^p_?log|logging_?p|behaviou?r_?p"
)
_REWARD_LIKE = re.compile(
    r"^(clicked|clicks|conversion|converted|label|y|outcome|target|revenue|value|rewards?_.*)$"
)
_CONTEXT_LIKE = re.compile(r"^(x\d+|x_.+|f_?\d+|feat.*|ctx.*|context_.+|user_?feat.*)$")
_ACTION_LIKE = re.compile(r"^(arm|arm_id|item|item_id|action_id|chosen|choice|bundle)$")


def normalise_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The frame with an aliased propensity column renamed to ``propensity``, and the notes
    saying so (or that an alias was ignored because ``propensity`` is present)."""
    notes: list[str] = []
    names = [str(c) for c in frame.columns]
    for alias in PROPENSITY_ALIASES:
        if alias not in names:
            continue
        if "propensity" in names:
            notes.append(
                f"columns 'propensity' and '{alias}' are both present: the logging propensity is "
                f"read from 'propensity' and '{alias}' is ignored (drop one of them)"
            )
            continue
        frame = frame.rename(columns={alias: "propensity"})
        names = [str(c) for c in frame.columns]
        notes.append(
            f"the logging propensity is read from column '{alias}' (Open Bandit Pipeline's name "
            "for it)"
        )
    return frame, notes


def column_notes(frame: pd.DataFrame) -> list[str]:
    """Notes about the columns of a (normalised) frame that the loader does not read, and about
    a missing propensity column (then only DM can run)."""
    names = [str(c) for c in frame.columns]
    unread = [c for c in names if c not in KNOWN_COLUMNS and not _CONTEXT.match(c)]
    if "context" in names and any(_CONTEXT.match(c) for c in names):
        unread.append("context")  # the x_* columns win
    kinds: dict[str, list[str]] = {"propensity": [], "reward": [], "context": [], "action": []}
    other: list[str] = []
    for c in unread:
        low = c.lower()
        if c in PROPENSITY_ALIASES:
            continue  # normalise_columns has said what became of it
        if _PROPENSITY_LIKE.search(low):
            kinds["propensity"].append(c)
        elif _REWARD_LIKE.match(low):
            kinds["reward"].append(c)
        elif _CONTEXT_LIKE.match(low):
            kinds["context"].append(c)
        elif _ACTION_LIKE.match(low):
            kinds["action"].append(c)
        elif low != "position":
            other.append(c)
    notes: list[str] = []
    if "propensity" not in names:
        hint = (
            f" (column(s) {_quote(kinds['propensity'])} look like propensities but are not read "
            "under that name)"
            if kinds["propensity"]
            else ""
        )
        notes.append(
            "the log has no propensity column, so only DM can run: IPS, SNIPS and the DR family "
            "need the logging probability of each logged action"
            + hint
            + "; name that column 'propensity' (or 'pscore') to use them"
        )
    elif kinds["propensity"]:
        notes.append(
            f"column(s) {_quote(kinds['propensity'])} look like propensities but are not read "
            "(one propensity column is used)"
        )
    if kinds["reward"]:
        reward_from = "'reward'" if "reward" in names else "'click' (and 'order', 'order_value')"
        notes.append(
            f"column(s) {_quote(kinds['reward'])} look like rewards but are not read; the reward "
            f"comes from {reward_from}"
        )
    if kinds["context"]:
        notes.append(
            f"column(s) {_quote(kinds['context'])} look like context features but are not read: "
            "context columns must be named x_0 .. x_{d-1} (or one 'context' column of JSON lists)"
        )
    if kinds["action"]:
        notes.append(
            f"column(s) {_quote(kinds['action'])} look like action ids but are not read; the "
            "action comes from 'action' (or 'bundle_id')"
        )
    if "position" in names:
        notes.append(
            "column 'position' is not read: CSV / Parquet logs are evaluated without positions "
            "(only Open Bandit Dataset folders carry them)"
        )
    if other:
        notes.append(f"column(s) {_quote(other)} are not read")
    return notes


def _quote(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")
