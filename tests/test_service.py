"""LoggedEngine: the engine and its event log kept in step, one code path for every process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bandit_engine.demo import demo_engine
from bandit_engine.errors import ConflictError, NotFoundError
from bandit_engine.service import Checkpointer, LoggedEngine, LogProfiles
from bandit_engine.store import EventLog

KEY = b"service-test-hmac-key-0123456789"
T0 = 1_700_000_000.0


def _engine(seed: int = 0) -> object:
    return demo_engine(seed=seed, start_time=T0, clock=lambda: T0)


def test_the_log_gets_x_and_z_from_the_decision_itself(tmp_path: Path) -> None:
    engine = demo_engine(seed=0, start_time=T0, clock=lambda: T0)
    with EventLog(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        service = LoggedEngine(engine, log)
        d = service.decide("U000001", now=T0 + 1)
        x, z = engine.decision_vectors(d.decision_id)
        assert d.x is x and d.z is z  # no second lookup: the decision carries what was learned from
        row = log.decisions_frame()
        assert len(row) == 1 and row["bundle_id"][0] == d.bundle_id
        with pytest.raises(ConflictError):
            service.decide("U000001", decision_id=d.decision_id, now=T0 + 2)
        with pytest.raises(NotFoundError):
            service.report("never-decided", "click", at=T0 + 3)


def test_learned_rewards_are_logged_without_a_hook(tmp_path: Path) -> None:
    engine = demo_engine(seed=0, start_time=T0, clock=lambda: T0)
    assert engine.on_learned is None
    with EventLog(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        service = LoggedEngine(engine, log)
        d = service.decide("U000001", now=T0)
        service.report(d.decision_id, "click", at=T0 + 5)
        window = engine.rewards.window
        learned = service.advance(T0 + window + 10)
        assert [r.decision_id for r in learned] == [d.decision_id]
        assert learned[0].reward == pytest.approx(engine.rewards.click)
        assert log.decision(d.decision_id)["status"] == "learned"
        assert engine.policy.n_updates_ == 1


def test_forget_reaches_the_engines_own_profile_store(tmp_path: Path) -> None:
    engine = demo_engine(seed=0, start_time=T0, clock=lambda: T0)
    assert engine.profiles.get("U000001") is not None  # the demo loads its users' profiles
    with EventLog(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        service = LoggedEngine(engine, log)
        service.decide("U000001", now=T0)
        deleted = service.forget_user("U000001")
        assert deleted["decisions"] == 1
        assert engine.profiles.get("U000001") is None
        cold = engine.context("U000001", now=T0)
        assert np.count_nonzero(cold) == 1  # intercept only: the user is now a stranger


def test_profiles_in_the_log_are_the_engines_store(tmp_path: Path) -> None:
    engine = demo_engine(seed=0, start_time=T0, clock=lambda: T0)
    with EventLog(tmp_path / "e.sqlite", hmac_key=KEY) as log:
        service = LoggedEngine(engine, log, profiles_in_log=True)
        assert isinstance(engine.profiles, LogProfiles)
        service.upsert_profile("new-user", "groupbuy", {"city": "beijing"})
        cs = engine.catalog.eligible_for(engine.profile_of("new-user"), T0)
        cities = set(
            engine.catalog.deals()
            .set_index("deal_id")
            .loc[[engine.catalog.parts(b)[0] for b in cs.ids], "city"]
        )
        assert cities == {"beijing"}
        service.forget_user("new-user")
        assert engine.profiles.get("new-user") is None
        assert log.get_profile("new-user") is None


def test_checkpoint_and_restore_end_where_a_service_that_never_stopped_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    window = demo_engine(seed=0, start_time=T0).rewards.window

    def run(service: LoggedEngine, start: int, stop: int) -> None:
        for i in range(start, stop):
            t = T0 + 60.0 * i
            d = service.decide(f"U{1 + int(rng.integers(2000)):06d}", now=t)
            if rng.random() < 0.3:
                service.report(d.decision_id, "click", at=t + 1)
        service.advance(T0 + 60.0 * stop)

    base = lambda: demo_engine(seed=0, start_time=T0, clock=lambda: T0)  # noqa: E731
    with EventLog(tmp_path / "a.sqlite", hmac_key=KEY) as log:
        cps = Checkpointer(tmp_path / "cps")
        service, report = LoggedEngine.restore(base, log, cps)
        assert report.new_lineage
        run(service, 0, 40)
        service.checkpoint()
        run(service, 40, 80)  # after the checkpoint: only in the journal
        again, report = LoggedEngine.restore(base, log, cps)
        assert report.checkpoint is not None and report.redone_decisions == 40
        a, b = service.engine, again.engine
        assert a.n_decisions == b.n_decisions and a.n_learned == b.n_learned
        assert a.behaviour is not None and b.behaviour is not None
        assert len(a.behaviour) == len(b.behaviour) > 0  # the journal redid the live behaviour
        for user in ("U000007", *(f"U{u:06d}" for u in range(1, 2001, 97))):
            # the checkpoint holds no profiles (the server keeps them in the log): pass a's
            prof = a.profile_of(user)
            x, ids, Z = a.policy_inputs(user, prof, now=T0 + 86_400 + window)
            x2, ids2, Z2 = b.policy_inputs(user, prof, now=T0 + 86_400 + window)
            assert ids == ids2
            np.testing.assert_array_equal(Z, Z2)
            np.testing.assert_array_equal(
                a.policy.score_batch(x[None], ids, Z), b.policy.score_batch(x2[None], ids, Z2)
            )
