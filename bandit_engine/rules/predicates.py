"""A small declarative predicate language over profile and bundle columns (parsed, never evaluated).

Grammar (one comparison per predicate)::

    predicate := column OP right
    right     := literal | [number "*"] column | "[" literal ("," literal)* "]"
    column    := deal.<col> | course.<col> | <platform>.<field>
    OP        := == | != | < | <= | > | >=  | in | not in
    literal   := number | 'text' | "text" | true | false

``deal.*`` and ``course.*`` name columns of the catalog's deals and courses tables; any other
``<platform>.<field>`` names a field of the user's profile. ``deal.price <= 1.5 * groupbuy.avg_ticket``
compares each candidate's deal price with 1.5 times the user's average ticket. The text is split
into tokens by one regular expression and checked token by token: nothing is passed to ``eval``.

Missing values (a user without the field, a catalog row without the column, ``NaN``) make a
comparison *undecided*; the rule that owns the predicate says what undecided means
(:class:`~bandit_engine.rules.spec.EligibilityRule`, ``if_missing``). Ordering operators need
numbers on both sides; a text value on either side is undecided.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["BUNDLE_SIDES", "OPERATORS", "Predicate", "parse_predicate"]

#: the comparison operators, longest first (the tokenizer tries them in this order)
OPERATORS = ("not in", "==", "!=", "<=", ">=", "<", ">", "in")
#: column prefixes that name catalog columns (everything else is a profile field)
BUNDLE_SIDES = ("deal", "course")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'[^']*'|"[^"]*")
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<op>not\s+in\b|==|!=|<=|>=|<|>|in\b)
      | (?P<col>[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<word>true|false)\b
      | (?P<punct>[\[\],*])
    )""",
    re.VERBOSE,
)

Scalar = float | str | bool


@dataclass(frozen=True)
class Predicate:
    """A parsed comparison ``column op right``.

    Attributes
    ----------
    text
        The source text (saved with the model; re-parsed on load).
    column
        The left column, ``"<side>.<name>"``.
    op
        One of :data:`OPERATORS`.
    value
        The literal on the right (a tuple for ``in`` / ``not in``), or ``None`` when the right side
        is a column.
    other, factor
        The right column and the number it is multiplied by (``factor`` 1 without ``k *``).
    """

    text: str
    column: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None = None
    other: str | None = None
    factor: float = 1.0

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the predicate reads."""
        return (self.column,) if self.other is None else (self.column, self.other)

    def compare(self, left: Any, right: Any) -> bool | None:
        """``left op right`` for two scalars; ``None`` (undecided) when either is missing or an
        ordering compares text."""
        if _missing(left) or _missing(right):
            return None
        op = self.op
        if op in ("in", "not in"):
            assert isinstance(right, tuple)
            hit = any(_equal(left, v) for v in right)
            return hit if op == "in" else not hit
        if op == "==":
            return _equal(left, right)
        if op == "!=":
            return not _equal(left, right)
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return None
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    return None


def _equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            raise ConfigError.for_field(
                field, text, f"cannot be read at character {pos + 1} ({stripped[pos:][:12]!r})"
            )
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, tok: str) -> Scalar:
    if kind == "str":
        return tok[1:-1]
    if kind == "num":
        return float(tok)
    return tok == "true"


def parse_predicate(text: Any, field: str = "predicate") -> Predicate:
    """Parse ``text`` (see the module docstring); a :class:`~bandit_engine.errors.ConfigError`
    naming ``field`` and the text when it does not follow the grammar."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError.for_field(field, text, 'must be a comparison like "deal.price <= 100"')
    toks = _tokens(text, field)
    shape = "must look like '<column> <op> <value | [k *] column>'"
    if len(toks) < 3 or toks[0][0] != "col" or toks[1][0] != "op":
        raise ConfigError.for_field(field, text, shape)
    column = toks[0][1]
    op = " ".join(toks[1][1].split())
    rest = toks[2:]
    if op in ("in", "not in"):
        if rest[0] != ("punct", "[") or rest[-1] != ("punct", "]"):
            raise ConfigError.for_field(field, text, f"'{op}' needs a list like ['a', 'b']")
        items = rest[1:-1]
        values: list[Scalar] = []
        for i, (kind, tok) in enumerate(items):
            if i % 2 == 1:
                if (kind, tok) != ("punct", ","):
                    raise ConfigError.for_field(field, text, "list items must be separated by ','")
                continue
            if kind not in ("str", "num", "word"):
                raise ConfigError.for_field(field, text, "list items must be literals")
            values.append(_literal(kind, tok))
        if not values or len(items) % 2 == 0:
            raise ConfigError.for_field(field, text, "needs a non-empty list of literals")
        return Predicate(text, column, op, value=tuple(values))
    if len(rest) == 1 and rest[0][0] in ("str", "num", "word"):
        value = _literal(*rest[0])
        if op in ("<", "<=", ">", ">=") and isinstance(value, str):
            raise ConfigError.for_field(field, text, f"'{op}' needs a number, not text")
        return Predicate(text, column, op, value=value)
    if len(rest) == 1 and rest[0][0] == "col":
        return Predicate(text, column, op, other=rest[0][1])
    if len(rest) == 3 and rest[0][0] == "num" and rest[1] == ("punct", "*") and rest[2][0] == "col":
        factor = float(rest[0][1])
        if not math.isfinite(factor):
            raise ConfigError.for_field(field, text, "needs a finite factor")
        if op not in ("<", "<=", ">", ">="):
            raise ConfigError.for_field(field, text, f"'{op}' cannot compare with a scaled column")
        return Predicate(text, column, op, other=rest[2][1], factor=factor)
    raise ConfigError.for_field(field, text, shape)
