"""benchmarks/bench_engine.py still runs and its workload is what it claims (no timing asserted:
speed is measured in benchmarks/, never in unit tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_engine"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load()


def test_workload_matches_issue_2(bench: ModuleType) -> None:
    wl = bench.make_workload(3000, seed=1)
    assert wl.X.shape == (3000, 32) and wl.Z.shape == (50, 16) and len(wl.arms) == 50
    assert wl.rates.min() >= 0.02 and wl.rates.max() <= 0.10  # the issue's 2-10% base rates
    # The first rounds do not depend on how many rounds were generated.
    small = bench.make_workload(100, seed=1)
    np.testing.assert_array_equal(small.X, wl.X[:100])
    np.testing.assert_array_equal(small.coins, wl.coins[:100])
    # Shares: the oracle's own choices score 1, uniform random about two thirds.
    assert wl.share(wl.rates.argmax(axis=1)) == pytest.approx(1.0)
    assert 0.5 < wl.share(np.random.default_rng(0).integers(50, size=3000)) < 0.8


def test_engine_case_has_32_features_and_50_candidates(bench: ModuleType) -> None:
    case = bench.make_engine_case(50, n_users=200, seed=0)
    assert case.schema.fit(case.tables).n_features == 32
    assert case.rates.shape == (200, 50)
    assert case.rates.min() >= 0.02 and case.rates.max() <= 0.10


def test_quick_run_prints_every_row(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--rounds", "300", "--repeat", "1", "--no-peers"]) == 0
    out = capsys.readouterr().out
    for row in ("plain numpy LinUCB", "bandit-engine LinUCB", "LinearTS", "VWPolicy", "Engine +"):
        assert row in out, row
    assert "load average before" in out and "load average after" in out
