"""Label-free quantities computed from features: density ratio, DEV risk, alignment.

Users cannot see target labels, so picking a checkpoint for the target lab has to rely
on labelled *source* validation tiles re-weighted towards the target distribution:

- the density ratio ``w(x) = p_target(x) / p_source(x)`` comes from a domain classifier
  on features (Bickel et al. 2007): ``w = (n_s / n_t) * P(target | x) / P(source | x)``;
- importance-weighted validation (IWV, Sugiyama et al. 2007) estimates the target risk
  as the weighted mean of per-tile source validation losses;
- Deep Embedded Validation (DEV, You et al., ICML 2019) adds a control variate that
  removes most of IWV's variance: with ``L_i = w_i l_i`` and
  ``eta = -Cov(L, w) / Var(w)``, ``risk = mean(L) + eta * mean(w) - eta``.

The same classifier gives the proxy A-distance (Ben-David et al. 2007) between two
feature sets, ``2 (1 - 2 err)``; the linear MMD is the squared distance between the
standardised feature means. Both are alignment measures per tapped layer.

The classifier is a ridge logistic regression (Newton steps) on the leading principal
components of the pooled, standardised features, cross-fitted over two folds so no tile
is scored by a classifier that saw it. Everything is float64 numpy and deterministic.
"""

from __future__ import annotations

import numpy as np

N_COMPONENTS = 16  # principal components fed to the domain classifier
RIDGE = 1.0  # L2 penalty of the logistic regression (on standardised components)
PROB_CLIP = 0.01  # P(target | x) is clipped to [0.01, 0.99]: weights stay <= 99 n_s / n_t


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: need (n >= 2, d) features, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features are not finite")
    return x


def _components(x: np.ndarray, k: int) -> np.ndarray:
    """Standardise columns, project on the top-k principal components, standardise again."""
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    if x.shape[1] > k:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        x = x @ vt[:k].T
        x = x / (x.std(axis=0) + 1e-8)
    return x


def _fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float, iters: int = 30) -> np.ndarray:
    """Ridge logistic regression by Newton's method; returns [bias, weights...]."""
    xb = np.hstack([np.ones((x.shape[0], 1)), x])
    beta = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], ridge)
    penalty[0] = 0.0  # the bias is not shrunk
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ beta, -30, 30)))
        grad = xb.T @ (p - y) + penalty * beta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def domain_probabilities(
    source: np.ndarray, target: np.ndarray, *, seed: int = 0, ridge: float = RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted ``P(target | x)`` for every source and every target row.

    Returns:
        ``(p_source_rows, p_target_rows)``, each from a classifier that did not see that row.
    """
    source = _as_features(source, "source")
    target = _as_features(target, "target")
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"feature sizes differ: {source.shape[1]} vs {target.shape[1]}")
    x = _components(np.vstack([source, target]), N_COMPONENTS)
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):  # stratified: both folds hold both domains
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(idx.size) % 2
    prob = np.empty(len(y))
    for k in (0, 1):
        train, test = fold != k, fold == k
        beta = _fit_logistic(x[train], y[train], ridge)
        prob[test] = 1.0 / (1.0 + np.exp(-np.clip(beta[0] + x[test] @ beta[1:], -30, 30)))
    return prob[: len(source)], prob[len(source) :]


def density_ratio(
    source: np.ndarray, target: np.ndarray, *, seed: int = 0, ridge: float = RIDGE
) -> np.ndarray:
    """Estimated ``p_target(x) / p_source(x)`` at every source row (mean about 1)."""
    p_source, _ = domain_probabilities(source, target, seed=seed, ridge=ridge)
    p = np.clip(p_source, PROB_CLIP, 1 - PROB_CLIP)
    n_s, n_t = len(p_source), np.asarray(target).shape[0]
    return (n_s / n_t) * p / (1 - p)


def iwv_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Importance-weighted validation risk, self-normalised: ``sum(w l) / sum(w)``."""
    losses, weights = _check_pairs(losses, weights)
    return float((weights * losses).sum() / weights.sum())


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep Embedded Validation risk (You et al. 2019, Algorithm 1, control variate)."""
    losses, weights = _check_pairs(losses, weights)
    weighted = weights * losses
    var_w = weights.var(ddof=1) if weights.size > 1 else 0.0
    if var_w <= 0:
        return float(weighted.mean())
    eta = -np.cov(weighted, weights, ddof=1)[0, 1] / var_w
    return float(weighted.mean() + eta * weights.mean() - eta)


def _check_pairs(losses: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    losses = np.asarray(losses, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if losses.shape != weights.shape or losses.size == 0:
        raise ValueError(f"losses {losses.shape} and weights {weights.shape} must match")
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("importance weights must be >= 0 and not all 0")
    return losses, weights


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, seed: int = 0) -> float:
    """``2 (1 - 2 err)`` with ``err`` the cross-fitted balanced error of a domain classifier.

    0: the domains cannot be told apart from these features; 2: perfectly separable.
    (Clipped below at 0: a classifier worse than chance means "indistinguishable".)
    """
    p_source, p_target = domain_probabilities(source, target, seed=seed)
    err = 0.5 * ((p_source >= 0.5).mean() + (p_target < 0.5).mean())
    return float(max(0.0, 2.0 * (1.0 - 2.0 * err)))


def linear_mmd(source: np.ndarray, target: np.ndarray) -> float:
    """Squared distance between the domain means after pooled standardisation, per dimension."""
    source = _as_features(source, "source")
    target = _as_features(target, "target")
    pooled = np.vstack([source, target])
    scale = pooled.std(axis=0) + 1e-8
    delta = (source.mean(axis=0) - target.mean(axis=0)) / scale
    return float((delta**2).mean())
