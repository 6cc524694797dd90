"""One CPD's maximum-likelihood fit (pgmpy) on standardised columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

SIGMA_FLOOR = 1e-6  # standardised units: near-deterministic kinematics stay well defined


def fit_family(z: pd.DataFrame, target: str, parents: list[str]) -> tuple[np.ndarray, float]:
    """pgmpy MLE of one CPD on standardised data: (beta, sigma)."""
    from pgmpy.models import LinearGaussianBayesianNetwork
    from pgmpy.parameter_estimator import LinearGaussianMLE

    if not parents:
        y = z[target].to_numpy(float)
        return np.array([y.mean()]), float(y.std())
    net = LinearGaussianBayesianNetwork([(p, target) for p in parents])
    est = LinearGaussianMLE(std_estimator="mle")
    est.fit(net, z[[*parents, target]])
    cpd = next(c for c in est.parameters_ if c.variable == target)
    order = [list(cpd.evidence).index(p) for p in parents]
    beta = np.concatenate([[cpd.beta[0]], np.asarray(cpd.beta[1:])[order]])
    return beta, float(cpd.std)


def fit_arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The same fit as :func:`fit_family` on arrays (x (n, k) of the parents' standardised
    columns in the CPD's order, y the target's): pgmpy's ``LinearGaussianMLE`` is scikit-learn's
    ``LinearRegression`` on the family's columns and the residuals' standard deviation (ddof 0,
    pandas); this calls them directly, without building a network and data frames per CPD, on
    an array of the layout pgmpy hands over (column-major), so the numbers are the same bits."""
    if x.shape[1] == 0:
        return np.array([y.mean()]), float(y.std())
    from sklearn.linear_model import LinearRegression

    x = np.asfortranarray(x)
    lm = LinearRegression().fit(x, y)
    residuals = pd.Series(y) - lm.predict(x)
    return np.append([lm.intercept_], lm.coef_), float(residuals.std(ddof=0))


def lstsq_sse(X: np.ndarray, y: np.ndarray) -> float:
    """Residual sum of squares of y on [1, X] with standardised X and a tiny ridge (numpy; for
    choosing learned parameters), from the centred moment matrix of [X, y] in one product."""
    n, k = X.shape
    A = np.empty((n, k + 1))
    A[:, :k], A[:, k] = X, y
    A -= A.mean(axis=0)
    return moments_sse(A.T @ A, n)


def moments_sse(M: np.ndarray, n: int) -> float:
    """:func:`lstsq_sse` from the centred moment matrix ``M`` of [X, y] over ``n`` rows."""
    k = M.shape[0] - 1
    sx = np.sqrt(np.diag(M)[:k] / n)
    sx = np.where(sx > 0, sx, 1.0)
    G = M[:k, :k] / np.outer(sx, sx)  # Z'Z of the standardised columns
    b = M[:k, k] / sx  # Z'y
    beta = np.linalg.solve(G + 1e-9 * n * np.eye(k), b)
    return float(M[k, k] - 2.0 * beta @ b + beta @ G @ beta)
