"""Scenario files: the shipped ones load, the baseline file equals the embedded defaults, and bad
files fail with an error naming the key, the value and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandit_engine.errors import ConfigError, NotFoundError
from bandit_engine.simulation.policy_spec import PolicySpec, parse_policy_spec
from bandit_engine.simulation.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    default_scenario,
    load_scenario,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("baseline", "new_users", "new_bundles", "drift", "delayed_orders", "replay")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(ROOT / "simulations" / f"{name}.toml")
    assert sc.name == name
    assert sc.policies, "every shipped scenario tests at least one policy"
    assert sc.source is not None and sc.source.endswith(f"{name}.toml")


def test_shipped_scenarios_exercise_what_their_name_says() -> None:
    sims = ROOT / "simulations"
    assert load_scenario(sims / "new_users.toml").new_users is not None
    assert load_scenario(sims / "new_bundles.toml").new_bundles is not None
    assert load_scenario(sims / "drift.toml").world.drift.kind != "none"
    assert load_scenario(sims / "delayed_orders.toml").orders.delay == "exponential"
    assert load_scenario(sims / "replay.toml").replay is not None
    assert any(p.name == "vw" for p in load_scenario(sims / "new_bundles.toml").policies), (
        "the VW backend is exercised by a shipped scenario"
    )


def test_baseline_file_equals_the_embedded_defaults() -> None:
    assert load_scenario(ROOT / "simulations" / "baseline.toml") == default_scenario()
    assert default_scenario().source is None


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = """
[[policies]]
name = "linucb"
"""


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("[run]\nroundz = 5\n" + BASE, "run.roundz", "5"),
        ("[run]\nrounds = -3\n" + BASE, "run.rounds", "-3"),
        ("[run]\nseeds = 'two'\n" + BASE, "run.seeds", "'two'"),
        ("[world]\nn_users = 0\n" + BASE, "world.n_users", "0"),
        ("[world]\ncolour = 'red'\n" + BASE, "world.colour", "'red'"),
        ("[world.drift]\nkind = 'sideways'\n" + BASE, "world.drift.kind", "'sideways'"),
        ("[rewards]\nclick = 'lots'\n" + BASE, "rewards.click", "'lots'"),
        ("[rewards]\nbonus = 1.0\n" + BASE, "rewards.bonus", "1.0"),
        ("[orders]\ndelay = 'weekly'\n" + BASE, "orders.delay", "'weekly'"),
        ("[new_users]\nshare = 1.5\n" + BASE, "new_users.share", "1.5"),
        ("[new_users]\ncity = 'paris'\n" + BASE, "new_users.city", "'paris'"),
        ("[new_bundles]\ndeals = 0\ncourses = 0\n" + BASE, "new_bundles.deals", "0"),
        ("[report]\nblock = 1\n" + BASE, "report.block", "1"),
        ("colour = 'blue'\n" + BASE, "colour", "'blue'"),
        ("[[policies]]\nname = 'linucb'\nalpha = -1.0\n", "alpha", "-1.0"),
        ("[[policies]]\nname = 'linucb'\nalph = 0.1\n", "linucb.alph", "0.1"),
        ("[[policies]]\nname = 'magic'\n", "name", "'magic'"),
        ("[[controls]]\nname = 'uniform'\nfoo = 1\n" + BASE, "uniform.foo", "1"),
        ("[replay]\nrounds = 5\n" + BASE, "replay.rounds", "5"),
        ("[replay]\npolicy = 'linucb:alpha=-2'\n" + BASE, "alpha", "-2"),
    ],
)
def test_bad_scenario_names_key_value_and_file(
    tmp_path: Path, text: str, key: str, value: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert value in message


def test_policy_errors_say_which_list_entry(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "[[policies]]\nname = 'lin_ts'\nv = -1.0\n")
    with pytest.raises(ConfigError, match=r"policies\[1\]"):
        load_scenario(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(_write(tmp_path, "[run\nrounds = 3"))
    with pytest.raises(NotFoundError, match=r"nope\.toml"):
        load_scenario(tmp_path / "nope.toml")


def test_a_scenario_needs_a_policy() -> None:
    with pytest.raises(ConfigError, match="policies"):
        Scenario.from_dict({"name": "empty"})


def test_parse_policy_spec_values() -> None:
    spec = parse_policy_spec("linucb:alpha=0.1,l2=2,epsilon=0,discount=none")
    assert spec.name == "linucb"
    assert spec.kwargs == {"alpha": 0.1, "l2": 2, "epsilon": 0, "discount": None}
    vw = parse_policy_spec("vw:exploration=bag,bag=3,interactions=[UA,UU],label=VW bag")
    assert vw.kwargs == {"exploration": "bag", "bag": 3, "interactions": ["UA", "UU"]}
    assert vw.label == "VW bag"
    assert parse_policy_spec("uniform") == PolicySpec.create("uniform")
    rule = parse_policy_spec("fixed_rule:column=deal.discount,descending=true")
    assert rule.kwargs == {"column": "deal.discount", "descending": True}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("linucb:alpha", "key=value"),
        ("linucb:alpha=1,alpha=2", "twice"),
        ("nosuch:alpha=1", "nosuch"),
        ("linucb:beta=1", "linucb.beta"),
        ("", "NAME"),
    ],
)
def test_parse_policy_spec_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_policy_spec(text)


def test_overrides_keep_everything_else() -> None:
    sc = default_scenario()
    out = sc.with_overrides(rounds=10, seeds=1, seed=4, controls=[])
    assert (out.run.rounds, out.run.seeds, out.run.seed) == (10, 1, 4)
    assert out.run.world_seed == sc.run.world_seed
    assert out.controls == () and out.policies == sc.policies
    assert out.world == sc.world and out.rewards == sc.rewards


def test_to_dict_is_plain_data() -> None:
    d = default_scenario().to_dict()
    assert d["run"] == DEFAULT_SCENARIO["run"]
    assert d["policies"] == [{"name": "pair_ts", "params": {}}]
    assert d["controls"][2]["label"] == "highest discount"
