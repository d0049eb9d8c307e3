"""The terminal report of ``bandit simulate --from-log``: the world's assumptions first, then its
calibration on held-out logged rows, the logging-policy check, and the policies with their paired
uplift (the headline is the synthetic simulator's, :func:`~bandit_engine.simulation.render.headline`).

It reads only the plain data of :func:`~bandit_engine.simulation.from_log.summarize_from_log`.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .render import headline

__all__ = ["render_from_log"]


def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%"


def _num(x: float | None, spec: str = ".5f") -> str:
    return "n/a" if x is None else format(x, spec)


def _verdict(u: dict[str, Any]) -> str:
    if not u["significant"]:
        return "not significant"
    rel = u.get("uplift")
    sign = rel if rel is not None else u["difference"]
    return "[green]better[/green]" if sign > 0 else "[red]worse[/red]"


def _render_calibration(summary: dict[str, Any], console: Console) -> None:
    cal = summary["calibration"]
    t = Table(
        title=(
            f"Calibration of the world on held-out logged rows ({cal['rows']:,} rows, each "
            "predicted by the model of the other folds), by decile of prediction"
        ),
        title_justify="left",
    )
    t.add_column("decile", justify="right")
    t.add_column("rows", justify="right")
    t.add_column("predicted", justify="right")
    t.add_column("observed [95% CI]", justify="right")
    for k, d in enumerate(cal["deciles"], start=1):
        t.add_row(
            str(k),
            f"{d['rows']:,}",
            _num(d["predicted"]),
            f"{_num(d['observed'])} [{_num(d['observed_ci_low'])}, {_num(d['observed_ci_high'])}]",
        )
    console.print(t)
    skill = cal.get("brier_skill")
    line = (
        f"Brier score {cal['brier']:.6g} against {cal['brier_constant']:.6g} for a held-out "
        f"constant (skill {_pct(skill)})"
    )
    if "log_loss" in cal:
        line += f"; log-loss {cal['log_loss']:.6g} against {cal['log_loss_constant']:.6g}"
    console.print(line + ".")
    if skill is None or skill <= 0:
        console.print(
            "[yellow]The reward model predicts held-out rewards no better than a constant: in "
            "this world the arms differ little or not at all, so policies can hardly differ "
            "either. More logged rows (or rewards) are needed for a world with structure."
            "[/yellow]"
        )


def render_from_log(summary: dict[str, Any], console: Console) -> None:
    """Print a ``--from-log`` report (module docstring)."""
    world = summary["world"]
    log = summary["log"]
    console.print(
        f"[bold]Simulation on a world fitted to {escape(str(log.get('path', '')))}[/bold]: "
        f"{world['rows']:,} logged rows, {world['arms']} arms, reward model "
        f"{world['reward_model']} cross-fitted on {world['cross_fit_folds']} folds; rewards "
        f"{world['rewards']}."
    )
    console.print("Assumptions:")
    for a in world["assumptions"]:
        console.print(f"  - {a}")
    _render_calibration(summary, console)
    chk = summary["logging_policy_check"]
    inside = "inside" if chk["within_ci"] else "[red]outside[/red]"
    console.print(
        f"Logging policy: simulated value {chk['simulated_value']:.6g}, {inside} the log's own "
        f"on-policy 95% CI {chk['on_policy_value']:.6g} [{_num(chk['on_policy_ci_low'], '.6g')}, "
        f"{_num(chk['on_policy_ci_high'], '.6g')}]."
    )
    n_seeds = len(summary["seeds"])
    table = Table(
        title=(
            f"{summary['rounds']:,} decisions in log order x {n_seeds} seed"
            f"{'s' if n_seeds > 1 else ''} (means over seeds)"
        ),
        title_justify="left",
    )
    table.add_column("policy")
    table.add_column("expected reward", justify="right")
    table.add_column("realized reward", justify="right")
    table.add_column("share of oracle", justify="right")
    table.add_column("regret / decision", justify="right")
    table.add_column("arms used", justify="right")
    for p in summary["policies"]:
        name = p["policy"] + (" (control)" if p["role"] == "control" else "")
        if p["policy"] == summary.get("winner"):
            name = f"[bold]{escape(name)}[/bold]"
        else:
            name = escape(name)
        share = p["share_of_oracle"]
        table.add_row(
            name,
            _num(p["expected_reward"]),
            _num(p["mean_reward"]),
            "n/a" if share is None else f"{share * 100:.0f}%",
            _num(p["regret_per_decision"]),
            str(p["distinct_actions"]),
        )
    console.print(table)
    up = Table(
        title="Uplift in expected reward per decision over each control (paired)",
        title_justify="left",
    )
    up.add_column("policy")
    up.add_column("over")
    up.add_column("uplift", justify="right")
    up.add_column("95% CI", justify="right")
    up.add_column("verdict")
    rows = 0
    for p in summary["policies"]:
        if p["role"] != "policy":
            continue
        for c, u in p["uplift"].items():
            up.add_row(
                escape(p["policy"]),
                escape(c),
                _pct(u["uplift"]),
                f"{_pct(u['ci_low'])} .. {_pct(u['ci_high'])}",
                _verdict(u),
            )
            rows += 1
    if rows:
        console.print(up)
    for line in headline(summary):
        console.print(escape(line))
    console.print(
        f"[dim]The oracle knows the world's truth (the reward model): "
        f"{summary['oracle_reward']:.5f} per decision. Every policy saw the same logged rows "
        "and the same random outcomes (paired comparison).[/dim]"
    )
