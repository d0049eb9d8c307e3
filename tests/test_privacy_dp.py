"""Differentially private releases (privacy/dp.py) and the privacy-budget ledger (store/ledger.py).

OpenDP draws its noise from a cryptographically secure sampler that cannot be seeded (on
purpose: a known seed would let anyone subtract the noise), so the statistical tests below fix
the data's seed and state their margins against the noise's own distribution.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_engine.errors import ConfigError, ConflictError, ValidationError
from bandit_engine.privacy import dp_count, dp_rate, dp_sum, dp_uplift
from bandit_engine.store import EventLog, open_log
from bandit_engine.store.ledger import PrivacyLedger

HMAC = b"privacy-test-hmac-key-0123456789"


def _log_of_users(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user decisions (1 + Poisson(2), so a few users exceed a cap of 10) and clicks
    (Binomial(decisions, 5%))."""
    rng = np.random.default_rng(seed)
    decisions = 1 + rng.poisson(2.0, n)
    clicks = rng.binomial(decisions, 0.05)
    return clicks, decisions


def test_released_ctr_at_epsilon_1_is_within_its_bound_in_95_percent_of_200_runs() -> None:
    clicks, decisions = _log_of_users(100_000, seed=11)
    cap = 10
    den = np.minimum(decisions, cap)
    exact = np.minimum(clicks, den).sum() / den.sum()  # the clipped statistic the bound covers
    errors, bounds = [], []
    for _ in range(200):
        r = dp_rate(clicks, decisions, epsilon=1.0, cap=cap, beta=0.05)
        assert r.epsilon == 1.0 and r.confidence == 0.95
        errors.append(abs(r.value - exact))
        bounds.append(r.error_bound)
    within = int(np.sum(np.array(errors) <= np.array(bounds)))
    # The bound holds whenever both sums' noises are inside their 97.5% accuracies (>= 95%) and
    # usually beyond (it assumes a rate of 1 where the rate is 0.05), so the expected share is
    # above 99%: fewer than 190 of 200 is then a probability below 1e-6. A scale larger than
    # the bound assumes, or a bound derived wrongly, fails it.
    assert within >= 190, f"within the bound in {within} of 200 runs"
    # ... and the bound is not vacuous: within 4x the 95th percentile of the observed errors
    assert float(np.median(bounds)) < 4 * float(np.quantile(errors, 0.95))
    assert float(np.median(bounds)) < 0.1 * exact  # under 10% of the CTR itself


def test_count_noise_has_the_scale_the_mechanism_states() -> None:
    counts = np.full(1000, 3)
    cap, eps = 5, 0.5
    draws = np.array([dp_count(counts, epsilon=eps, cap=cap).value for _ in range(2000)]) - 3000
    first = dp_count(counts, epsilon=eps, cap=cap)
    assert "scale 10" in first.mechanism  # cap / epsilon
    # Laplace(b) has sd sqrt(2) b = 14.1; the sample sd of 2,000 draws is within 10% with
    # probability > 0.999 (the sample sd's relative sd is about sqrt(5/4/2000) = 2.5% for
    # Laplace's kurtosis 6, so 10% is 4 sd).
    assert float(np.std(draws)) == pytest.approx(math.sqrt(2) * cap / eps, rel=0.10)
    # OpenDP's accuracy at beta = 0.05: 2,000 draws, the share outside has sd 0.5%: the
    # observed share must be at most 5% + 1.5% (3 sd).
    outside = float(np.mean(np.abs(draws) > first.error_bound))
    assert outside <= 0.065


def test_clipping_is_reported_and_bounds_each_users_contribution() -> None:
    r = dp_count([1, 2, 50, 70], epsilon=1e6, cap=10)  # noise sd ~ 1e-5
    assert round(r.value) == 1 + 2 + 10 + 10 and r.clipped_users == 2
    s = dp_sum([1.5, 1000.0], epsilon=1e6, cap=100.0)
    assert s.value == pytest.approx(101.5, abs=0.01) and s.clipped_users == 1
    # clicks above the user's (clipped) decisions are clipped too: each user's rate <= 1
    rate = dp_rate([5, 1], [2, 4], epsilon=1e6, cap=10)
    assert rate.value == pytest.approx((2 + 1) / 6, abs=1e-3) and rate.clipped_users == 1


def test_uplift_is_the_difference_of_rates_and_spends_its_whole_epsilon() -> None:
    t = ([10, 10], [100, 100])
    c = ([5, 5], [100, 100])
    u = dp_uplift(t, c, epsilon=1e7, cap=100)
    assert u.value == pytest.approx(0.05, abs=1e-3) and u.epsilon == 1e7


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_epsilon_is_refused_before_anything(eps: object) -> None:
    with pytest.raises(ConfigError) as info:
        dp_count([1, 2], epsilon=eps, cap=3)  # type: ignore[arg-type]
    assert info.value.field == "epsilon"


def test_bad_per_user_values_name_the_user() -> None:
    with pytest.raises(ValidationError, match=r"per_user\[1\] must be finite and >= 0, got -2"):
        dp_count([1, -2], epsilon=1.0, cap=3)
    with pytest.raises(ValidationError, match=r"per_user\[0\] must be an integer, got 1.5"):
        dp_count([1.5], epsilon=1.0, cap=3)
    with pytest.raises(ConfigError, match="cap"):
        dp_rate([1], [1], epsilon=1.0, cap=0)


# -- the ledger ------------------------------------------------------------------------------------
def test_ledger_records_each_release_and_refuses_past_the_budget(db_target: str) -> None:
    with open_log(db_target, hmac_key=HMAC) as log:
        ledger = PrivacyLedger(log, total_epsilon=2.0)
        clicks, decisions = _log_of_users(1000, seed=3)
        dp_rate(clicks, decisions, epsilon=1.0, cap=10, ledger=ledger, label="ctr day 1")
        dp_count(decisions, epsilon=0.75, cap=10, ledger=ledger, label="decisions day 1")
        assert [(e.label, e.epsilon) for e in ledger.entries()] == [
            ("ctr day 1", 1.0),
            ("decisions day 1", 0.75),
        ]
        with pytest.raises(ConflictError, match=r"spent 1.75 of 2") as info:
            dp_rate(clicks, decisions, epsilon=0.5, cap=10, ledger=ledger, label="ctr day 2")
        assert info.value.field == "epsilon"
        assert len(ledger.entries()) == 2  # nothing recorded, nothing released
        assert ledger.remaining() == (pytest.approx(0.25), 0.0)
    with open_log(db_target, hmac_key=HMAC) as log:  # the spend survives a reopen
        again = PrivacyLedger(log, total_epsilon=2.0)
        assert again.spent() == (pytest.approx(1.75), 0.0)
        with pytest.raises(ConfigError, match="budget recorded in the log"):
            PrivacyLedger(log, total_epsilon=5.0)  # no silent raise of the budget


@pytest.mark.parametrize(("field", "value"), [("total_epsilon", 0.0), ("total_delta", 1.0)])
def test_bad_budget_is_refused(tmp_path: Path, field: str, value: float) -> None:
    with EventLog(tmp_path / "e.sqlite", hmac_key=HMAC) as log, pytest.raises(ConfigError) as info:
        PrivacyLedger(log, **{"total_epsilon": 1.0, field: value})
    assert info.value.field == field


@settings(max_examples=40, deadline=None)
@given(
    budget=st.floats(0.1, 5.0),
    spends=st.lists(st.floats(0.01, 2.0), min_size=1, max_size=25),
)
def test_property_the_ledger_total_never_exceeds_the_budget(
    budget: float, spends: list[float]
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EventLog(Path(tmp) / "e.sqlite", hmac_key=HMAC) as log,
    ):
        ledger = PrivacyLedger(log, total_epsilon=budget)
        accepted = 0.0
        for i, eps in enumerate(spends):
            try:
                ledger.spend(eps, label=f"r{i}", mechanism="test")
                accepted = math.fsum([accepted, eps])
            except ConflictError:
                # refused only when it would have gone over
                assert ledger.spent()[0] + eps > budget
            assert ledger.spent()[0] <= budget
        assert ledger.spent()[0] == pytest.approx(accepted)


def test_two_processes_spending_at_once_never_pass_the_budget_together(db_target: str) -> None:
    """Two connections (as two server processes would hold) spend 0.125 at a time against a
    budget of 2 until refused: the check and the record share one transaction under the journal
    lock, so exactly 16 spends are accepted between them, never more (0.125 is exact in binary,
    so no rounding blurs the count)."""
    import threading

    with open_log(db_target, hmac_key=HMAC) as log:
        PrivacyLedger(log, total_epsilon=2.0)  # records the budget
    accepted: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        n = 0
        try:
            with open_log(db_target, hmac_key=HMAC) as log:
                ledger = PrivacyLedger(log, total_epsilon=2.0)
                for i in range(40):
                    try:
                        ledger.spend(0.125, label=f"t{threading.get_ident()}-{i}", mechanism="t")
                        n += 1
                    except ConflictError:
                        break
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        accepted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(accepted) == 16 and len(accepted) == 2
    with open_log(db_target, hmac_key=HMAC) as log:
        ledger = PrivacyLedger(log, total_epsilon=2.0)
        assert len(ledger.entries()) == 16
        assert ledger.spent() == (2.0, 0.0)
