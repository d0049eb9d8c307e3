"""The report as text, CSV files and PNG charts (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .report import Report, frames_of

__all__ = ["render_text", "write_csv", "write_plots"]

_CROSS = {
    "knowledge": "known only on knowledge: ordered a deal",
    "groupbuy": "known only on group-buying: bought a course",
    "both": "known on both",
    "neither": "known on neither",
}


def _pct(x: float | None) -> str:
    return "   n/a" if x is None or not math.isfinite(x) else f"{100 * x:+6.1f}%"


def _f(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def render_text(report: Report, *, breakdowns: tuple[str, ...] = ("overall",)) -> str:
    """A short plain-text summary: groups and the sample-ratio check, uplift of the reward per
    holdout (overall and the given breakdowns), and cross-platform conversion."""
    lines = [f"report {report.window['since'] or 'start'} .. {report.window['until'] or 'end'}"]
    lines.append(report.message)
    if report.empty:
        return "\n".join(lines)
    lines.append("")
    lines.append("group            users  share  configured  decisions")
    for g in report.groups:
        conf = g["configured_share"]
        lines.append(
            f"{g['group']:<14} {g['users']:>7}  {_f(g['observed_share'], 3)}  "
            f"{'-' if conf is None else f'{conf:.3f}':>10}  {g['decisions']:>9}"
        )
    srm = report.srm
    if srm is None:
        lines.append("no holdout plan recorded in the log: no control to compare with")
    else:
        verdict = "MISMATCH" if srm["mismatch"] else "ok"
        lines.append(
            f"sample ratio check: chi2 {_f(srm['chi2'], 2)}, p {_f(srm['p_value'], 4)} ({verdict})"
        )
    if report.uplift:
        lines.append("")
        lines.append("uplift of reward per decision, 95% interval clustered by user")
        lines.append("breakdown   segment          holdout       policy  control    uplift (95%)")
        for u in report.uplift:
            if u["metric"] != "reward" or u["breakdown"] not in breakdowns:
                continue
            lines.append(
                f"{u['breakdown']:<11} {u['segment'][:16]:<16} {u['holdout'][:12]:<12} "
                f"{_f(u['policy'])}  {_f(u['control'])}  {_pct(u['relative'])} "
                f"({_pct(u['relative_low']).strip()} .. {_pct(u['relative_high']).strip()})"
            )
    if report.conversion:
        lines.append("")
        lines.append("cross-platform conversion (users with >= 1 purchase on the platform)")
        lines.append("segment      group          users  deal rate  course rate")
        for c in report.conversion:
            lines.append(
                f"{c['segment']:<12} {c['group'][:12]:<12} {c['users']:>7}  "
                f"{_f(c['deal_rate'], 3):>9}  {_f(c['course_rate'], 3):>11}"
            )
        lines.append("  (" + "; ".join(f"{k}: {v}" for k, v in _CROSS.items()) + ")")
    return "\n".join(lines)


def write_csv(report: Report, folder: str | Path) -> list[Path]:
    """``groups.csv``, ``segments.csv``, ``uplift.csv`` and ``conversion.csv`` in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames_of(report).items():
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def write_plots(report: Report, folder: str | Path) -> list[Path]:
    """PNG charts: reward per decision by day and group (with intervals), the uplift of each
    holdout per segment, and conversion by presence segment. Nothing for an empty report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if report.empty:
        return []
    paths: list[Path] = []
    seg = pd.DataFrame(report.segments)
    days = seg[(seg["breakdown"] == "day") & (seg["metric"] == "reward")]
    if not days.empty:
        fig, ax = plt.subplots(figsize=(8, 4))
        for group, rows in days.groupby("group"):
            rows = rows.sort_values("segment")
            x = range(len(rows))
            ax.plot(list(x), rows["value"], marker="o", label=str(group))
            ax.fill_between(
                list(x), rows["low"].astype(float), rows["high"].astype(float), alpha=0.2
            )
            ax.set_xticks(list(x), rows["segment"], rotation=45, ha="right")
        ax.set_ylabel("reward per decision")
        ax.set_title("reward per decision by day (95% interval, clustered by user)")
        ax.legend()
        fig.tight_layout()
        paths.append(out / "reward_by_day.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    up = pd.DataFrame(report.uplift)
    if not up.empty:
        up = up[(up["metric"] == "reward") & (up["breakdown"] != "bundle")]
        up = up[up["breakdown"] != "day"]
    if not up.empty:
        labels = [f"{r.breakdown}:{r.segment} vs {r.holdout}" for r in up.itertuples()]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
        y = range(len(labels))
        rel = up["relative"].astype(float)
        low = up["relative_low"].astype(float)
        high = up["relative_high"].astype(float)
        colours = [
            "tab:green" if lo > 0 else "tab:red" if hi < 0 else "grey"
            for lo, hi in zip(low, high, strict=True)
        ]
        for k, colour in enumerate(colours):  # green / red only when the interval says so
            ax.errorbar(
                [rel.iloc[k]],
                [k],
                xerr=[[rel.iloc[k] - low.iloc[k]], [high.iloc[k] - rel.iloc[k]]],
                fmt="o",
                color=colour,
            )
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(list(y), labels)
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("relative uplift of reward per decision over the holdout (95% interval)")
        fig.tight_layout()
        paths.append(out / "uplift_by_segment.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    conv = pd.DataFrame(report.conversion)
    if not conv.empty:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
        for ax, col, title in (
            (axes[0], "deal_rate", "ordered a deal"),
            (axes[1], "course_rate", "bought a course"),
        ):
            table = conv.pivot(index="segment", columns="group", values=col).astype(float)
            table.plot.bar(ax=ax, rot=0)
            ax.set_title(f"users who {title}")
            ax.set_xlabel("known on")
        axes[0].set_ylabel("share of users")
        fig.tight_layout()
        paths.append(out / "conversion_by_presence.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
