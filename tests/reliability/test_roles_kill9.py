"""kill -9 of decision servers and of the learner under load (issue 12), a bounded number of
cycles; ``python benchmarks/bench_roles_kill.py`` runs 20.

Each cycle kills one of the two decision servers of ``serve-policy --workers 2`` and then the
learner holding the role; the supervisor restarts both. Checked from the log afterwards
(:class:`KillReport.ok`): no acknowledged decision or event lost, every decision learned exactly
once, the role taken over within 10 s of each kill, versions only going up, and the replay of the
log reproducing the newest published version's policy.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_roles_kill.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_roles_kill", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_roles_kill"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("cycles", [3])
def test_kill9_cycles_on_sqlite(tmp_path: Path, cycles: int) -> None:
    report = _bench().kill_cycles(tmp_path, cycles=cycles, connections=6, settle=1.0, recover=2.0)
    assert report.cycles == cycles
    assert report.acked_decisions > 0 and report.acked_events > 0  # the load really ran
    assert not report.lost_decisions and not report.lost_events
    assert report.learned_rows == report.decisions_in_log and report.pending_left == 0
    assert max(report.takeover_seconds) <= 10.0, report.takeover_seconds
    assert report.replay_matches
    assert report.ok, report


@pytest.mark.slow
def test_kill9_cycles_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    report = _bench().kill_cycles(
        tmp_path, cycles=2, db=pg_url, connections=6, settle=1.0, recover=2.0
    )
    assert report.acked_decisions > 0 and report.acked_events > 0
    assert not report.lost_decisions and not report.lost_events
    assert report.learned_rows == report.decisions_in_log and report.pending_left == 0
    # the advisory lock dies with the killed learner's session: the standby takes it at its poll
    assert max(report.takeover_seconds) <= 10.0, report.takeover_seconds
    assert report.replay_matches
    assert report.ok, report
