"""Bayesian fit: each CPD its own pymc model, posterior draws of its weights and noise kept.

Model per CPD (standardised units): beta ~ N(0, 10^2), sigma ~ HalfNormal(1),
y ~ N(beta_0 + X beta_1:, sigma^2); NUTS from the least-squares solution. The CPD's point
estimate is the posterior mean; ``draws`` keeps ``draws`` samples for predictions that integrate
over the posterior. Deterministic nodes (features, applied actuation) keep their least-squares
fit (no uncertainty to speak of).
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

from drivefi.tbn.family import SIGMA_FLOOR, fit_family
from drivefi.tbn.model import CPD


class BayesFitter:
    def __init__(
        self,
        draws: int = 200,
        tune: int = 300,
        max_rows: int = 5000,
        seed: int = 0,
        structure=None,
    ):
        self.draws, self.tune, self.max_rows, self.seed = draws, tune, max_rows, seed
        self.structure = structure

    def __call__(self, var: str, parents, z: pd.DataFrame, target: str, pcols: list[str]) -> CPD:
        beta0, sig0 = (
            fit_family(z, target, pcols)
            if pcols
            else (np.array([z[target].mean()]), float(z[target].std()))
        )
        sig0 = max(sig0, SIGMA_FLOOR)
        kind = self.structure.by_name[var].kind
        if kind in ("exo", "feature", "applied"):
            d = self.draws
            draws = {"beta": np.tile(beta0, (d, 1)), "sigma": np.full(d, sig0)}
            return CPD(var, parents, beta0, sig0, len(z), draws)
        rng = np.random.default_rng([self.seed, zlib.crc32(var.encode())])
        if len(z) > self.max_rows:
            z = z.iloc[np.sort(rng.choice(len(z), self.max_rows, replace=False))]
        X = z[pcols].to_numpy(float)
        y = z[target].to_numpy(float)
        beta, sigma = posterior(X, y, beta0, sig0, self.draws, self.tune, int(rng.integers(2**31)))
        sigma = np.maximum(sigma, SIGMA_FLOOR)
        return CPD(
            var,
            parents,
            beta.mean(axis=0),
            float(sigma.mean()),
            len(z),
            {"beta": beta, "sigma": sigma},
        )


def posterior(X, y, beta0, sig0, draws: int, tune: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """NUTS draws of (beta (D, P+1), sigma (D,)) for y = beta_0 + X beta_1: + N(0, sigma^2)."""
    import pymc as pm

    logging.getLogger("pymc").setLevel(logging.ERROR)
    p = X.shape[1]
    with pm.Model():
        b = pm.Normal("beta", 0.0, 10.0, shape=p + 1)
        s = pm.HalfNormal("sigma", 1.0)
        mu = b[0] + (pm.math.dot(X, b[1:]) if p else 0.0)
        pm.Normal("y", mu, s, observed=y)
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=1,
            cores=1,
            random_seed=seed,
            initvals={"beta": np.asarray(beta0, float), "sigma": float(sig0)},
            init="adapt_diag",
            progressbar=False,
            compute_convergence_checks=False,
        )
    post = idata.posterior
    return post["beta"].values.reshape(-1, p + 1), post["sigma"].values.reshape(-1)
