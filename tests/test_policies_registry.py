"""Registry: construction by name, errors listing valid choices, plain-data round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.policies import (
    POLICIES,
    LinUCB,
    make_policy,
    policy_from_dict,
    policy_params,
    policy_to_dict,
    register_policy,
)
from bandit_engine.policies.registry import PolicyRegistry

BUILTIN = {
    "linucb",
    "hybrid_linucb",
    "lin_ts",
    "uniform",
    "epsilon_greedy",
    "popularity",
    "fixed_rule",
}


def test_builtin_names_resolve_to_classes_with_that_name() -> None:
    assert set(POLICIES) >= BUILTIN
    for name in BUILTIN:
        assert POLICIES[name].name == name


def test_make_policy_and_its_errors() -> None:
    pol = make_policy("linucb", alpha=0.3, seed=1)
    assert isinstance(pol, LinUCB) and pol.alpha == 0.3
    with pytest.raises(ConfigError) as info:
        make_policy("thompson")
    assert "name must be one of" in str(info.value) and "'lin_ts'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_policy("linucb", beta=2.0)
    text = str(info.value)
    assert "linucb.beta is not a parameter of 'linucb'" in text and "'alpha'" in text
    assert "window" in policy_params("linucb")
    with pytest.raises(ConfigError, match="alpha must be >= 0"):
        make_policy("linucb", alpha=-1)


def test_lazy_registration_imports_nothing_until_asked() -> None:
    reg = PolicyRegistry({"ghost": "bandit_engine.no_such_module:Ghost"})
    assert list(reg) == ["ghost"]  # listing does not import
    with pytest.raises(ConfigError, match="could not be loaded"):
        reg["ghost"]
    with pytest.raises(ConfigError, match=r"must look like 'package\.module:Class'"):
        register_policy("x", "not-a-path")
    wrong = PolicyRegistry({"other": "bandit_engine.policies.linucb:LinUCB"})
    with pytest.raises(ConfigError, match="whose name is 'linucb'"):
        wrong["other"]


def test_importing_the_package_does_not_import_vowpalwabbit() -> None:
    code = (
        "import sys, bandit_engine, bandit_engine.policies as p; "
        "list(p.POLICIES); p.make_policy('linucb'); print('vowpalwabbit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dict_round_trip_through_json_and_arrays() -> None:
    pol = make_policy("lin_ts", v=0.4, window=5, seed=2)
    rng = np.random.default_rng(0)
    arms = ["a", "b", "c"]
    Z = rng.normal(size=(3, 2))
    for _ in range(30):
        x = rng.normal(size=4)
        c = pol.choose(x, arms, Z)
        pol.update(x, arms[c.index], Z[c.index], float(rng.random() < 0.5))
    data = policy_to_dict(pol)
    assert data["name"] == "lin_ts" and data["params"]["window"] == 5
    arrays = {k: v for k, v in data["state"].items() if isinstance(v, np.ndarray)}
    plain = {k: v for k, v in data["state"].items() if not isinstance(v, np.ndarray)}
    loaded = json.loads(json.dumps({**data, "state": plain}))
    loaded["state"].update(arrays)
    twin = policy_from_dict(loaded)
    x = rng.normal(size=4)
    a, b = pol.choose(x, arms, Z), twin.choose(x, arms, Z)
    assert (a.index, a.propensity) == (b.index, b.propensity)


def test_policy_from_dict_validation() -> None:
    with pytest.raises(ValidationError, match="policy has unknown keys"):
        policy_from_dict({"name": "linucb", "parms": {}})
    with pytest.raises(ValidationError, match=r"policy\.name is required"):
        policy_from_dict({"params": {}})
    with pytest.raises(ValidationError, match=r"policy\.params must be a mapping"):
        policy_from_dict({"name": "linucb", "params": [1]})
    with pytest.raises(ConfigError, match="name must be one of"):
        policy_from_dict({"name": "nope"})
    assert isinstance(policy_from_dict({"name": "linucb"}), LinUCB)
