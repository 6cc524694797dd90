"""The fitted 3-TBN: CPD parameters in standardised units, variable scaling and saturations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivefi.tbn.structure import Context, Structure


@dataclass
class CPD:
    """Linear-Gaussian CPD in standardised units: z = beta[0] + beta[1:] . z_parents + N(0, sigma^2).

    ``draws`` (Bayesian fits) holds posterior draws: 'beta' (D, P+1) and 'sigma' (D,).
    """

    var: str
    parents: tuple[tuple[str, int], ...]
    beta: np.ndarray
    sigma: float
    rows: int = 0
    draws: dict[str, np.ndarray] | None = None

    def with_draw(self, d: int) -> CPD:
        if not self.draws:
            return self
        return CPD(
            self.var, self.parents, self.draws["beta"][d], float(self.draws["sigma"][d]), self.rows
        )


@dataclass
class TBNModel:
    """Everything a prediction needs; ``transition`` CPDs serve slices 1 and 2, ``initial`` slice 0."""

    method: str
    mean: dict[str, float]
    std: dict[str, float]
    transition: dict[str, CPD]
    initial: dict[str, CPD]
    saturation: dict[str, tuple[float | None, float | None]]
    contexts: dict[str, dict] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    holdout: dict = field(default_factory=dict)
    structure: Structure | None = None

    @property
    def scenarios(self) -> list[str]:
        return list(self.summary.get("scenarios", []))

    @property
    def draws(self) -> int:
        """Number of posterior draws (0 for an MLE model)."""
        c = next(iter(self.transition.values()))
        return 0 if not c.draws else len(c.draws["sigma"])

    def with_draw(self, d: int) -> TBNModel:
        """The model with every CPD set to posterior draw d."""
        return TBNModel(
            self.method,
            self.mean,
            self.std,
            {k: c.with_draw(d) for k, c in self.transition.items()},
            {k: c.with_draw(d) for k, c in self.initial.items()},
            self.saturation,
            self.contexts,
            self.summary,
            self.holdout,
            self.structure,
        )

    def context(self, scenario: str | None = None) -> Context:
        name = scenario or next(iter(self.contexts))
        return Context.of(self.contexts[name])

    def raw_cpd(self, var: str, first_slice: bool = False) -> tuple[float, np.ndarray, float]:
        """(intercept, weights, sigma) in raw units."""
        c = (self.initial if first_slice else self.transition)[var]
        sy = self.std[var]
        sx = np.array([self.std[p] for p, _ in c.parents])
        mx = np.array([self.mean[p] for p, _ in c.parents])
        w = c.beta[1:] * sy / sx if len(sx) else np.zeros(0)
        b = self.mean[var] + sy * c.beta[0] - float(np.dot(w, mx))
        return b, w, c.sigma * sy
