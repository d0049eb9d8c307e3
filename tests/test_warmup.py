"""The start-up warm-up (service/warmup.py) pays the first decision's one-time costs without
changing what the engine decides: same decisions, same propensities, same policy state. Its speed
effect is measured in benchmarks/probe_server_tail.py (benchmarks/README.md), not here."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_engine.demo import demo_engine
from bandit_engine.service.warmup import warm_up

T0 = 1_700_000_000.0


@pytest.mark.parametrize("kernels", [True, False], ids=["at_start", "new_version"])
@pytest.mark.parametrize("policy", ["linucb", "pair_ucb", "pair_ts", "lin_ts", "factored_ucb"])
def test_a_warmed_engine_decides_as_an_unwarmed_one(policy: str, kernels: bool) -> None:
    cold = demo_engine(seed=5, policy=policy, start_time=T0)
    warm = demo_engine(seed=5, policy=policy, start_time=T0)
    warm.model_id = cold.model_id
    assert warm_up(warm, kernels=kernels) >= 0.0
    for i in range(1, 40):
        user, t = f"U{i:06d}", T0 + i
        a, b = cold.decide(user, now=t), warm.decide(user, now=t)
        assert (a.bundle_id, a.propensity, a.scores) == (b.bundle_id, b.propensity, b.scores)
        if i % 3 == 0:
            cold.report(a.decision_id, "click", at=t)
            warm.report(b.decision_id, "click", at=t)
    cold.flush(T0 + 10**6)
    warm.flush(T0 + 10**6)
    sa, sb = cold.policy.get_state(), warm.policy.get_state()
    assert sa.get("rng") == sb.get("rng")  # the warm-up never drew from the served generator
    for key in sa:
        if isinstance(sa[key], np.ndarray):
            assert np.array_equal(sa[key], sb[key]), key
