"""Policy specs: a registry name, hyperparameters and an optional report label.

A policy (in a file, in ``--policy`` / ``--control`` or in ``replay.policy``) is a registry name
plus keyword hyperparameters (:func:`bandit_engine.policies.make_policy`). On the command line:
``NAME[:key=value,...]``, for example ``linucb:alpha=0.1,discount=0.999`` or
``vw:exploration=bag,bag=5,interactions=[UA,UU]``; the reserved key ``label`` names it in the
report. For ``fixed_rule`` the ``column`` may be a bundle feature name (``deal.discount``) instead
of an index; it is resolved against the engine's catalog.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..policies.registry import POLICIES, make_policy, policy_params

__all__ = ["PolicySpec", "parse_policy_spec"]

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class PolicySpec:
    """A policy by registry name with its hyperparameters and an optional report label.

    ``params`` is stored as sorted ``(key, value)`` pairs so specs hash and compare by value.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    label: str | None = None

    @classmethod
    def create(
        cls, name: str, params: Mapping[str, Any] | None = None, label: str | None = None
    ) -> PolicySpec:
        """Validate ``name`` and the parameter names against the registry (values are checked
        when the policy is built, see :meth:`check`)."""
        if not isinstance(name, str) or name not in POLICIES:
            raise ConfigError.for_field("name", name, f"must be one of {list(POLICIES)}")
        items = dict(params or {})
        valid = [p for p in policy_params(name) if p != "seed"] + ["seed"]
        for key in items:
            if key not in valid:
                raise ConfigError.for_field(
                    f"{name}.{key}", items[key], f"is not a parameter of {name!r}; valid: {valid}"
                )
        if label is not None and (not isinstance(label, str) or not label.strip()):
            raise ConfigError.for_field("label", label, "must be a non-empty string")
        frozen = tuple(sorted((k, _freeze(v)) for k, v in items.items()))
        return cls(name, frozen, label)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The hyperparameters as keyword arguments (lists restored)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}

    def describe(self) -> str:
        """``name(k=v, ...)``: the spec in one line."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.params)
        return f"{self.name}({inner})"

    def check(self) -> None:
        """Build the policy once so bad hyperparameter values fail before any simulation.

        A ``fixed_rule`` column given as a feature name is checked when the engine is built (the
        names depend on the catalog).
        """
        kwargs = self.kwargs
        if self.name == "fixed_rule" and isinstance(kwargs.get("column"), str):
            kwargs["column"] = 0
        kwargs.setdefault("seed", 0)
        policy = make_policy(self.name, **kwargs)
        close = getattr(policy, "close", None)
        if callable(close):  # the VW backend holds a native workspace
            close()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "params": self.kwargs}
        if self.label is not None:
            out["label"] = self.label
        return out


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _scalar(text: str) -> Scalar:
    """A command-line value: bool, none, int, float, or else the string itself."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        return t
    return v if math.isfinite(v) else t


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside ``[...]``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_policy_spec(text: str, *, option: str = "--policy") -> PolicySpec:
    """Parse ``NAME[:key=value,...]`` (values: numbers, true/false, none, strings, ``[a,b]``).

    Examples
    --------
    >>> parse_policy_spec("linucb:alpha=0.1,discount=0.999").describe()
    'linucb(alpha=0.1, discount=0.999)'
    >>> parse_policy_spec("fixed_rule:column=deal.discount,label=best discount").label
    'best discount'
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError.for_field(option, text, "must look like NAME[:key=value,...]")
    name, _, rest = text.strip().partition(":")
    params: dict[str, Any] = {}
    label: str | None = None
    if rest.strip():
        for part in _split_top(rest):
            key, eq, raw = part.partition("=")
            key = key.strip()
            if not eq or not key:
                raise ConfigError.for_field(
                    option, text, f"has {part.strip()!r} where key=value was expected"
                )
            raw = raw.strip()
            value: Any
            if raw.startswith("[") and raw.endswith("]"):
                inner = raw[1:-1].strip()
                value = [_scalar(v) for v in _split_top(inner)] if inner else []
            else:
                value = _scalar(raw)
            if key == "label":
                label = str(raw)
            elif key in params:
                raise ConfigError.for_field(f"{option} {name}.{key}", raw, "is given twice")
            else:
                params[key] = value
    try:
        return PolicySpec.create(name.strip(), params, label)
    except ConfigError as exc:
        raise ConfigError(
            f"{option} {text!r}: {exc.message}", field=exc.field, value=exc.value
        ) from None
