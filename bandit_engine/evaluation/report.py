"""Reports of a :class:`~bandit_engine.evaluation.results.PolicyEvaluation`: a text table, a
JSON document with stable keys, and a PNG of the estimates with their intervals.

The JSON document (``schema: "bandit-evaluate/1"``) has the keys ``schema``, ``log``, ``policy``,
``n_rows``, ``n_actions``, ``n_nonzero_rewards``, ``logging_policy``, ``estimates`` (a list in the
requested order, each with ``estimator``, ``value``, ``ci_low``, ``ci_high``, ``std_error``, ``n``,
``ess``, ``max_weight``, ``clipped_share``, ``ci_method``, ``level``, optional ``extra`` and an
``uplift`` object with ``value``, ``ci_low``, ``ci_high``, ``std_error``, ``level``,
``ci_method``, ``significant``, ``supported``), ``skipped``, ``support`` (the support / overlap
diagnostic of :mod:`~bandit_engine.evaluation.support`: ``deterministic_share``,
``unsupported_share``, ``unsupported_mass``, ``ess``, ``max_weight``, ``supported``; ``null``
when the log has no propensities), ``warnings`` and ``settings``. Numbers that are not
finite (an undefined effective sample size for DM, for instance) are written as ``null`` so the
output is strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records import Estimate
from .results import PolicyEvaluation
from .uplift import Uplift

__all__ = [
    "JSON_SCHEMA",
    "evaluation_json",
    "format_table",
    "plot_evaluation",
    "plot_title",
    "uplift_colour",
]

JSON_SCHEMA = "bandit-evaluate/1"

#: Plot colours of an uplift: significantly better, significantly worse, not significant.
UPLIFT_COLOURS = {"better": "tab:green", "worse": "tab:red", "neutral": "tab:gray"}


def uplift_colour(up: Uplift) -> str:
    """The plot colour of an uplift: green when significantly better than the logging policy,
    red when significantly worse, grey when not significant (interval covering 0, rounding-size
    uplift, or an evaluation without support: :attr:`Uplift.significant` decides)."""
    if not up.significant:
        return UPLIFT_COLOURS["neutral"]
    return UPLIFT_COLOURS["better"] if up.value > 0.0 else UPLIFT_COLOURS["worse"]


def _finite(value: Any) -> Any:
    """Replace non-finite floats (recursively) by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def evaluation_json(
    ev: PolicyEvaluation,
    *,
    log: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation as a JSON-ready dict with stable keys (module docstring).

    ``log`` and ``policy`` add descriptive fields (path, format, training rows ...) to the ``log``
    and ``policy`` objects.
    """
    body = ev.to_dict()
    doc: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "log": dict(log or {}),
        "policy": {
            "description": ev.policy,
            "action_dist": ev.method,
            **dict(policy or {}),
        },
        "n_rows": ev.n_rows,
        "n_actions": ev.n_actions,
        "n_nonzero_rewards": ev.n_nonzero_rewards,
        "logging_policy": body["logged"],
        "estimates": body["estimates"],
        "skipped": body["skipped"],
        "support": body["support"],
        "warnings": body["warnings"],
        "settings": body["settings"],
    }
    out: dict[str, Any] = _finite(doc)
    return out


def _num(value: float, width: int, digits: int = 4, sign: bool = False) -> str:
    if not math.isfinite(value):
        return "-".rjust(width)
    return f"{value:+.{digits}f}".rjust(width) if sign else f"{value:.{digits}f}".rjust(width)


def _ci(low: float, high: float, sign: bool = False) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[-, -]".ljust(21)
    fmt = "+.4f" if sign else ".4f"
    return f"[{low:{fmt}}, {high:{fmt}}]".ljust(21)


def format_table(
    ev: PolicyEvaluation,
    *,
    log: Mapping[str, Any] | None = None,
    policy: Mapping[str, Any] | None = None,
) -> str:
    """A plain-text report: header, one row per estimator, the uplifts, then the warnings."""
    pct = f"{100 * ev.logged.level:.0f}%"
    lines: list[str] = []
    if not ev.supported:
        # first, before any number: the numbers below cannot be read as they stand
        lines.append("!" * 100)
        lines.extend(_wrap(f"!! {ev.warnings[0]}", 100))
        lines.append("!" * 100)
        lines.append("")
    info = dict(log or {})
    where = info.get("path", "")
    fmt = f" ({info['format']})" if "format" in info else ""
    trained = policy.get("train_rows") if policy else None
    train_note = f", {trained} earlier rows used to train the policy" if trained else ""
    lines.append(f"log:     {where}{fmt}")
    lines.append(
        f"         {ev.n_rows} rows evaluated{train_note}; {ev.n_actions} actions; "
        f"{ev.n_nonzero_rewards} rows with a non-zero reward"
    )
    lines.append(f"policy:  {ev.policy}")
    lines.append(f"         action distribution: {ev.method}")
    lg = ev.logged
    lines.append(
        f"logging policy (on-policy mean reward): {lg.value:.4f}  {pct} CI "
        f"{_ci(lg.ci_low, lg.ci_high).strip()}  n={lg.n}"
    )
    lines.append("")
    header = (
        f"{'estimator':<14}{'estimate':>9}  {pct + ' CI':<21}{'std err':>8}"
        f"{'ESS':>10}{'n':>8}{'max w':>9}{'clipped':>9}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for name, est in ev.estimates.items():
        lines.append(_estimate_row(name, est))
    lines.append("")
    lines.append("uplift over the logging policy (paired interval on the same rows):")
    uheader = f"{'estimator':<14}{'uplift':>9}  {pct + ' CI':<21}{'significant':>12}"
    lines.append(uheader)
    lines.append("-" * len(uheader))
    for name, up in ev.uplifts.items():
        sig = "yes" if up.significant else ("no (support)" if not up.supported else "no")
        lines.append(
            f"{name:<14}{_num(up.value, 9, sign=True)}  {_ci(up.ci_low, up.ci_high, True)}{sig:>12}"
        )
    lines.extend(_context_support_lines(ev))
    if ev.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in ev.warnings)
    return "\n".join(lines) + "\n"


def _context_support_lines(ev: PolicyEvaluation) -> list[str]:
    """The per-context support block: the distribution over rows of their context group's
    policy mass on never-tried actions, and the worst groups."""
    ctx = ev.support.context if ev.support is not None else None
    if ctx is None:
        return []
    d = ctx.to_dict()
    lines = [
        "",
        f"support by context ({d['groups']}): the policy's mass on actions the log never (or "
        f"almost never) tried there",
        f"  mean {100 * d['mean_mass']:.1f}%, median {100 * d['median_mass']:.1f}%, 90th "
        f"percentile {100 * d['p90_mass']:.1f}%, worst {100 * d['max_mass']:.1f}%; "
        f"{100 * d['rows_above_limit']:.1f}% of the rows are in contexts above the "
        f"{100 * ev.support.max_unsupported_mass_limit:g}% limit"
        if ev.support is not None
        else "",
    ]
    if d["judged_pairs"] < 1.0:
        lines.append(
            f"  judged on {100 * d['judged_pairs']:.0f}% of the (context, action) pairs: the "
            "others have too few rows for 'never tried' to mean more than chance"
        )
    if d["worst"]:
        lines.append("  worst contexts:")
        for w in d["worst"]:
            acts = ", ".join(f"{a}: {100 * m:.1f}%" for a, m in w["top_actions"].items())
            lines.append(
                f"    {w['context']} ({w['rows']} rows): {100 * w['unsupported_mass']:.1f}% on "
                f"{w['never_tried']} never-tried action(s) ({acts})"
            )
    return lines


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width, subsequent_indent="!! ")


def _estimate_row(name: str, est: Estimate) -> str:
    ess = f"{est.ess:.1f}" if math.isfinite(est.ess) else "-"
    max_w = f"{est.max_weight:.3g}" if math.isfinite(est.max_weight) else "-"
    clipped = f"{100 * est.clipped_share:.1f}%"
    return (
        f"{name:<14}{_num(est.value, 9)}  {_ci(est.ci_low, est.ci_high)}"
        f"{_num(est.std_error, 8)}{ess:>10}{est.n:>8}{max_w:>9}{clipped:>9}"
    )


def plot_title(ev: PolicyEvaluation, title: str | None = None) -> tuple[str, str]:
    """``(text, colour)`` of the chart's title: red, with a second line, without support."""
    text = title or f"Off-policy evaluation of {ev.policy} on {ev.n_rows} logged rows"
    if ev.supported:
        return text, "black"
    return (
        f"{text}\nNO SUPPORT: the log never shows actions this policy plays; the estimates are "
        "biased and no uplift is significant (see the warnings)",
        UPLIFT_COLOURS["worse"],
    )


def plot_evaluation(ev: PolicyEvaluation, path: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG: each estimate with its interval beside the logging policy's value, and each
    uplift with its interval beside zero. Uses matplotlib's Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ConfigError.for_field("plot", str(out), "must be a .png file name")
    if not out.parent.is_dir():
        raise ConfigError.for_field("plot", str(out), "must be in an existing folder")
    names = list(ev.estimates)
    ys = list(range(len(names)))[::-1]
    pct = f"{100 * ev.logged.level:.0f}%"
    fig = Figure(figsize=(11.0, 1.6 + 0.55 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    ax_v, ax_u = fig.subplots(1, 2, sharey=True)
    lg = ev.logged
    ax_v.axvspan(lg.ci_low, lg.ci_high, color="0.85", label=f"logging policy, {pct} CI")
    ax_v.axvline(lg.value, color="0.4", linestyle="--", linewidth=1)
    for y, name in zip(ys, names, strict=True):
        est = ev.estimates[name]
        ax_v.errorbar(
            est.value,
            y,
            xerr=[[est.value - est.ci_low], [est.ci_high - est.value]],
            fmt="o",
            color="tab:blue",
            capsize=4,
        )
        up = ev.uplifts[name]
        ax_u.errorbar(
            up.value,
            y,
            xerr=[[up.value - up.ci_low], [up.ci_high - up.value]],
            fmt="o",
            color=uplift_colour(up),
            capsize=4,
        )
    ax_u.axvline(0.0, color="0.4", linestyle="--", linewidth=1)
    ax_v.set_yticks(ys, names)
    ax_v.set_xlabel("estimated mean reward per decision")
    ax_v.set_title(f"Value of the evaluated policy ({pct} CI)")
    ax_v.legend(loc="best", fontsize="small")
    ax_u.set_xlabel("candidate minus logging policy")
    ax_u.set_title(f"Uplift over the logging policy ({pct} CI)")
    for ax in (ax_v, ax_u):
        ax.grid(axis="x", alpha=0.3)
    text, colour = plot_title(ev, title)
    fig.suptitle(text, color=colour)
    fig.savefig(out, format="png", dpi=110)
    return out
