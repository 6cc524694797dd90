"""Batched do() prediction with a fitted 3-TBN: one step, and rollouts for m-step faults.

A window is two slices, ``prev`` (step k-1) and ``cur`` (step k), each a dict of arrays (Q,) over
queries. ``do={point: values}`` forces an injection point at step k: the point's same-slice
descendants (planning, control, applied actuation, features) are recomputed from their CPDs, then
step k+1 follows from the transition CPDs. Means are the linear-Gaussian means with the model's
deterministic nodes (features, the vehicle interface's guard) and saturations (clips learned from
the data, e.g. throttle in [0, 1]) evaluated exactly; where no clip binds and the features are
observed, they equal the linear-Gaussian network's closed form (:mod:`drivefi.tbn.lg`). Covariances
come from that closed form, compiled once per intervention pattern (and rollout length).

A rollout slides the window: the predicted slice becomes ``cur``, the fault is re-applied while it
lasts, and it runs ``horizon`` steps (past the fault's end, where many hazards show).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from drivefi.tbn.lg import LinearGaussianTBN
from drivefi.tbn.model import TBNModel
from drivefi.tbn.structure import SAFETY_STATE, STATE, Context, node
from drivefi.tbn.threads import one_blas_thread

Slice = dict[str, np.ndarray]
NAT = "nat:"  # a forced point's natural value, kept for its module's memory edge


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    parents: tuple[tuple[str, int], ...]
    b: float
    w: np.ndarray
    lo: float
    hi: float


@dataclass
class Rollout:
    """Predicted means of the safety state at steps k+1..k+H, and their covariance.

    ``mean[var]`` has shape (Q, H); ``cov`` (H, 5, 5) over SAFETY_STATE (shared by all queries of
    one point and duration); ``draws`` > 0 when a Bayesian model's posterior was integrated.
    """

    mean: dict[str, np.ndarray]
    cov: np.ndarray
    vars: tuple[str, ...] = SAFETY_STATE


class Predictor:
    """Compiled do() predictions of a fitted model for one scenario's context."""

    def __init__(self, model: TBNModel, context: Context | None = None):
        self.model = model
        self.ctx = context or model.context()
        self.st = model.structure
        self.kept = {p for p in self.st.points if self.st.keeps_forced(p)}
        self.ops = {v.name: self._op(v.name) for v in self.st.vars}
        self.lg = LinearGaussianTBN(model, 3, deterministic_features=True)
        self._plan = lru_cache(maxsize=64)(self._plan_uncached)
        self._rcov = lru_cache(maxsize=256)(self._rollout_cov)
        self._res: dict[int, dict[str, np.ndarray]] = {}
        self._batches = self._schedule()

    def _schedule(self) -> list:
        """The slice's non-exogenous variables in order, runs of linear CPDs that do not read
        each other within the slice gathered into one :class:`_Batch` (a stack's many sensor
        points are evaluated together: one array operation per parent slot, not per edge)."""
        out: list = []
        run: list[Op] = []

        def close():
            if len(run) > 1:
                out.append(_Batch(run, self.kept))
            else:
                out.extend(run)
            run.clear()

        for v in self.st.vars:
            if v.kind == "exo":
                continue
            op = self.ops[v.name]
            linear = op.kind in ("state", "point") and len(op.parents) > 0
            names = {o.name for o in run}
            if linear and not any(lag == 0 and p in names for p, lag in op.parents):
                run.append(op)
                continue
            close()
            if linear:
                run.append(op)
            else:
                out.append(op)
        close()
        return out

    def _op(self, name: str) -> Op:
        v = self.st.by_name[name]
        b, w, _ = self.model.raw_cpd(name)
        lo, hi = self.model.saturation.get(name, (None, None))
        lo = -np.inf if lo is None else lo
        hi = np.inf if hi is None else hi
        return Op(name, v.kind, v.parents, b, w, lo, hi)

    def _eval(self, op: Op, cur: Slice, prev: Slice, noise: Slice | None = None) -> np.ndarray:
        if op.kind in ("feature", "applied"):
            return self.st.features[op.name](cur, prev, self.ctx)
        out = op.b
        for (p, lag), w in zip(op.parents, op.w, strict=True):
            if lag == 0:
                x = cur[p]
            elif p == op.name and p not in self.kept:  # the module's memory: its natural output
                x = prev.get(NAT + p, prev[p])
            else:
                x = prev[p]
            t = w * x
            if out is op.b or np.shape(out) != np.shape(t):
                out = out + t
            else:  # in place: the same sums in the same order, without a new array per parent
                np.add(out, t, out=out)
        clip = op.lo > -np.inf or op.hi < np.inf
        out = np.clip(out, op.lo, op.hi) if clip else out
        if noise is not None and op.name in noise:
            out = out + noise[op.name]
            out = np.clip(out, op.lo, op.hi) if clip else out
        if op.kind == "ctrl":  # a non-finite input leaves the controller's command unchanged
            out = np.where(np.isfinite(out), out, prev[op.name])
        return out

    def _plan_uncached(self, do: tuple[str, ...]) -> tuple[Op, ...]:
        return tuple(self.ops[n] for n in self.st.descendants(do))

    # -- one step ---------------------------------------------------------------------------
    def intervene(
        self, prev: Slice, cur: Slice, do: dict[str, np.ndarray], active=None, noise=None
    ) -> Slice:
        """``cur`` with do() applied (where ``active``) and the points' descendants recomputed."""
        out = dict(cur)
        q = len(next(iter(cur.values())))
        for p, val in do.items():
            if p not in self.st.points:
                raise ValueError(f"do(): {p} is not an injection point")
            val = np.broadcast_to(np.asarray(val, float), (q,))
            out[NAT + p] = cur[p]
            out[p] = val if active is None else np.where(active, val, cur[p])
        for op in self._plan(tuple(sorted(do))):
            new = self._eval(op, out, prev, noise)
            out[op.name] = new if active is None else np.where(active, new, cur[op.name])
        return out

    def step(
        self,
        prev: Slice,
        cur: Slice,
        exo: Slice,
        only: tuple[str, ...] | None = None,
        noise: Slice | None = None,
    ) -> Slice:
        """The next slice's means from a full window (``exo``: the next step's exogenous inputs).
        ``only=STATE`` computes just the kinematics (the hot path of a one-step search)."""
        nxt: Slice = {e: exo[e] for e in self.st.exo}
        if only is None:
            for item in self._batches:
                if isinstance(item, _Batch):
                    item.eval(self, nxt, cur, noise)
                else:
                    nxt[item.name] = self._eval(item, nxt, cur, noise)
            return nxt
        for v in self.st.vars:
            if v.kind == "exo":
                continue
            if v.name not in only:
                continue
            nxt[v.name] = self._eval(self.ops[v.name], nxt, cur, noise)
        return nxt

    def predict(
        self,
        prev: Slice,
        cur: Slice,
        exo: Slice,
        do: dict[str, np.ndarray] | None = None,
        targets: tuple[str, ...] = STATE,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Means (dict of (Q,)) and covariance (T, T) of slice k+1's ``targets`` under do()."""
        do = do or {}
        cur2 = self.intervene(prev, cur, do) if do else cur
        only = targets if set(targets) <= set(STATE) else None
        nxt = self.step(prev, cur2, exo, only)
        return {t: nxt[t] for t in targets}, self.one_step_cov(tuple(sorted(do)), targets)

    def one_step_cov(self, do: tuple[str, ...], targets: tuple[str, ...]) -> np.ndarray:
        """Covariance of slice 2's targets given slices 0 and 1 (minus do's descendants)."""
        lat = set(self.st.descendants(do))
        names = self.st.names
        ev = [node(n, 0) for n in names]
        ev += [node(n, 1) for n in names if n not in lat and n not in do]
        ev += [node(e, 2) for e in self.st.exo]
        f = self.lg.compile(
            tuple(ev), tuple(node(t, 2) for t in targets), tuple(node(d, 1) for d in do)
        )
        return f.cov

    # -- rollout ----------------------------------------------------------------------------
    def rollout(
        self,
        prev: Slice,
        cur: Slice,
        exo_seq: list[Slice],
        do: dict[str, np.ndarray] | None = None,
        duration: int | np.ndarray = 1,
        keep: tuple[str, ...] = SAFETY_STATE,
        anchor: dict[str, np.ndarray] | None = None,
        golden=None,
    ) -> Rollout:
        """Roll H = len(exo_seq) steps from the window (k-1, k); the fault holds on steps
        k..k+duration-1 (``duration`` scalar or per query).

        ``anchor`` (the golden run's ``keep`` variables at k+1..k+H, (Q, H) each) predicts the
        fault's effect instead of the trajectory: golden + rollout(fault) - rollout(no fault), both
        rolled in one batch, so the model's own drift over the horizon cancels.

        ``golden`` = (GoldenWindows, k) predicts counterfactually instead (abduction): every
        stochastic node at steps k..k+H gets the residual the golden run had there (its value
        minus the CPD's mean given the golden parents), e.g. the step-indexed sensor noise that a
        faulty run sees too; without a fault the rollout reproduces the golden run."""
        do = do or {}
        q = len(next(iter(cur.values())))
        dur = np.broadcast_to(np.asarray(duration), (q,))
        if golden is not None:
            noise = self.residual_seq(golden[0], golden[1], len(exo_seq))
            out = self._roll(prev, cur, exo_seq, do, dur, keep, noise)
            if "v" in out:
                out["v"] = np.maximum(out["v"], 0.0)
        elif anchor is None or not do:
            out = self._roll(prev, cur, exo_seq, do, dur, keep)
        else:
            two = lambda d: {n: np.concatenate([a, a]) for n, a in d.items()}  # noqa: E731
            do2 = {
                p: np.concatenate([np.broadcast_to(np.asarray(v, float), (q,))] * 2)
                for p, v in do.items()
            }
            dur2 = np.concatenate([dur, np.zeros(q, dur.dtype)])
            both = self._roll(two(prev), two(cur), [two(e) for e in exo_seq], do2, dur2, keep)
            out = {v: anchor[v] + both[v][:q] - both[v][q:] for v in keep}
            if "v" in out:
                out["v"] = np.maximum(out["v"], 0.0)
        m = int(dur.max()) if do else 0
        cov = self.rollout_cov(tuple(sorted(do)), m, len(exo_seq), keep)
        return Rollout(out, cov, keep)

    def residuals(self, golden) -> dict[str, np.ndarray]:
        """The golden run's residual of every stochastic node at each of its steps (0 at the
        first), cached per golden run."""
        key = id(golden)
        if key not in self._res:
            cols = golden.cols
            cur = {n: c[1:] for n, c in cols.items()}
            prev = {n: c[:-1] for n, c in cols.items()}
            out = {}
            for v in self.st.vars:
                if v.kind in ("state", "point", "ctrl"):
                    e = cur[v.name] - self._eval(self.ops[v.name], cur, prev)
                    out[v.name] = np.concatenate([[0.0], np.nan_to_num(e)])
            self._res[key] = out
        return self._res[key]

    def residual_seq(self, golden, k, h: int) -> list[Slice]:
        """Residuals at steps k..k+h, one slice dict of (Q,) arrays per step."""
        res = self.residuals(golden)
        k = np.asarray(k, np.int64)
        out = []
        for j in range(h + 1):
            i = k + j - golden.k0
            ok = (i >= 0) & (i < len(golden.k))
            i = np.clip(i, 0, len(golden.k) - 1)
            out.append({n: np.where(ok, e[i], 0.0) for n, e in res.items()})
        return out

    def _roll(self, prev, cur, exo_seq, do, dur, keep, noise=None) -> dict[str, np.ndarray]:
        q, h = len(dur), len(exo_seq)
        out = {v: np.empty((q, h)) for v in keep}
        for j in range(h):
            if do:
                active = None if np.all(dur > j) else dur > j
                if active is None or active.any():
                    cur = self.intervene(prev, cur, do, active, None if noise is None else noise[j])
            nxt = self.step(prev, cur, exo_seq[j], None, None if noise is None else noise[j + 1])
            for v in keep:
                out[v][:, j] = nxt[v]
            prev, cur = cur, nxt
        return out

    def rollout_cov(self, do: tuple[str, ...], m: int, h: int, keep=SAFETY_STATE) -> np.ndarray:
        with one_blas_thread():
            return self._rcov(do, int(m), int(h), tuple(keep))

    def _rollout_cov(self, do, m, h, keep) -> np.ndarray:
        """Covariance of the kept variables at steps 1..h, by propagating the linear-Gaussian
        transition (standardised) with the window's two slices' joint covariance."""
        lg = self.lg
        names = self.st.names
        nv = len(names)
        idx1 = [lg.index[node(n, 1)] for n in names]
        idx2 = [lg.index[node(n, 2)] for n in names]
        exo = {self.st.index[e] for e in self.st.exo}
        # next slice from the current one: z2 = T z1 + e2, e2 ~ N(0, Q2) (exo given: zero variance)
        B = lg.B
        M2 = np.linalg.inv(np.eye(nv) - B[np.ix_(idx2, idx2)])
        T = M2 @ B[np.ix_(idx2, idx1)]
        sig2 = np.array([0.0 if i in exo else lg.sigma[j] for i, j in enumerate(idx2)])
        Q2 = (M2 * sig2**2) @ M2.T
        # do(): forced points exact, their descendants from the window: z1' = R [z0; z1] + e
        lat = self.st.descendants(do)
        d_i = [self.st.index[d] for d in do]
        l_i = [self.st.index[x] for x in lat]
        Bm = B[np.ix_(idx1, idx1)].copy()
        Bp = B[np.ix_(idx1, [lg.index[node(n, 0)] for n in names])]
        Sw = np.zeros((2 * nv, 2 * nv))  # joint covariance of (prev, cur); evidence is exact
        C = Sw[nv:, nv:]  # cov(cur)
        res = np.zeros((h, len(keep), len(keep)))
        kk = [self.st.index[x] for x in keep]
        s = np.array([self.model.std[x] for x in keep])
        for j in range(h):
            if do and j < m:
                R = np.hstack([np.zeros((nv, nv)), np.eye(nv)])
                R[d_i] = 0.0
                if l_i:
                    Ml = np.linalg.inv(np.eye(len(l_i)) - Bm[np.ix_(l_i, l_i)])
                    keep_i = [i for i in range(nv) if i not in l_i]
                    rows = Ml @ np.hstack([Bp[l_i], np.zeros((len(l_i), nv))])
                    rows[:, nv + np.array(keep_i)] += Ml @ Bm[np.ix_(l_i, keep_i)]
                    R[l_i] = rows
                    noise = np.zeros((nv, nv))
                    sl = np.array([lg.sigma[idx1[i]] for i in l_i])
                    noise[np.ix_(l_i, l_i)] = (Ml * sl**2) @ Ml.T
                else:
                    noise = np.zeros((nv, nv))
                C1 = R @ Sw @ R.T + noise
                X01 = Sw[:nv] @ R.T  # cov(prev, cur')
                Sw = np.block([[Sw[:nv, :nv], X01], [X01.T, C1]])
                C = Sw[nv:, nv:]
            C1 = C
            C2 = T @ C1 @ T.T + Q2
            if do and j + 1 < m:  # the next step is forced again: it needs the joint covariance
                X12 = C1 @ T.T
                Sw = np.block([[C1, X12], [X12.T, C2]])
                C = Sw[nv:, nv:]
            else:  # after the fault, the window's past is no longer read: cov(cur) alone
                C = C2
            res[j] = s[:, None] * C2[np.ix_(kk, kk)] * s[None, :]
        return res


class _Batch:
    """Linear CPDs of one slice evaluated together, with the same arithmetic as
    :meth:`Predictor._eval` on each: intercept plus weight times parent, parent by parent in the
    CPD's order (slot j for the CPDs that have a j-th parent), then the clip, the noise and the
    clip again. Falls back to one CPD at a time when the parents' shapes differ."""

    def __init__(self, ops: list[Op], kept: set[str]):
        self.ops = sorted(ops, key=lambda o: -len(o.parents))  # (stable) most parents first
        n = len(self.ops)
        width = len(self.ops[0].parents)
        self.count = [sum(len(o.parents) > j for o in self.ops) for j in range(width)]
        self.b = np.array([o.b for o in self.ops], float)[:, None]
        self.w = np.zeros((n, width))
        # per slot: (name, lag, memory) of each CPD's j-th parent
        self.slots = []
        for j in range(width):
            self.slots.append(
                [
                    (p, lag, lag == 1 and p == o.name and p not in kept)
                    for o in self.ops[: self.count[j]]
                    for p, lag in [o.parents[j]]
                ]
            )
            for i, o in enumerate(self.ops[: self.count[j]]):
                self.w[i, j] = o.w[j]
        self.lo = np.array([o.lo for o in self.ops])[:, None]
        self.hi = np.array([o.hi for o in self.ops])[:, None]
        self.clip = bool(np.any(np.isfinite(self.lo)) or np.any(np.isfinite(self.hi)))

    def eval(self, pred: Predictor, cur: Slice, prev: Slice, noise: Slice | None) -> None:
        """Set every CPD's value in ``cur``."""
        out = None
        for j, slot in enumerate(self.slots):
            xs = [
                cur[p] if lag == 0 else (prev.get(NAT + p, prev[p]) if mem else prev[p])
                for p, lag, mem in slot
            ]
            try:
                x = np.stack(xs) if len(xs) > 1 else np.asarray(xs[0])[None]
            except ValueError:  # parents of different shapes
                x = None
            if x is None or (out is not None and out.shape[1:] != x.shape[1:]):
                for op in self.ops:
                    cur[op.name] = pred._eval(op, cur, prev, noise)
                return
            n = self.count[j]
            t = self.w[:n, j, None] * x
            if out is None:
                out = self.b + t
            else:
                out[:n] += t
        if self.clip:
            out = np.clip(out, self.lo, self.hi)
        if noise is not None:
            hit = [i for i, o in enumerate(self.ops) if o.name in noise]
            for i in hit:
                out[i] += noise[self.ops[i].name]
            if hit and self.clip:
                out = np.clip(out, self.lo, self.hi)
        for i, op in enumerate(self.ops):
            cur[op.name] = out[i]


class PosteriorPredictor:
    """A Bayesian model's predictions integrated over ``draws`` posterior draws: the mean of the
    draws' means, and the mean covariance plus the covariance of the means (per query)."""

    def __init__(
        self, model: TBNModel, context: Context | None = None, draws: int = 16, seed: int = 0
    ):
        n = model.draws
        if n == 0:
            raise ValueError("model has no posterior draws (fitted with --method mle)")
        pick = np.random.default_rng(seed).choice(n, min(draws, n), replace=False)
        self.members = [Predictor(model.with_draw(int(d)), context) for d in pick]
        self.model = model

    def rollout(
        self, prev, cur, exo_seq, do=None, duration=1, keep=SAFETY_STATE, anchor=None, golden=None
    ) -> Rollout:
        outs = [
            m.rollout(prev, cur, exo_seq, do, duration, keep, anchor, golden) for m in self.members
        ]
        x = np.stack([np.stack([o.mean[v] for v in keep], -1) for o in outs])  # (D, Q, H, 5)
        mean = x.mean(axis=0)
        dev = x - mean
        between = np.einsum("dqhi,dqhj->qhij", dev, dev) / len(outs)
        cov = np.mean([o.cov for o in outs], axis=0)[None] + between
        return Rollout({v: mean[..., i] for i, v in enumerate(keep)}, cov, keep)
