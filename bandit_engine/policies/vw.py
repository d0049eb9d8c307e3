"""Vowpal Wabbit backend: ``--cb_explore_adf`` behind the
:class:`~bandit_engine.policies.base.Policy` protocol.

This is the only module that imports ``vowpalwabbit``, and only when the first workspace is built,
so ``import bandit_engine`` never loads VW. Register name: ``"vw"``.

How a decision is fed to VW
---------------------------
One multi-line ADF example per decision: a ``shared |U ...`` line with the non-zero entries of the
context ``x`` (feature name = column index) and one ``|A ...`` line per candidate with the non-zero
entries of its ``arm_features`` row. ``--interactions UA`` (the default ``interactions=("UA",)``)
crosses user and bundle features, which is what makes the model contextual. Values are written
with 9 significant digits, which resolves the float32 precision VW stores. Action lines are cached
per arm id and checked against the row's bytes (a bundle whose features change is re-formatted),
and the whole candidate block is cached by the bytes of ``arm_features``, so a repeated candidate
set costs one byte comparison. Examples are parsed and run through ``pylibvw`` directly (``_parse``,
``predict_multi``, ``learn_multi``), which skips the per-line Python wrappers of
``Workspace.predict``.

Choices and propensities
------------------------
VW's prediction is a PMF over the candidates, in the order given. The adapter samples from it with
its own numpy generator (``rng_``, one ``random()`` per choice), so choices follow the engine's
seed; the propensity is the PMF entry of the chosen candidate (the PMF is renormalised in float64
because VW's float32 entries do not sum to 1 exactly). Predicting does not change VW's learning
state for any exploration type (tested), so :meth:`VWPolicy.probabilities` is exact and free of side
effects. ``regcb`` (and ``bag`` with ``epsilon=0``) can give candidates probability 0; such a
candidate is never chosen.

Scores
------
``Choice.scores`` and :meth:`VWPolicy.score_batch` are VW's estimated rewards,
``-cost * cost_scale``, where ``cost`` is the per-action regression output (``partial_prediction``)
of the last scorer VW ran. For ``epsilon``, ``squarecb`` and ``regcb`` that is the cost regressor
itself; for ``bag`` it is the last bootstrap member's regressor (a noisier estimate of the same
quantity). For ``cover`` the last scorer is a cover policy trained on penalised pseudo-costs, not a
reward estimate, so for ``cover`` the scores are the PMF.

Learning, and the limitation of the one-arm protocol
----------------------------------------------------
``update`` converts the reward with :func:`bandit_engine.rewards.reward_to_cost` (the single
conversion) and learns the label ``0:cost:propensity`` on the chosen action. The protocol passes
only the chosen arm, so by default VW learns a one-action ADF example. That is a valid example for
the ``mtr`` reduction (VW's default ``cb_type``, which regresses on the chosen action only) but it
is not bit-identical to learning the full candidate set: ``mtr`` multiplies the importance weight
``1/p`` by (examples seen) / (actions seen), so with one action per example the weights are ``k``
times larger, and ``cover`` trains its cover policies on pseudo-costs of the candidates it sees.
On the synthetic tasks measured so far (tests, conformance suite, benchmark task) this did not make
learning worse. ``update`` also accepts the
keyword arguments ``candidates`` and ``candidate_features`` (the list shown at decision time); with
them the adapter learns exactly the example raw VW would learn.

``squarecb`` and ``regcb`` regress without importance weighting: VW resets the label probability to
1 for them (except, by an off-by-one in VW 9, on the last action line), so the adapter always
writes probability 1 in their labels, which makes their learning independent of candidate order.

Saving
------
:meth:`VWPolicy.get_state` stores the VW model bytes (VW 9 writes resumable models by default:
weights, adaptive and normalised accumulators, example counters, the exploration counters and VW's
random state) with the numpy generator state; :meth:`VWPolicy.set_state` rebuilds the workspace from
those bytes with ``-i`` (a temporary file), never with pickle. For ``epsilon``, ``squarecb`` and
``regcb`` a restored policy continues exactly like the original and saving has no side effect. For
``bag`` and ``cover``, VW 9.11 does not save the normalised-update state of its extra sub-models
(exact again with ``extra_args="--adaptive --invariant"``), so a reloaded workspace learns slightly
differently from the live one. To keep "a restored policy makes the same choices as the original"
true, ``get_state`` then also reloads the live workspace from the bytes it returns; the price is
that, for these two explorations, saving nudges the original's later learning exactly as a
save-and-restart would.

VW option errors (from ``extra_args`` combinations VW rejects, e.g. ``--elim`` without
``squarecb``) surface as :class:`~bandit_engine.errors.ConfigError` when the workspace is built,
i.e. on first use, because the workspace is built lazily.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ConflictError, ModelFileError, ValidationError
from ..records import Choice
from ..rewards import reward_to_cost
from ._arrays import BoolArray
from ._checks import (
    SeedLike,
    check_choice,
    check_finite,
    check_in_range,
    check_int,
    check_positive,
)
from .base import BasePolicy

__all__ = ["EXPLORATIONS", "EXTRA_ARGS_ALLOWED", "Exploration", "VWPolicy"]

FloatArray = NDArray[np.float64]
Exploration = Literal["epsilon", "squarecb", "bag", "cover", "regcb"]
EXPLORATIONS: tuple[str, ...] = ("epsilon", "squarecb", "bag", "cover", "regcb")

#: VW options accepted in ``extra_args`` and how many values each takes. An allowlist rather than
#: a denylist: options that read or write files (-i, -f, --data, --cache, --readable_model,
#: --invert_hash, ...), open sockets (--daemon, --port), change the label or prediction type, or
#: duplicate a hyperparameter of :class:`VWPolicy` are all absent. Values must be numbers, so no
#: path can be smuggled in.
EXTRA_ARGS_ALLOWED: dict[str, int] = {
    "--power_t": 1,
    "--initial_t": 1,
    "--decay_learning_rate": 1,
    "--l1": 1,
    "-b": 1,
    "--bit_precision": 1,
    "--hash_seed": 1,
    "--noconstant": 0,
    "--adaptive": 0,
    "--normalized": 0,
    "--invariant": 0,
    "--sgd": 0,
    "--clip_p": 1,
    "--gamma_exponent": 1,
    "--elim": 0,
    "--regcbopt": 0,
    "--psi": 1,
    "--nounif": 0,
    "--first_only": 0,
}
_INT_VALUED = frozenset({"-b", "--bit_precision", "--hash_seed"})
# Options that belong to one exploration. VW accepts some of them silently with another one and
# --regcbopt even switches the exploration to RegCB, so they are refused elsewhere.
_ONLY_FOR: dict[str, frozenset[str]] = {
    "--gamma_exponent": frozenset({"squarecb"}),
    "--elim": frozenset({"squarecb"}),
    "--regcbopt": frozenset({"regcb"}),
    "--psi": frozenset({"cover"}),
    "--nounif": frozenset({"cover"}),
    "--first_only": frozenset({"bag", "cover", "regcb"}),
}
_MAX_BITS = 28  # 2**28 weights times VW's stride is already gigabytes
# Explorations whose VW 9.11 save/load does not resume learning bit for bit (module docstring).
_RESYNC_ON_SAVE = frozenset({"bag", "cover"})
# Explorations that regress without importance weighting.
_UNWEIGHTED = frozenset({"squarecb", "regcb"})
_NAMESPACES = frozenset("UA")


def _format_row(values: list[float]) -> str:
    # 9 significant digits resolve float32 (what VW stores); "%.9g" is ~2x faster than repr.
    return " ".join([f"{i}:{v:.9g}" for i, v in enumerate(values) if v])


def _check_extra_args(extra_args: str, exploration: str) -> list[str]:
    """Split ``extra_args`` and check every option against :data:`EXTRA_ARGS_ALLOWED`."""
    if not isinstance(extra_args, str):
        raise ConfigError.for_field("extra_args", extra_args, "must be a string of VW options")
    try:
        tokens = shlex.split(extra_args)
    except ValueError as exc:
        raise ConfigError.for_field("extra_args", extra_args, f"cannot be split ({exc})") from None
    i = 0
    while i < len(tokens):
        opt = tokens[i]
        name, eq, inline = opt.partition("=")
        if name not in EXTRA_ARGS_ALLOWED:
            raise ConfigError.for_field(
                "extra_args",
                opt,
                f"may only contain the VW options {sorted(EXTRA_ARGS_ALLOWED)}",
            )
        if name in _ONLY_FOR and exploration not in _ONLY_FOR[name]:
            raise ConfigError.for_field(
                "extra_args", opt, f"is only valid with exploration in {sorted(_ONLY_FOR[name])}"
            )
        n_values = EXTRA_ARGS_ALLOWED[name]
        values = [inline] if eq else tokens[i + 1 : i + 1 + n_values]
        if len(values) != n_values:
            raise ConfigError.for_field(
                "extra_args", opt, f"option {name} must be followed by {n_values} value(s)"
            )
        for v in values:
            try:
                num = float(v)
            except ValueError:
                num = math.nan
            if not math.isfinite(num) or (name in _INT_VALUED and not num.is_integer()):
                kind = "an integer" if name in _INT_VALUED else "a finite number"
                raise ConfigError.for_field("extra_args", f"{name} {v}", f"value must be {kind}")
            if name in ("-b", "--bit_precision") and not 1 <= num <= _MAX_BITS:
                raise ConfigError.for_field(
                    "extra_args", f"{name} {v}", f"value must be in [1, {_MAX_BITS}]"
                )
        i += 1 if eq else 1 + n_values
    return tokens


def _check_pair(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError.for_field(name, value, "must be a pair [low, high]")
    low = check_finite(f"{name}[0]", value[0])
    high = check_finite(f"{name}[1]", value[1])
    if not low < high:
        raise ConfigError.for_field(name, list(value), "must have low < high")
    return low, high


class VWPolicy(BasePolicy):
    """Contextual bandit policy backed by Vowpal Wabbit's ``--cb_explore_adf``.

    Parameters
    ----------
    exploration
        ``"epsilon"`` (epsilon-greedy), ``"squarecb"``, ``"bag"`` (bootstrap, Thompson-like),
        ``"cover"`` (online cover) or ``"regcb"`` (RegCB elimination).
    epsilon
        Uniform exploration mass in [0, 1]; used by ``epsilon``, ``bag`` and ``cover`` (for
        ``cover`` it is a fixed floor of ``epsilon / k`` per action, not VW's decaying default).
    gamma_scale
        SquareCB greediness (> 0): gamma grows as ``gamma_scale * sqrt(t)``.
    bag
        Number of bootstrap models for ``bag`` (int >= 1).
    cover
        Number of cover policies for ``cover`` (int >= 1).
    regcb_mellowness
        RegCB confidence parameter c0 (> 0); smaller is greedier.
    learning_rate
        VW learning rate (> 0).
    l2
        L2 regularisation (>= 0).
    interactions
        Namespace interactions, each 2 or 3 letters from ``"U"`` (user context) and ``"A"``
        (bundle features); ``["UA"]`` crosses them.
    reward_range
        ``[low, high]`` bounds of one reward. RegCB needs cost bounds and gets
        ``[-high / cost_scale, -low / cost_scale]``; the other explorations ignore it.
    cost_scale
        Costs are ``-reward / cost_scale`` (> 0), see :func:`~bandit_engine.rewards.reward_to_cost`.
    extra_args
        More VW options from :data:`EXTRA_ARGS_ALLOWED` (numeric values only), e.g.
        ``"--power_t 0.5 -b 20"``.
    seed
        Seed or generator; drives the choices and VW's own ``--random_seed``.

    Notes
    -----
    The workspace is built on first use and released by :meth:`close` (or garbage collection);
    a closed policy raises :class:`~bandit_engine.errors.ConflictError` until :meth:`set_state`
    gives it a model again. Not thread-safe.
    """

    name: ClassVar[str] = "vw"
    _param_names: ClassVar[tuple[str, ...]] = (
        "exploration",
        "epsilon",
        "gamma_scale",
        "bag",
        "cover",
        "regcb_mellowness",
        "learning_rate",
        "l2",
        "interactions",
        "reward_range",
        "cost_scale",
        "extra_args",
    )

    def __init__(
        self,
        *,
        exploration: Exploration = "epsilon",
        epsilon: float = 0.05,
        gamma_scale: float = 10.0,
        bag: int = 5,
        cover: int = 5,
        regcb_mellowness: float = 0.1,
        learning_rate: float = 0.5,
        l2: float = 0.0,
        interactions: Sequence[str] = ("UA",),
        reward_range: Sequence[float] = (0.0, 1.0),
        cost_scale: float = 1.0,
        extra_args: str = "",
        seed: SeedLike = None,
    ) -> None:
        self.exploration = check_choice("exploration", exploration, EXPLORATIONS)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.gamma_scale = check_positive("gamma_scale", gamma_scale)
        self.bag = check_int("bag", bag, minimum=1)
        self.cover = check_int("cover", cover, minimum=1)
        self.regcb_mellowness = check_positive("regcb_mellowness", regcb_mellowness)
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.l2 = check_positive("l2", l2, allow_zero=True)
        if isinstance(interactions, str) or not isinstance(interactions, Sequence):
            raise ConfigError.for_field(
                "interactions", interactions, "must be a list of namespace strings like ['UA']"
            )
        for term in interactions:
            if not (isinstance(term, str) and 2 <= len(term) <= 3 and set(term) <= _NAMESPACES):
                raise ConfigError.for_field(
                    "interactions", term, "entries must be 2 or 3 letters from 'U' and 'A'"
                )
        self.interactions: tuple[str, ...] = tuple(interactions)
        self.reward_range = _check_pair("reward_range", reward_range)
        self.cost_scale = check_positive("cost_scale", cost_scale)
        self._extra_tokens = _check_extra_args(extra_args, self.exploration)
        self.extra_args = extra_args
        super().__init__(seed=seed)
        # VW's own generator (bag's bootstrap) is seeded from ours once, so the whole policy is
        # reproducible from ``seed``; the value travels with the state.
        self.vw_seed_ = int(self.rng_.integers(1, 2**31 - 1))
        self._args = self._build_args()
        self._ws: Any = None
        self._lib: Any = None
        self._closed = False
        self._line_cache: dict[str, tuple[bytes, str]] = {}
        self._block_key: bytes | None = None
        self._block_text = ""
        self._shared_key: bytes | None = None
        self._shared_text = ""

    # -- parameters -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        out = super().get_params()
        out["interactions"] = list(self.interactions)
        out["reward_range"] = list(self.reward_range)
        return out

    def _build_args(self) -> list[str]:
        args = ["--cb_explore_adf", "--quiet"]
        if self.exploration == "epsilon":
            args += ["--epsilon", repr(self.epsilon)]
        elif self.exploration == "squarecb":
            args += ["--squarecb", "--gamma_scale", repr(self.gamma_scale)]
        elif self.exploration == "bag":
            args += ["--bag", str(self.bag), "--epsilon", repr(self.epsilon)]
        elif self.exploration == "cover":
            args += ["--cover", str(self.cover), "--epsilon", repr(self.epsilon)]
        else:
            low, high = self.reward_range
            args += ["--regcb", "--mellowness", repr(self.regcb_mellowness)]
            args += ["--cb_min_cost", repr(reward_to_cost(high, scale=self.cost_scale))]
            args += ["--cb_max_cost", repr(reward_to_cost(low, scale=self.cost_scale))]
        for term in self.interactions:
            args += ["--interactions", term]
        args += ["--learning_rate", repr(self.learning_rate), "--l2", repr(self.l2)]
        return args + self._extra_tokens

    @property
    def vw_args(self) -> list[str]:
        """The VW command line of this policy (without ``--random_seed`` and ``-i``)."""
        return list(self._args)

    # -- workspace ----------------------------------------------------------------------------
    def _build(self, model_path: str | None = None) -> None:
        import vowpalwabbit
        from vowpalwabbit import pyvw

        args = list(self._args)
        # A resumable model carries VW's random state as --random_seed; passing ours too on load
        # is rejected by VW as a conflicting value.
        args += ["--random_seed", str(self.vw_seed_)] if model_path is None else ["-i", model_path]
        try:
            ws = vowpalwabbit.Workspace(arg_list=args)
        except RuntimeError as exc:
            if model_path is not None:
                raise ModelFileError(
                    f"state.model is not a VW model for these options: {exc}", field="state.model"
                ) from None
            field = "extra_args" if self._extra_tokens else "exploration"
            raise ConfigError(
                f"{field} must give options VW accepts ({exc}), got {' '.join(args)!r}",
                field=field,
                value=" ".join(args),
            ) from None
        old, self._ws = self._ws, ws
        self._lib = pyvw.pylibvw.vw
        self._closed = False
        if old is not None:
            old.finish()

    def _workspace(self) -> Any:
        if self._ws is None:
            if self._closed:
                raise ConflictError(
                    "this VWPolicy was closed; restore a state with set_state to use it again",
                    field="policy",
                    value="closed",
                )
            self._build()
        return self._ws

    def close(self) -> None:
        """Release the VW workspace; the learned model is gone unless saved with get_state."""
        ws, self._ws = self._ws, None
        self._closed = True
        if ws is not None:
            ws.finish()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            ws, self._ws = self._ws, None
            if ws is not None:
                ws.finish()

    def __deepcopy__(self, memo: dict[int, Any]) -> VWPolicy:
        # A VW workspace cannot be copied; go through the plain-data state instead.
        clone = type(self)(**self.get_params())
        clone.set_state(self.get_state())
        return clone

    # -- example text -------------------------------------------------------------------------
    def _shared_line(self, x: FloatArray) -> str:
        key = x.tobytes()
        if key != self._shared_key:
            if not np.all(np.isfinite(x)):
                self._raise_nonfinite(x)
            self._shared_text = "shared |U " + _format_row(x.tolist())
            self._shared_key = key
        return self._shared_text

    def _action_line(self, arm: str, row: FloatArray) -> str:
        key = row.tobytes()
        cached = self._line_cache.get(arm)
        if cached is not None and cached[0] == key:
            return cached[1]
        line = "|A " + _format_row(row.tolist())
        self._line_cache[arm] = (key, line)
        return line

    def _example_text(self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray) -> str:
        key = arm_features.tobytes()
        if key != self._block_key:
            # The lines depend only on the feature rows, so the bytes of the block validate it.
            if not np.all(np.isfinite(arm_features)):
                self._raise_nonfinite(x, arm_features)
            self._block_text = "\n".join(
                [self._action_line(arm, arm_features[i]) for i, arm in enumerate(arms)]
            )
            self._block_key = key
        return self._shared_line(x) + "\n" + self._block_text

    def _predict(self, text: str, want_costs: bool) -> tuple[FloatArray, FloatArray | None]:
        ws = self._workspace()
        exs = ws._parse(text)
        try:
            self._lib.predict_multi(ws, exs)
            pmf = np.asarray(exs[0].get_action_scores(), dtype=np.float64)
            costs = None
            if want_costs and self.exploration != "cover":
                costs = np.asarray([e.get_partial_prediction() for e in exs[1:]], np.float64)
        finally:
            ws._finish_example_multi_ex(exs)
        total = pmf.sum()
        if not (total > 0.0 and math.isfinite(total)):
            raise ValidationError.for_field(
                "model", pmf.tolist(), "gave no valid distribution (has VW diverged?)"
            )
        pmf /= total
        return pmf, costs

    def _scores(self, pmf: FloatArray, costs: FloatArray | None) -> FloatArray:
        return pmf if costs is None else costs * -self.cost_scale

    # -- Policy protocol ----------------------------------------------------------------------
    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        if keep is not None:  # VW builds its example per call: nothing to keep, the sub-list
            return self._choose_sub_list(keep, x, arms, arm_features)
        x, arm_features = self._check_inputs(x, arms, arm_features)
        pmf, costs = self._predict(self._example_text(x, arms, arm_features), True)
        cum = np.cumsum(pmf)
        index = int(np.searchsorted(cum, self.rng_.random() * cum[-1], side="right"))
        if index >= pmf.shape[0]:  # u * total rounded up to total: take the last positive entry
            index = int(np.flatnonzero(pmf)[-1])
        return Choice(index, float(pmf[index]), self._scores(pmf, costs), pmf)

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        keep = self._keep(mask, arms)
        if keep is not None:
            out = self._probabilities_sub_list(keep, x, arms, arm_features)
            assert out is not None
            return out
        x, arm_features = self._check_inputs(x, arms, arm_features)
        return self._predict(self._example_text(x, arms, arm_features), False)[0]

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Estimated reward for every (row of ``X``, arm), ``(n, k)``; the PMF for ``cover``."""
        X, arm_features = self._check_batch(X, arms, arm_features)
        out = np.empty((X.shape[0], len(arms)), dtype=np.float64)
        for i in range(X.shape[0]):
            pmf, costs = self._predict(self._example_text(X[i], arms, arm_features), True)
            out[i] = self._scores(pmf, costs)
        return out

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
        *,
        candidates: Sequence[str] | None = None,
        candidate_features: FloatArray | None = None,
    ) -> None:
        """Learn that ``arm`` paid ``reward``; optionally with the full candidate list shown.

        Without ``candidates`` VW learns a one-action example (see the module notes). With
        ``candidates`` and ``candidate_features`` (row ``i`` describes ``candidates[i]``, and
        ``arm`` must be among them with the same features) it learns the full example.
        """
        x, row, r = self._check_update(x, arm, arm_features, reward, propensity)
        cost = reward_to_cost(r, scale=self.cost_scale)
        prob = 1.0 if self.exploration in _UNWEIGHTED else float(propensity)
        label = f"0:{cost!r}:{prob!r} "
        if not np.all(np.isfinite(row)):
            self._raise_nonfinite(x, row)
        if candidates is None and candidate_features is None:
            text = self._shared_line(x) + "\n" + label + self._action_line(arm, row)
        elif candidates is None or candidate_features is None:
            missing = "candidates" if candidates is None else "candidate_features"
            raise ValidationError.for_field(
                missing, None, "must be given when the other of candidates/candidate_features is"
            )
        else:
            _, feats = self._check_inputs(x, candidates, candidate_features)
            if not np.all(np.isfinite(feats)):
                self._raise_nonfinite(x, feats)
            pos = next((i for i, a in enumerate(candidates) if a == arm), -1)
            if pos < 0:
                raise ValidationError.for_field("arm", arm, "must be one of the candidates")
            if not np.array_equal(feats[pos], row):
                raise ValidationError.for_field(
                    "arm_features", row.tolist(), "must equal the arm's row of candidate_features"
                )
            lines = [self._action_line(a, feats[i]) for i, a in enumerate(candidates)]
            lines[pos] = label + lines[pos]
            text = self._shared_line(x) + "\n" + "\n".join(lines)
        ws = self._workspace()
        exs = ws._parse(text)
        try:
            self._lib.learn_multi(ws, exs)
        finally:
            ws._finish_example_multi_ex(exs)
        self.n_updates_ += 1

    # -- state --------------------------------------------------------------------------------
    def _save_model(self) -> bytes:
        fd, path = tempfile.mkstemp(prefix="bandit-vw-", suffix=".model")
        os.close(fd)
        try:
            self._ws.save(path)
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(path)

    def _load_model(self, model: bytes) -> None:
        fd, path = tempfile.mkstemp(prefix="bandit-vw-", suffix=".model")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            self._build(path)
        finally:
            os.unlink(path)

    def _learned_state(self) -> dict[str, Any]:
        if self._closed and self._ws is None:
            raise ConflictError(
                "this VWPolicy was closed; its model cannot be saved",
                field="policy",
                value="closed",
            )
        model = None
        if self._ws is not None:
            model = self._save_model()
            if self.exploration in _RESYNC_ON_SAVE:
                self._load_model(model)
        return {"vw_seed": self.vw_seed_, "args": list(self._args), "model": model}

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        for key in ("vw_seed", "args", "model"):
            if key not in state:
                raise ValidationError.for_field(f"state.{key}", "missing", "is required")
        args, model, vw_seed = state["args"], state["model"], state["vw_seed"]
        if not isinstance(args, Sequence) or list(args) != self._args:
            raise ValidationError.for_field(
                "state.args", args, f"must equal this policy's VW options {self._args}"
            )
        if model is not None and not isinstance(model, bytes | bytearray):
            raise ValidationError.for_field(
                "state.model", type(model).__name__, "must be bytes or None"
            )
        if isinstance(vw_seed, bool) or not isinstance(vw_seed, int | np.integer) or vw_seed < 0:
            raise ValidationError.for_field("state.vw_seed", vw_seed, "must be an int >= 0")
        if model is None:
            old, self._ws = self._ws, None
            self._closed = False
            if old is not None:
                old.finish()
        else:
            self._load_model(bytes(model))  # may raise: nothing is assigned before
        self.vw_seed_ = int(vw_seed)
