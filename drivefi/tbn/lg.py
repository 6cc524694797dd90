"""The unrolled 3-TBN as a linear-Gaussian network, compiled into affine Gaussian maps.

The network is a linear structural model in standardised units, z = B z + b + e with
e ~ N(0, diag(sigma^2)). A query (evidence E, interventions do(D), targets T) is answered on the
mutilated graph (edges into D cut, D set like evidence) by a closed form that depends only on the
pattern (E, D, T), never on the values:

    mean(z_T | z_E, do z_D) = A [z_E; z_D] + c,    cov = S   (the same for every query)

When no latent node has an observed descendant (the search's case: past slices observed) this is
the structural model run forward, z_R = (I - B_RR)^-1 (B_RI z_I + b_R + e_R); otherwise it uses the
precision matrix (I - B)^T diag(sigma^-2) (I - B). Compiled maps are cached per pattern, and
evaluating a batch is one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from drivefi.tbn.family import SIGMA_FLOOR
from drivefi.tbn.model import TBNModel
from drivefi.tbn.structure import node
from drivefi.tbn.threads import one_blas_thread


@dataclass(frozen=True)
class AffineGaussian:
    """mean = inputs @ A.T + c; covariance ``cov`` for every row. Raw or standardised units."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    A: np.ndarray
    c: np.ndarray
    cov: np.ndarray

    def mean(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, float) @ self.A.T + self.c


class LinearGaussianTBN:
    """The model's CPDs unrolled over ``slices`` slices (slice 0 initial, then transition CPDs)."""

    def __init__(self, model: TBNModel, slices: int = 3, deterministic_features: bool = False):
        """``deterministic_features``: features and applied actuation get no noise of their own
        (their fitted linear CPD then only serves as the Jacobian), as the predictor treats them."""
        st = model.structure
        self.model = model
        self.slices = slices
        self.nodes = st.nodes(slices)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        n = len(self.nodes)
        self.B = np.zeros((n, n))
        self.b = np.zeros(n)
        self.sigma = np.ones(n)
        self.m = np.zeros(n)
        self.s = np.ones(n)
        for t in range(slices):
            cpds = model.initial if t == 0 else model.transition
            for v in st.vars:
                i = self.index[node(v.name, t)]
                c = cpds[v.name]
                self.b[i] = c.beta[0]
                self.sigma[i] = (
                    SIGMA_FLOOR if deterministic_features and v.deterministic else c.sigma
                )
                self.m[i], self.s[i] = model.mean[v.name], model.std[v.name]
                for (p, lag), w in zip(c.parents, c.beta[1:], strict=True):
                    self.B[i, self.index[node(p, t - lag)]] = w
        self._compile = lru_cache(maxsize=256)(self._compile_uncached)

    # -- pgmpy ------------------------------------------------------------------------------
    def to_pgmpy(self, cut: tuple[str, ...] = ()):
        """The network (standardised units) as a pgmpy LinearGaussianBayesianNetwork; the edges
        into ``cut`` nodes are removed (surgery for do()), cut nodes become N(0, 1) roots."""
        from pgmpy.factors.continuous import LinearGaussianCPD
        from pgmpy.models import LinearGaussianBayesianNetwork

        cut_i = {self.index[c] for c in cut}
        edges, cpds = [], []
        for i, name in enumerate(self.nodes):
            par = [] if i in cut_i else list(np.flatnonzero(self.B[i]))
            edges += [(self.nodes[j], name) for j in par]
            if i in cut_i:
                cpds.append(LinearGaussianCPD(name, [0.0], 1.0))
            else:
                beta = [self.b[i], *self.B[i, par]]
                cpds.append(
                    LinearGaussianCPD(name, beta, self.sigma[i], [self.nodes[j] for j in par])
                )
        net = LinearGaussianBayesianNetwork(edges)
        net.add_nodes_from(self.nodes)
        net.add_cpds(*cpds)
        return net

    # -- compile ----------------------------------------------------------------------------
    def compile(
        self,
        evidence: tuple[str, ...],
        targets: tuple[str, ...],
        do: tuple[str, ...] = (),
        raw: bool = True,
    ) -> AffineGaussian:
        """Affine Gaussian map from (evidence, do values) to the targets; cached per pattern."""
        with one_blas_thread():
            return self._compile(tuple(evidence), tuple(targets), tuple(do), raw)

    def _compile_uncached(self, evidence, targets, do, raw) -> AffineGaussian:
        n = len(self.nodes)
        inp = [self.index[x] for x in (*evidence, *do)]
        if len(set(inp)) != len(inp):
            raise ValueError("a node is both evidence and intervened, or given twice")
        B, b, sig = self.B.copy(), self.b.copy(), self.sigma.copy()
        for x in do:
            i = self.index[x]
            B[i], b[i], sig[i] = 0.0, 0.0, 1.0
        in_set = set(inp)
        rest = [i for i in range(n) if i not in in_set]
        tgt = [rest.index(self.index[x]) for x in targets]
        if self._ancestral(B, rest, inp):
            M = np.linalg.inv(np.eye(len(rest)) - B[np.ix_(rest, rest)])
            A = M @ B[np.ix_(rest, inp)]
            c = M @ b[rest]
            cov = (M * sig[rest] ** 2) @ M.T
        else:
            L = np.eye(n) - B
            prec = L.T @ (L / sig[:, None] ** 2)
            mu = np.linalg.solve(L, b)
            P_rr = prec[np.ix_(rest, rest)]
            cov = np.linalg.inv(P_rr)
            cov = 0.5 * (cov + cov.T)
            A = -cov @ prec[np.ix_(rest, inp)]
            c = mu[rest] - A @ mu[inp]
        A, c, cov = A[tgt], c[tgt], cov[np.ix_(tgt, tgt)]
        if raw:
            ti = [self.index[x] for x in targets]
            st, mt, si, mi = self.s[ti], self.m[ti], self.s[inp], self.m[inp]
            A = st[:, None] * A / si[None, :]
            c = mt + st * c - A @ mi
            cov = st[:, None] * cov * st[None, :]
        return AffineGaussian(tuple(evidence) + tuple(do), tuple(targets), A, c, cov)

    @staticmethod
    def _ancestral(B, rest, inp) -> bool:
        """True when no latent node is an ancestor of an input node."""
        n = len(B)
        reach = np.zeros(n, bool)
        reach[rest] = True
        # propagate "has a latent ancestor" forward through the DAG (nodes are topological)
        for i in range(n):
            if not reach[i]:
                reach[i] = bool(np.any(reach[np.flatnonzero(B[i])]))
        return not np.any(reach[inp])

    def query(self, evidence: dict, targets, do: dict | None = None):
        """Posterior means (Q, T) and covariance (T, T) in raw units for batches of values."""
        do = do or {}
        f = self.compile(tuple(evidence), tuple(targets), tuple(do))
        cols = [np.asarray(v, float) for v in (*evidence.values(), *do.values())]
        x = np.column_stack(np.broadcast_arrays(*cols)) if cols else np.zeros((1, 0))
        return f.mean(x), f.cov
