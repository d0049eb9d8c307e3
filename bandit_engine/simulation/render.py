"""The terminal report of a simulation: rich tables and the headline a newcomer reads first.

It reads only the plain data of ``summary.json`` (:func:`~bandit_engine.simulation.summary.summarize`)
and the optional ``timings.json`` content, so a saved summary can be printed again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from .new_user_curve import WINDOWS

__all__ = ["headline", "render"]


# -- the terminal -----------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%"


def _sign(u: dict[str, Any]) -> float:
    """Direction of an uplift: the relative one when defined, else the absolute difference."""
    rel = u.get("uplift")
    return float(rel) if rel is not None and math.isfinite(rel) else float(u["difference"])


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _interval(rec: dict[str, Any]) -> str:
    return f"95% CI {_pct(rec['ci_low'])}..{_pct(rec['ci_high'])}"


def headline(summary: dict[str, Any]) -> list[str]:
    """The sentences a newcomer reads first: who won, by how much, how sure we are."""
    pols = summary["policies"]
    winner = summary.get("winner")
    if winner is None:
        return []
    rec = next(p for p in pols if p["policy"] == winner)
    controls = [p for p in pols if p["role"] == "control"]
    if not rec["uplift"]:
        return [f"{winner}: {rec['mean_reward']:.4f} reward per decision (no control to compare)."]
    ups = rec["uplift"]
    wins = [c for c, u in ups.items() if u["significant"] and _sign(u) > 0]
    losses = [c for c, u in ups.items() if u["significant"] and _sign(u) < 0]
    ties = [c for c in ups if c not in wins and c not in losses]
    if len(wins) == len(ups):
        lead = f"{winner} won"
    else:
        clauses = []
        if wins:
            clauses.append(f"{winner} beat {_join(wins)}")
        if losses:
            clauses.append(f"{winner if not wins else 'it'} lost to {_join(losses)}")
        if ties:
            who = winner if not clauses else "no"
            tie = f"significant difference from {_join(ties)}"
            clauses.append(f"{who} {tie}" if who == "no" else f"{who} showed no {tie}")
        lead = "; ".join(clauses)
    parts = [f"{_pct(u['uplift'])} over {c} ({_interval(u)})" for c, u in ups.items()]
    lines = [f"{lead}. Uplift in expected reward per decision: " + ", ".join(parts) + "."]
    best_control = max(controls, key=lambda p: p["expected_reward"]) if controls else None
    if best_control is not None and rec["role"] == "policy":
        lines.append(
            f"It reached {rec['expected_reward'] / summary['oracle_reward'] * 100:.0f}% of the "
            f"oracle's expected reward (best control: "
            f"{best_control['expected_reward'] / summary['oracle_reward'] * 100:.0f}%)."
        )
    lines.append(f"How sure: {summary['interval']}.")
    return lines


def render(summary: dict[str, Any], console: Console, timing: dict[str, Any] | None = None) -> None:
    """Print the newcomer tables, the headline and the cold-start / drift / replay summaries."""
    rounds = summary["rounds"]
    n_seeds = len(summary["seeds"])
    table = Table(
        title=(
            f"Simulation '{summary['scenario']}': {rounds:,} decisions x {n_seeds} "
            f"seed{'s' if n_seeds > 1 else ''} (means over seeds)"
        ),
        title_justify="left",
    )
    table.add_column("policy")
    table.add_column("reward", justify="right")
    table.add_column("CTR", justify="right")
    table.add_column("orders", justify="right")
    table.add_column("revenue", justify="right")
    table.add_column("regret", justify="right")
    if timing is not None:
        table.add_column("decisions/s", justify="right")
    for p in summary["policies"]:
        name = p["policy"] + (" (control)" if p["role"] == "control" else "")
        if p["policy"] == summary.get("winner"):
            name = f"[bold]{name}[/bold]"
        row = [
            name,
            f"{p['mean_reward']:.4f}",
            f"{p['ctr'] * 100:.2f}%",
            f"{p['order_rate'] * 100:.2f}%",
            f"{p['revenue_per_decision']:.2f}",
            f"{p['regret_per_decision']:.4f}",
        ]
        if timing is not None:
            dps = timing["engines"].get(p["policy"], {}).get("decisions_per_second")
            row.append("" if dps is None else f"{dps:,.0f}")
        table.add_row(*row)
    console.print(table)
    console.print(
        "[dim]Per decision: reward, clicks (CTR), orders, revenue (CNY) and regret (expected "
        "reward lost against the oracle).[/dim]"
    )
    up = Table(
        title="Uplift in expected reward per decision over each control", title_justify="left"
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
            if not u["significant"]:
                verdict = "not significant"
            else:
                verdict = "[green]better[/green]" if _sign(u) > 0 else "[red]worse[/red]"
            up.add_row(
                p["policy"],
                c,
                _pct(u["uplift"]),
                f"{_pct(u['ci_low'])} .. {_pct(u['ci_high'])}",
                verdict,
            )
            rows += 1
    if rows:
        console.print(up)
    for line in headline(summary):
        console.print(line)
    rw = summary["reward"]
    console.print(
        f"[dim]Reward = {rw['click']:g} per click + {rw['order']:g} per order + "
        f"{rw['value_weight']:g} per CNY of order value. The oracle knows every user's true click "
        f"and order probabilities ({summary['oracle_reward']:.4f} per decision). Every policy saw "
        "the same users and the same random outcomes (paired comparison).[/dim]"
    )
    late = [p for p in summary["policies"] if p["late_events"] > 0]
    if late:
        shares = ", ".join(f"{p['policy']} {p['late_order_share'] * 100:.0f}%" for p in late)
        console.print(
            f"Orders that arrived after the attribution window (late: counted as revenue, never "
            f"learned): {shares}."
        )
    _render_cold_start(summary, console)
    _render_drift(summary, console)
    _render_replay(summary, console)


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def _share(x: float | None) -> str:
    """A share of the oracle's reward in whole percent (undefined shares are ``None`` in the
    summary: NaN does not survive the JSON rounding)."""
    return _fmt(None if x is None else x * 100, ".0f") + "%"


def _render_cold_start(summary: dict[str, Any], console: Console) -> None:
    cold = summary.get("cold_start", {})
    nu = cold.get("new_users")
    if nu is not None and "policies" in nu:
        t = Table(
            title=(
                f"New users (no profile on either platform): their first {nu['first_k']} "
                f"decisions, {nu['decisions_scored']:,} scored"
            ),
            title_justify="left",
        )
        t.add_column("policy")
        t.add_column("first-k reward", justify="right")
        t.add_column("share of oracle", justify="right")
        t.add_column("established users", justify="right")
        for p, r in nu["policies"].items():
            t.add_row(
                p,
                _fmt(r["first_k_reward"]),
                _share(r["share_of_oracle"]),
                _fmt(r["established_users_reward"]),
            )
        console.print(t)
        console.print(
            f"[dim]Oracle on the same decisions: {nu['oracle_first_k_reward']:.4f}.[/dim]"
        )
        _render_new_user_curve(nu.get("curve"), console)
    nb = cold.get("new_bundles")
    if nb is not None and "policies" in nb:
        t = Table(
            title=(
                f"New bundles: {nb['new_bundles']} added at round {nb['added_at_round']:,}; fair "
                f"share (how often one of them is the best offer) {nb['fair_share'] * 100:.1f}%"
            ),
            title_justify="left",
        )
        early = nb.get("early_rounds")
        t.add_column("policy")
        t.add_column("share chosen", justify="right")
        if early is not None:
            t.add_column(
                f"first {early:,} (fair {nb['early_fair_share'] * 100:.1f}%)", justify="right"
            )
        t.add_column("rounds to fair share", justify="right")
        t.add_column("exploration cost", justify="right")
        t.add_column("missed gain", justify="right")
        for p, r in nb["policies"].items():
            reach = r["rounds_to_fair_share"]
            first = [f"{r['early_share'] * 100:.1f}%"] if early is not None else []
            t.add_row(
                p,
                f"{r['share'] * 100:.1f}%",
                *first,
                "not reached" if reach is None else f"{reach:,.0f}",
                f"{r['exploration_cost']:.1f}",
                f"{r['missed_gain']:.1f}",
            )
        console.print(t)
        console.print(
            f"[dim]Fair share reached: first block of {nb['block']} rounds with at least "
            f"{nb['tolerance'] * 100:.0f}% of it. Exploration cost: expected reward lost choosing "
            "a new bundle worse than the best old one; missed gain: reward a better new bundle "
            "would have added.[/dim]"
        )


def _render_drift(summary: dict[str, Any], console: Console) -> None:
    dr = summary.get("drift")
    if dr is None:
        return
    if "policies" not in dr:
        # a sentence instead of a table of n/a cells (and no drift.png: plots.py skips it)
        console.print(f"Preference drift ({dr['kind']}) not measured: {dr['note']}.")
        return
    t = Table(
        title=(
            f"Preference drift ({dr['kind']}, strength {dr['strength']:g}) at round "
            f"{dr['drift_at_round']:,}: share of the oracle's expected reward"
        ),
        title_justify="left",
    )
    t.add_column("policy")
    t.add_column("before", justify="right")
    t.add_column("lowest after", justify="right")
    t.add_column("at the end", justify="right")
    t.add_column(f"rounds to {dr['recovery_level'] * 100:.0f}% of before", justify="right")
    for p, r in dr["policies"].items():
        rec = r["rounds_to_recover"]
        t.add_row(
            p,
            _share(r["pre_drift_share_of_oracle"]),
            _share(r["lowest_share_after_drift"]),
            _share(r["final_share_of_oracle"]),
            "not recovered" if rec is None else f"{rec:,.0f}",
        )
    console.print(t)


def _render_replay(summary: dict[str, Any], console: Console) -> None:
    rep = summary.get("replay")
    if rep is None:
        return
    t = Table(
        title=f"Replay of a uniform-random log (Li et al. 2011) vs the simulator's truth: {rep['policy']}",
        title_justify="left",
    )
    t.add_column("seed", justify="right")
    t.add_column("logged", justify="right")
    t.add_column("matched", justify="right")
    t.add_column("replay estimate [95% CI]", justify="right")
    t.add_column("true value", justify="right")
    t.add_column("inside CI", justify="center")
    for s in rep["seeds"]:
        t.add_row(
            str(s["seed"]),
            f"{s['logged']:,}",
            f"{s['matched']:,}",
            f"{s['estimate']:.4f} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]",
            f"{s['truth']:.4f}",
            "yes" if s["covered"] else "no",
        )
    console.print(t)
    console.print(
        f"[dim]{rep['method']}. Truth inside the replay CI for {rep['covered']} of "
        f"{len(rep['seeds'])} seeds.[/dim]"
    )


def _render_new_user_curve(curve: dict[str, Any] | None, console: Console) -> None:
    """Print the windows and the growth ratio of every policy."""
    if not curve or not curve.get("policies"):
        return

    t = Table(
        title="New users: share of the oracle by decision index (95% CI)", title_justify="left"
    )
    t.add_column("policy")
    for lo, hi in WINDOWS:
        t.add_column(f"decisions {lo}-{hi}", justify="right")
    t.add_column("11-20 / 1-5", justify="right")

    def cell(w: dict[str, Any]) -> str:
        if w["share"] is None:
            return "-"
        return f"{w['share'] * 100:.0f}% ({w['ci_low'] * 100:.0f}..{w['ci_high'] * 100:.0f})"

    for lab, rec in curve["policies"].items():
        g = rec["growth_11_20_over_1_5"]
        t.add_row(
            lab,
            *(cell(rec["windows"][f"{lo}-{hi}"]) for lo, hi in WINDOWS),
            "-" if g is None else f"{g:.2f}x",
        )
    console.print(t)
