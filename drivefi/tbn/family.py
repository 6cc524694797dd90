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


def lstsq_sse(X: np.ndarray, y: np.ndarray) -> float:
    """Residual sum of squares of y on [1, X] (numpy; for choosing learned parameters)."""
    mx, sx = X.mean(axis=0), X.std(axis=0)
    sx = np.where(sx > 0, sx, 1.0)
    Z = (X - mx) / sx
    yc = y - y.mean()
    G = Z.T @ Z
    beta = np.linalg.solve(G + 1e-9 * len(y) * np.eye(len(G)), Z.T @ yc)
    r = yc - Z @ beta
    return float(r @ r)
