"""PNG plots of a simulation report (matplotlib, Agg backend: no display needed).

* ``reward_regret.png``: cumulative reward and cumulative regret against decisions, one line per
  policy (means over seeds).
* ``uplift.png``: relative uplift in reward per decision of every policy over every control, with
  95% intervals.
* ``cold_start.png`` (new users or new bundles in the scenario): reward of new users by decision
  number against the oracle; share of decisions going to the new bundles per block.
* ``drift.png`` (drift in the scenario): share of the oracle's expected reward per block after the
  drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["plot_all"]

FloatArray = NDArray[np.float64]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _styles(labels: list[str], roles: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Policies solid, controls dashed; colours from the default cycle in label order."""
    out = {}
    for i, label in enumerate(labels):
        out[label] = {
            "color": f"C{i % 10}",
            "linestyle": "-" if roles.get(label) == "policy" else "--",
            "linewidth": 2.0 if roles.get(label) == "policy" else 1.4,
        }
    return out


def _reward_regret(
    summary: dict[str, Any], data: dict[str, dict[str, FloatArray]], path: Path
) -> None:
    plt = _pyplot()
    roles = {p["policy"]: p["role"] for p in summary["policies"]}
    style = _styles(list(data), roles)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, cols in data.items():
        ax1.plot(cols["round"], cols["cumulative_reward"], label=label, **style[label])
        ax2.plot(cols["round"], cols["cumulative_regret"], label=label, **style[label])
    any_cols = next(iter(data.values()))
    ax1.plot(
        any_cols["round"],
        any_cols["cumulative_oracle_reward"],
        color="black",
        linestyle=":",
        linewidth=1.2,
        label="oracle (expected)",
    )
    ax1.set_title("Cumulative reward (higher is better)")
    ax1.set_xlabel("decisions")
    ax1.set_ylabel("cumulative realized reward")
    ax2.set_title("Cumulative regret against the oracle (lower is better)")
    ax2.set_xlabel("decisions")
    ax2.set_ylabel("cumulative expected reward lost")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    n_seeds = len(summary["seeds"])
    fig.suptitle(
        f"Scenario '{summary['scenario']}': means over {n_seeds} seed{'s' if n_seeds > 1 else ''}"
        " (policies solid, controls dashed)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _uplift(summary: dict[str, Any], path: Path) -> bool:
    rows = []
    pols = [p for p in summary["policies"] if p["role"] == "policy"]
    if not pols:  # controls only: compare them with the first control
        pols = summary["policies"][1:]
    for p in pols:
        for c, u in p["uplift"].items():
            if u["uplift"] is None:
                continue
            rows.append((f"{p['policy']} vs {c}", u))
    if not rows:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.8))
    y = np.arange(len(rows))[::-1]
    for yi, (_, u) in zip(y, rows, strict=True):
        mid = u["uplift"] * 100
        lo = mid if u["ci_low"] is None else u["ci_low"] * 100
        hi = mid if u["ci_high"] is None else u["ci_high"] * 100
        color = "C2" if lo > 0 else ("C3" if hi < 0 else "C7")
        ax.errorbar(mid, yi, xerr=[[mid - lo], [hi - mid]], fmt="o", color=color, capsize=4)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows])
    ax.set_xlabel("relative uplift in expected reward per decision (%), 95% CI")
    ax.set_title(f"Uplift over control groups ({summary['interval']})", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cold_start(summary: dict[str, Any], path: Path) -> bool:
    cold = summary.get("cold_start", {})
    nu = cold.get("new_users")
    nb = cold.get("new_bundles")
    panels = [x for x in (nu, nb) if x is not None and "policies" in x]
    if not panels:
        return False
    plt = _pyplot()
    roles = {p["policy"]: p["role"] for p in summary["policies"]}
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), squeeze=False)
    k = 0
    if nu is not None and "policies" in nu:
        ax = axes[0][k]
        k += 1
        style = _styles(list(nu["policies"]), roles)
        xs = np.arange(1, nu["first_k"] + 1)
        for label, r in nu["policies"].items():
            ys = [np.nan if v is None else v for v in r["by_decision"]]
            ax.plot(xs, ys, marker="o", label=label, **style[label])
        ax.axhline(nu["oracle_first_k_reward"], color="black", linestyle=":", label="oracle")
        ax.set_title(f"New users: expected reward of their first {nu['first_k']} decisions")
        ax.set_xlabel("decision number of the new user")
        ax.set_ylabel("expected reward per decision")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if nb is not None and "policies" in nb:
        ax = axes[0][k]
        style = _styles(list(nb["policies"]), roles)
        for label, r in nb["policies"].items():
            share = np.asarray(r["share_by_block"], dtype=np.float64) * 100
            xs = (np.arange(share.shape[0]) + 1) * nb["block"]
            ax.plot(xs, share, label=label, **style[label])
        ax.axhline(nb["fair_share"] * 100, color="black", linestyle=":", label="fair share")
        ax.set_title(f"New bundles: share of decisions (added at round {nb['added_at_round']:,})")
        ax.set_xlabel("decisions since the bundles were added")
        ax.set_ylabel("% of decisions choosing a new bundle")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cold start in scenario '{summary['scenario']}' (means over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _drift(summary: dict[str, Any], path: Path) -> bool:
    dr = summary.get("drift")
    if dr is None or "policies" not in dr:
        return False
    plt = _pyplot()
    roles = {p["policy"]: p["role"] for p in summary["policies"]}
    style = _styles(list(dr["policies"]), roles)
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for label, r in dr["policies"].items():
        share = np.asarray(r["share_of_oracle_by_block"], dtype=np.float64) * 100
        xs = (np.arange(share.shape[0]) + 1) * dr["block"]
        ax.plot(xs, share, label=label, **style[label])
        ax.axhline(r["pre_drift_share_of_oracle"] * 100, color=style[label]["color"], alpha=0.3)
    ax.set_title(
        f"Recovery after the {dr['kind']} preference drift (thin lines: level before the drift)"
    )
    ax.set_xlabel("decisions since the drift started")
    ax.set_ylabel("% of the oracle's expected reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_all(
    summary: dict[str, Any], data: dict[str, dict[str, FloatArray]], directory: Path
) -> list[str]:
    """Write every plot that applies to ``summary`` into ``directory``; returns the file names."""
    directory = Path(directory)
    written = ["reward_regret.png"]
    _reward_regret(summary, data, directory / "reward_regret.png")
    if _uplift(summary, directory / "uplift.png"):
        written.append("uplift.png")
    if _cold_start(summary, directory / "cold_start.png"):
        written.append("cold_start.png")
    if _drift(summary, directory / "drift.png"):
        written.append("drift.png")
    return written
