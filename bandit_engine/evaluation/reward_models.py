"""Cross-fitted reward models for the direct method and the doubly robust family.

:func:`cross_fit_rewards` produces the (n, K) ``estimated_rewards`` that :func:`dm`, :func:`dr`,
:func:`sndr` and :func:`switch_dr` take. Rows are split into ``n_folds`` folds; the model is fitted
on the other folds and predicts every action for the held-out fold, so no row's prediction comes
from a model that saw its reward (fitting and evaluating on the same rows makes DR over-trust the
model).

Any object with ``fit(X, y)`` and ``predict(X)`` works (scikit-learn regressors, the engine's own
models); an object with ``predict_proba`` is treated as a classifier and its probability of
``reward == 1`` is used. The default, :class:`RidgeRewardModel`, is plain numpy, so the core
library needs no scikit-learn.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConfigError, DataError, ValidationError
from ..policies.base import SeedLike, check_positive, make_rng
from ._validate import FloatArray, IntArray, as_action, as_float_1d, as_float_2d, preview_rows

__all__ = [
    "LogisticRewardModel",
    "RidgeRewardModel",
    "cross_fit_rewards",
    "fit_inputs",
    "fold_assignment",
    "make_reward_model",
    "predict_inputs",
]


class RidgeRewardModel:
    """Ridge regression (numpy only) with scikit-learn's ``fit`` / ``predict`` interface.

    Minimises ``||y - X b - c||^2 + alpha ||b||^2``; the intercept ``c`` is not penalised.

    Parameters
    ----------
    alpha
        L2 penalty, > 0.
    fit_intercept
        Fit ``c`` (by centring) or force it to 0.
    """

    def __init__(self, *, alpha: float = 1.0, fit_intercept: bool = True) -> None:
        self.alpha = check_positive("alpha", alpha)
        self.fit_intercept = bool(fit_intercept)
        self.coef_: FloatArray | None = None
        self.intercept_ = 0.0

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"alpha": self.alpha, "fit_intercept": self.fit_intercept}

    def __repr__(self) -> str:
        return f"RidgeRewardModel(alpha={self.alpha!r}, fit_intercept={self.fit_intercept!r})"

    def fit(self, X: ArrayLike, y: ArrayLike) -> RidgeRewardModel:
        """Fit on features ``X`` (n, p) and targets ``y`` (n,)."""
        Xa, ya = fit_inputs(X, y)
        if self.fit_intercept:
            x_mean = Xa.mean(axis=0)
            y_mean = float(ya.mean())
            Xc, yc = Xa - x_mean, ya - y_mean
        else:
            x_mean, y_mean = np.zeros(Xa.shape[1]), 0.0
            Xc, yc = Xa, ya
        gram = Xc.T @ Xc
        gram[np.diag_indices_from(gram)] += self.alpha
        # alpha > 0 makes the Gram matrix positive definite, so solve cannot hit a singular one.
        self.coef_ = np.linalg.solve(gram, Xc.T @ yc)
        self.intercept_ = y_mean - float(x_mean @ self.coef_)
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predicted rewards (n,)."""
        Xa, coef = predict_inputs(X, self.coef_, "RidgeRewardModel")
        out: FloatArray = Xa @ coef + self.intercept_
        return out


def fit_inputs(X: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """A reward model's validated ``fit`` inputs: ``X`` (n, p) and ``y`` (n,), finite, n >= 1."""
    Xa = as_float_2d("X", X)
    ya = as_float_1d("y", y)
    if ya.shape[0] != Xa.shape[0]:
        raise ValidationError(
            f"X (shape {Xa.shape}) and y (shape {ya.shape}) must have the same rows",
            field="y",
            value=ya.shape,
        )
    if Xa.shape[0] == 0:
        raise DataError("cannot fit on 0 rows", field="X", value=Xa.shape)
    return Xa, ya


def predict_inputs(
    X: ArrayLike, coef: FloatArray | None, model: str
) -> tuple[FloatArray, FloatArray]:
    """A fitted reward model's validated ``predict`` input ``X`` (finite, as many columns as
    ``coef``) and its coefficients; :class:`DataError` if ``model`` is not fitted yet."""
    if coef is None:
        raise DataError(f"{model} is not fitted: call fit first", field="model")
    Xa = as_float_2d("X", X)
    if Xa.shape[1] != coef.shape[0]:
        raise ValidationError(
            f"X must have {coef.shape[0]} columns (as in fit), got shape {Xa.shape}",
            field="X",
            value=Xa.shape,
        )
    return Xa, coef


class _Constant:
    """Stands in for a model when the training rows hold a single reward value (or none)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, X: FloatArray) -> FloatArray:
        return np.full(X.shape[0], self.value)


def _fit(model: Any, X: FloatArray, y: FloatArray, fallback: float) -> Any:
    """Fit a fresh copy of ``model``; a constant when ``y`` is empty or single-valued.

    Classifiers cannot be fitted on one class (common with click rewards around 0.4%), and the
    best prediction from such rows is that value anyway.
    """
    if y.shape[0] == 0:
        return _Constant(fallback)
    if np.all(y == y[0]):
        return _Constant(float(y[0]))
    fresh = copy.deepcopy(model)
    fresh.fit(X, y)
    return fresh


def _predict(model: Any, X: FloatArray) -> FloatArray:
    if isinstance(model, _Constant):
        return model.predict(X)
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        classes = np.asarray(getattr(model, "classes_", np.arange(proba.shape[1])))
        col = np.flatnonzero(classes == 1)
        pred = proba[:, int(col[0]) if col.shape[0] else proba.shape[1] - 1]
    else:
        pred = np.asarray(model.predict(X), dtype=np.float64).reshape(-1)
    if pred.shape[0] != X.shape[0] or not np.isfinite(pred).all():
        raise DataError(
            f"reward model {type(model).__name__} returned {pred.shape[0]} predictions for "
            f"{X.shape[0]} rows, or non-finite ones",
            field="model",
            value=type(model).__name__,
        )
    out: FloatArray = pred
    return out


def _check_model(model: Any, reward: FloatArray) -> None:
    if not (
        hasattr(model, "fit") and (hasattr(model, "predict") or hasattr(model, "predict_proba"))
    ):
        raise ConfigError.for_field(
            "model", type(model).__name__, "must have fit(X, y) and predict(X) or predict_proba(X)"
        )
    if hasattr(model, "predict_proba"):
        bad_mask = (reward != 0.0) & (reward != 1.0)
        if bad_mask.any():
            bad = np.flatnonzero(bad_mask)
            raise ValidationError(
                f"model {type(model).__name__} is a classifier (has predict_proba), which needs "
                f"rewards in {{0, 1}}: {preview_rows(bad, reward[bad], total=reward.shape[0])}; "
                "use a regressor",
                field="reward",
                value=reward[bad[:5]].tolist(),
            )


def cross_fit_rewards(
    *,
    context: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    n_actions: int,
    model: Any = None,
    action_context: ArrayLike | None = None,
    n_folds: int = 5,
    seed: SeedLike = None,
    position: ArrayLike | None = None,
    per_action: bool = False,
) -> FloatArray:
    """Cross-fitted reward predictions for every action on every logged row.

    Parameters
    ----------
    context
        (n, d) context features.
    action, reward
        (n,) logged action indices in [0, n_actions) and rewards.
    n_actions
        K, the number of actions.
    model
        Unfitted regressor (``fit``/``predict``) or classifier (``fit``/``predict_proba``,
        rewards must be 0/1); copied for every fit. Default ``RidgeRewardModel(alpha=1.0)``.
    action_context
        (K, p) action features; replaces the one-hot action encoding in pooled models.
    n_folds
        Number of folds, in [2, n]. Rows are assigned to folds by a seeded permutation.
    seed
        Seed or generator for the fold assignment.
    position
        (n,) 0-based positions; if given, a one-hot position block is added to the features and
        each row is predicted at its own position.
    per_action
        Fit one model per action on its own rows (features: context and position) instead of
        one pooled model on ``[context, action features, position]``. An action with no training
        rows in a fold is predicted by the training fold's mean reward.

    Returns
    -------
    (n, K) array
        ``out[i, a]`` predicts the reward of action ``a`` on row ``i`` (at its position) by a
        model that did not see row ``i``.

    Notes
    -----
    A pooled linear model on ``[context, one-hot(action)]`` has no context-action interaction:
    it ranks actions the same way in every context. Use ``per_action=True``, an
    ``action_context`` with informative features, or a non-linear model when that matters.
    """
    ctx = as_float_2d("context", context)
    n = ctx.shape[0]
    if not isinstance(n_actions, int | np.integer) or isinstance(n_actions, bool) or n_actions < 1:
        raise ConfigError.for_field("n_actions", n_actions, "must be an int >= 1")
    K = int(n_actions)
    act = as_action("action", action, n_actions=K)
    rew = as_float_1d("reward", reward)
    if not (act.shape[0] == rew.shape[0] == n):
        raise ValidationError(
            f"context (shape {ctx.shape}), action (shape {act.shape}) and reward "
            f"(shape {rew.shape}) must have the same number of rows",
            field="action",
            value=(ctx.shape, act.shape, rew.shape),
        )
    if (
        not isinstance(n_folds, int | np.integer)
        or isinstance(n_folds, bool)
        or not (2 <= n_folds <= max(n, 2))
    ):
        raise ConfigError.for_field("n_folds", n_folds, f"must be an int in [2, n={n}]")
    if n < n_folds:
        raise DataError(
            f"cross-fitting with n_folds={n_folds} needs at least {n_folds} rows, got {n}",
            field="context",
            value=n,
        )
    mdl = RidgeRewardModel(alpha=1.0) if model is None else model
    _check_model(mdl, rew)

    if action_context is not None:
        act_feat = as_float_2d("action_context", action_context)
        if act_feat.shape[0] != K:
            raise ValidationError(
                f"action_context must have shape (n_actions={K}, p), got {act_feat.shape}",
                field="action_context",
                value=act_feat.shape,
            )
    else:
        act_feat = np.eye(K)
    pos: IntArray | None = None
    pos_feat: FloatArray = np.zeros((1, 0))
    if position is not None:
        pos = as_action("position", position)
        if pos.shape[0] != n:
            raise ValidationError(
                f"position must have shape (n,) = ({n},), got {pos.shape}",
                field="position",
                value=pos.shape,
            )
        pos_feat = np.eye(int(pos.max()) + 1)
    pos_rows: IntArray = pos if pos is not None else np.zeros(n, dtype=np.int64)

    fold = fold_assignment(n, int(n_folds), seed)

    out = np.empty((n, K))
    for f in range(n_folds):
        test = np.flatnonzero(fold == f)
        train = np.flatnonzero(fold != f)
        base_test = np.hstack((ctx[test], pos_feat[pos_rows[test]]))
        fallback = float(rew[train].mean())
        if per_action:
            base_train = np.hstack((ctx[train], pos_feat[pos_rows[train]]))
            for a in range(K):
                mine = act[train] == a
                fitted = _fit(mdl, base_train[mine], rew[train][mine], fallback)
                out[test, a] = _predict(fitted, base_test)
        else:
            X_train = _features(ctx[train], act_feat[act[train]], pos_feat[pos_rows[train]])
            fitted = _fit(mdl, X_train, rew[train], fallback)
            for a in range(K):
                block = np.broadcast_to(act_feat[a], (test.shape[0], act_feat.shape[1]))
                out[test, a] = _predict(
                    fitted, _features(ctx[test], block, pos_feat[pos_rows[test]])
                )
    return out


def fold_assignment(n: int, n_folds: int, seed: SeedLike = None) -> IntArray:
    """(n,) fold of every row, the one :func:`cross_fit_rewards` uses for the same ``seed``: a
    seeded permutation dealt round-robin, so fold sizes differ by at most one. Callers that
    need out-of-fold quantities beside the predictions (a held-out constant model, a
    calibration table) get the same split from here."""
    rng = make_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % n_folds
    return fold


def _features(ctx: FloatArray, act: NDArray[np.float64], pos: FloatArray) -> FloatArray:
    return np.hstack((ctx, act, pos))


class LogisticRewardModel:
    """L2-penalised logistic regression (numpy, Newton's method) for 0/1 rewards.

    scikit-learn-style ``fit`` / ``predict_proba`` with ``classes_ == [0, 1]``, so
    :func:`~bandit_engine.evaluation.cross_fit_rewards` treats it as a classifier and predicts
    ``P(reward = 1)``. Minimises ``sum log-loss + alpha / 2 * ||b||^2`` (intercept unpenalised).

    Parameters
    ----------
    alpha
        L2 penalty (> 0); it also keeps the fit finite on separable data.
    max_iter
        Newton steps at most (>= 1).
    tol
        Stop when the largest coefficient change is below ``tol``.
    """

    def __init__(self, *, alpha: float = 1.0, max_iter: int = 50, tol: float = 1e-8) -> None:
        self.alpha = check_positive("alpha", alpha)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError.for_field("max_iter", max_iter, "must be an int >= 1")
        self.max_iter = max_iter
        self.tol = check_positive("tol", tol)
        self.coef_: FloatArray | None = None
        self.intercept_ = 0.0
        self.classes_ = np.array([0, 1])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"alpha": self.alpha, "max_iter": self.max_iter, "tol": self.tol}

    def __repr__(self) -> str:
        return f"LogisticRewardModel(alpha={self.alpha!r})"

    def fit(self, X: ArrayLike, y: ArrayLike) -> LogisticRewardModel:
        """Fit on (n, p) features and (n,) 0/1 targets."""
        Xa, ya = fit_inputs(X, y)
        if not np.isin(ya, (0.0, 1.0)).all():
            raise ValidationError.for_field("y", sorted(set(ya.tolist()))[:5], "must be 0 or 1")
        n, p = Xa.shape
        A = np.hstack((np.ones((n, 1)), Xa))
        penalty = np.full(p + 1, self.alpha)
        penalty[0] = 1e-10  # the intercept is (almost) unpenalised; keeps the Hessian invertible
        beta = np.zeros(p + 1)
        for _ in range(self.max_iter):
            eta = np.clip(A @ beta, -35.0, 35.0)
            mu = 1.0 / (1.0 + np.exp(-eta))
            grad = A.T @ (mu - ya) + penalty * beta
            hess = (A * (mu * (1.0 - mu))[:, None]).T @ A
            hess[np.diag_indices_from(hess)] += penalty
            step = np.linalg.solve(hess, grad)
            beta -= step
            if float(np.abs(step).max()) < self.tol:
                break
        self.intercept_ = float(beta[0])
        self.coef_ = beta[1:]
        return self

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """(n, 2): ``P(reward = 0)``, ``P(reward = 1)``."""
        Xa, coef = predict_inputs(X, self.coef_, "LogisticRewardModel")
        p1 = 1.0 / (1.0 + np.exp(-np.clip(Xa @ coef + self.intercept_, -35.0, 35.0)))
        return np.column_stack((1.0 - p1, p1))


def make_reward_model(spec: Any, reward: FloatArray) -> Any:
    if spec is None or spec == "ridge":
        return RidgeRewardModel(alpha=1.0)
    if spec == "logistic":
        if not np.isin(reward, (0.0, 1.0)).all():
            raise ConfigError(
                "reward model 'logistic' needs rewards in {0, 1}, but the log has other values; "
                "use 'ridge'",
                field="reward_model",
                value=spec,
            )
        return LogisticRewardModel(alpha=1.0)
    if isinstance(spec, str):
        raise ConfigError.for_field("reward_model", spec, "must be 'ridge' or 'logistic'")
    return spec  # an object with fit/predict(_proba); cross_fit_rewards validates it
