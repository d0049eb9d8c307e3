"""``bandit evaluate "logs/*.parquet" --workers N``: a glob of files read as one log, and the policy
run on Dask workers part by part, giving the single-process estimates to 1e-12."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_policy_eval import click_prob, contexts

from bandit_engine.errors import ConfigError, NotFoundError
from bandit_engine.evaluation import evaluate_log
from bandit_engine.evaluation.parallel import PARALLEL_ESTIMATORS
from bandit_engine.policies import LinearTS, LinUCB

#: The claim: identical to the single-process result to 1e-12 (relative to max(1, |value|)).
TOL = 1e-12
ALL = ",".join(PARALLEL_ESTIMATORS)
needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="Dask is an optional extra (pip install 'bandit-engine[dask]'; the dev extra has it)",
)


@pytest.fixture
def log_files(tmp_path: Path) -> Path:
    """Three Parquet files of one epsilon-greedy-like log (logged propensities vary by row)."""
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(7)
    n = 900
    X = contexts(rng, n)
    probs = click_prob(X)
    best = probs.argmax(axis=1)
    explore = rng.random(n) < 0.4
    a = np.where(explore, rng.integers(0, 4, n), best)
    pscore = np.where(a == best, 0.6 + 0.1, 0.1)
    r = (rng.random(n) < probs[np.arange(n), a]).astype(int)
    frame = pd.DataFrame(
        {
            "action": np.array(list("abcd"))[a],
            "candidates": "a|b|c|d",
            "propensity": pscore,
            "reward": r,
            **{f"x_{j}": X[:, j] for j in range(X.shape[1])},
        }
    )
    folder = tmp_path / "logs"
    folder.mkdir()
    for i, lo in enumerate((0, 250, 600)):
        hi = {0: 250, 250: 600, 600: n}[lo]
        frame.iloc[lo:hi].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:  # non-finite numbers are null in the JSON document
        return a is b
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= TOL * max(1.0, abs(b))


def assert_same(par: Any, single: Any, where: str = "") -> None:
    """Equal plain data, floats to :data:`TOL` (the parallel run's ``workers`` setting aside)."""
    if isinstance(single, dict):
        keys = set(single) | set(par)
        for key in sorted(keys - {"workers"}):
            assert key in par and key in single, f"{where}.{key}"
            assert_same(par[key], single[key], f"{where}.{key}")
    elif isinstance(single, list):
        assert len(par) == len(single), where
        for i, (x, y) in enumerate(zip(par, single, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(single, float) or isinstance(par, float):
        assert _close(par, single), (where, par, single)
    else:
        assert par == single, (where, par, single)


def _in_a_subprocess(code: str, *args: str) -> Any:
    """Run ``code`` in a fresh interpreter and return the JSON it prints.

    Dask clusters start threads (and keep one, its offload executor) in the process that starts
    them; the server tests later fork that process for their checkpoints, so the clusters here
    run in a process of their own."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_a_glob_is_one_log_in_file_name_order(log_files: Path) -> None:
    result = evaluate_log(log_files / "*.parquet", policy=LinUCB(alpha=0.3, seed=0))
    assert result.log["files"] == [str(log_files / f"part-{i}.parquet") for i in range(3)]
    assert result.log["n_rows_loaded"] == 900 and result.evaluation.n_rows == 450


_WORKERS = """
import json, sys
from bandit_engine.evaluation import evaluate_log
from bandit_engine.policies import LinUCB
kw = dict(estimators=sys.argv[2], clip=20.0, tau=5.0)
policy = LinUCB(alpha=0.3, epsilon=0.1, seed=0)
single = evaluate_log(sys.argv[1], policy=policy, **kw)
par = evaluate_log(sys.argv[1], policy=policy, workers=2, **kw)
print(json.dumps({"single": single.to_dict(), "par": par.to_dict()}))
"""


@needs_dask
def test_workers_give_the_single_process_result(log_files: Path) -> None:
    out = _in_a_subprocess(_WORKERS, str(log_files / "*.parquet"), ALL)
    assert out["par"]["settings"]["workers"] == 2
    assert [e["estimator"] for e in out["par"]["estimates"]] == list(PARALLEL_ESTIMATORS)
    assert_same(out["par"], out["single"])


_PARTS = """
import json, sys
from pathlib import Path
from bandit_engine.evaluation.datasets import load_logs
from bandit_engine.evaluation.dispatch import evaluate_policy
from bandit_engine.evaluation.parallel import PARALLEL_ESTIMATORS, evaluate_policy_parallel
from bandit_engine.evaluation.policy_log import policy_log_from_logged
log = policy_log_from_logged(load_logs(sorted(Path(sys.argv[1]).glob("*.parquet"))))
policy = __import__("bandit_engine.policies", fromlist=["LinUCB"]).LinUCB(
    alpha=0.5, epsilon=0.2, seed=1
)
kw = dict(estimators=PARALLEL_ESTIMATORS, seed=4)
out = {"single": evaluate_policy(policy, log, **kw).to_dict()}
for n_parts in (1, 3, 17):
    ev = evaluate_policy_parallel(
        policy, log, workers=2, n_parts=n_parts, processes=False, **kw
    )
    out[str(n_parts)] = ev.to_dict()
print(json.dumps(out))
"""


@needs_dask
def test_any_number_of_parts_on_threads(log_files: Path) -> None:
    out = _in_a_subprocess(_PARTS, str(log_files))
    for n_parts in ("1", "3", "17"):
        assert_same(out[n_parts], out["single"], n_parts)


_CLI = """
import sys
from bandit_engine.cli import app
sys.argv = ["bandit", *sys.argv[1:]]
app()
"""


@needs_dask
def test_cli_workers_print_the_same_numbers(log_files: Path) -> None:
    args = ["evaluate", str(log_files / "*.parquet"), "--policy", "linucb:alpha=0.3,epsilon=0.1"]
    args += ["--estimators", "ips,snips,dr", "--json"]
    one = _in_a_subprocess(_CLI, *args)
    two = _in_a_subprocess(_CLI, *args, "--workers", "2")
    assert two["settings"]["workers"] == 2
    assert_same(two, one)


def test_what_workers_refuse(log_files: Path) -> None:
    pattern = log_files / "*.parquet"
    with pytest.raises(ConfigError, match="replay"):
        evaluate_log(pattern, policy=LinUCB(seed=0), estimators="ips,replay", workers=2)
    with pytest.raises(ConfigError, match="ci must be 'normal' with workers"):
        evaluate_log(pattern, policy=LinUCB(seed=0), ci="bootstrap", workers=2)
    with pytest.raises(ConfigError, match="exact probabilities"):
        evaluate_log(pattern, policy=LinearTS(mode="shared", seed=0), workers=2)
    with pytest.raises(ConfigError, match="workers must be an int >= 1"):
        evaluate_log(pattern, policy=LinUCB(seed=0), workers=0)
    with pytest.raises(NotFoundError, match="matches no file"):
        evaluate_log(log_files / "*.csv", policy=LinUCB(seed=0))


_SCHEDULER = """
import json, sys
import distributed
from bandit_engine.cli import app
with distributed.LocalCluster(
    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
) as cluster:
    sys.argv = ["bandit", *sys.argv[1:], "--dask", cluster.scheduler_address]
    try:
        app()
    except SystemExit as exc:
        if exc.code:
            raise
"""


@needs_dask
def test_cli_dask_scheduler_address_gives_the_same_numbers(log_files: Path) -> None:
    # a real scheduler on loopback, reached by its tcp:// address like a remote one
    args = ["evaluate", str(log_files / "*.parquet"), "--policy", "linucb:alpha=0.3,epsilon=0.1"]
    args += ["--estimators", "ips,snips,dr", "--json"]
    one = _in_a_subprocess(_CLI, *args)
    remote = _in_a_subprocess(_SCHEDULER, *args)
    assert remote["settings"]["workers"] == 2
    assert_same(remote, one)


@needs_dask
def test_an_unreachable_scheduler_is_a_clear_error(log_files: Path) -> None:
    pattern = log_files / "*.parquet"
    with pytest.raises(ConfigError, match="dask"):
        evaluate_log(pattern, policy=LinUCB(seed=0), dask="not-an-address")
    with pytest.raises(ConfigError, match="exclude each other"):
        evaluate_log(pattern, policy=LinUCB(seed=0), dask="tcp://127.0.0.1:9", workers=2)
    args = ["evaluate", str(pattern), "--policy", "linucb", "--dask", "tcp://127.0.0.1:9"]
    proc = subprocess.run(
        [sys.executable, "-c", _CLI, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3 and "could not be reached" in proc.stderr, proc.stderr[-2000:]


_CLUSTER = """
import json, os
import dask
from dask.distributed import Client
from bandit_engine.evaluation.parallel import local_cluster


def probe():
    return {
        "profile": dask.config.get("distributed.worker.profile.enabled"),
        "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "mmap": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


if __name__ == "__main__":
    with local_cluster(2) as cluster, Client(cluster) as client:
        print(json.dumps(list(client.run(probe).values())))
"""


@needs_dask
def test_local_workers_run_without_the_profiler_and_with_the_allocator_settings(
    tmp_path: Path,
) -> None:
    # Both settings are what keeps a worker's partition as cheap as the single process's
    # (benchmarks/bench_dask_ope.py); a Dask upgrade that stopped passing them on would be silent.
    from bandit_engine.evaluation.parallel import WORKER_MALLOC_ENVIRON

    script = tmp_path / "cluster.py"
    script.write_text(_CLUSTER)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    workers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(workers) == 2
    for seen in workers:
        assert seen["profile"] is False
        assert seen["trim"] == str(WORKER_MALLOC_ENVIRON["MALLOC_TRIM_THRESHOLD_"])
        assert seen["mmap"] == str(WORKER_MALLOC_ENVIRON["MALLOC_MMAP_THRESHOLD_"])
