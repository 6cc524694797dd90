"""Safety potential of predicted states and the probability of a hazard.

delta = d_safe - d_stop is evaluated at the predicted mean state with the simulator's own
Runge-Kutta d_stop and d_safe, assembled by :func:`drivefi.world.safety.safety` in the embedded
road's lane frame (objects at the same step, from the scripted actors). P(hazard) is
by linearisation: delta's gradient g over the safety state (s, lane_offset, heading_error, v, phi)
by forward differences, sd = sqrt(g' S g) with S the predicted covariance, and

    P(delta_lon <= 0) = Phi(-mean_lon / sd_lon), likewise lateral,
    P(hazard) = 1 - (1 - P_lon) (1 - P_lat)    (the two treated as independent).

Over a rollout, the step with the highest P(hazard) (ties: the lowest delta) scores the fault.
With ``gradient=False`` the probability is a step at delta = 0 (no extra evaluations). Gradients are
only evaluated for candidates whose delta is within 10 predicted standard deviations of 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from drivefi.tbn.structure import SAFETY_STATE
from drivefi.world.safety import EgoState, Objects, StopParams
from drivefi.world.safety import safety as lane_safety

STEPS = (0.05, 0.01, 0.002, 0.05, 0.002)  # forward-difference steps for SAFETY_STATE
SD_FLOOR = 1e-9
SCREEN = 10.0  # standard deviations beyond which P(delta <= 0) is taken as 0 or 1


@dataclass
class Scores:
    """Per query: the worst predicted step's deltas and P(hazard), and which step (1-based)."""

    delta_lon: np.ndarray
    delta_lat: np.ndarray
    p_hazard: np.ndarray
    step: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        return np.minimum(self.delta_lon, self.delta_lat)


class SafetyModel:
    """d_stop/d_safe of ego states of a scenario at given steps (actors from the bridge)."""

    def __init__(self, scenario):
        from drivefi.bridges.embedded import EmbeddedBridge

        self.bridge = EmbeddedBridge(scenario)
        self.vp = scenario.ego.vehicle
        self.stop = StopParams.of(self.vp)

    def delta(self, k, s, lane_offset, heading_error, v, phi) -> tuple[np.ndarray, np.ndarray]:
        """(delta_lon, delta_lat) of states at steps k (arrays of one shape)."""
        b = self.bridge
        k = np.asarray(k, np.int64)
        shape = np.broadcast(k, s).shape
        k, s, e, psi, v, phi = (
            np.broadcast_to(x, shape).ravel() for x in (k, s, lane_offset, heading_error, v, phi)
        )
        ego = EgoState(s, b.lane.to_ref(e), psi, v, phi)  # the road's d: the bridge's own frame
        lane, objects = b.lane_at(s), Objects.of(b.actors_at(k))
        sp = lane_safety(ego, lane, objects, self.vp, self.stop, distinct=True)
        return sp.delta_lon.reshape(shape), sp.delta_lat.reshape(shape)

    def probability(self, k, state: dict[str, np.ndarray], cov: np.ndarray, gradient: bool = True):
        """(delta_lon, delta_lat, p_hazard) of states with covariance ``cov`` over SAFETY_STATE
        (shape (5, 5), or broadcastable (..., 5, 5)).

        Gradients are only taken where a delta lies within ``SCREEN`` standard deviations of 0
        (bounded by the largest gradient of a random sample, times 2); elsewhere P is 0 or 1 to
        within Phi(-SCREEN)."""
        x = [np.asarray(state[n], float) for n in SAFETY_STATE]
        shape = np.broadcast(*x).shape
        x = [np.broadcast_to(a, shape) for a in x]
        k = np.broadcast_to(np.asarray(k, np.int64), shape)
        lon, lat = self.delta(k, *x)
        p = ((lon <= 0) | (lat <= 0)).astype(float)
        if not gradient:
            return lon, lat, p
        cov = np.broadcast_to(cov, (*shape, 5, 5))
        sample = np.unravel_index(
            np.random.default_rng(0).choice(lon.size, min(lon.size, 256), replace=False), shape
        )
        g_lon, g_lat = self._grad(k[sample], [a[sample] for a in x], lon[sample], lat[sample])
        gmax = 2.0 * max(np.abs(g_lon).sum(-1).max(), np.abs(g_lat).sum(-1).max(), 1.0)
        sd_max = np.sqrt(np.max(np.diagonal(cov, axis1=-2, axis2=-1), axis=-1))
        near = (np.minimum(np.abs(lon), np.abs(lat)) <= SCREEN * gmax * sd_max) | ~np.isfinite(
            lon + lat
        )
        if near.any():
            idx = np.nonzero(near)
            g_lon, g_lat = self._grad(k[idx], [a[idx] for a in x], lon[idx], lat[idx])
            c = cov[idx]
            sd_lon = (
                np.sqrt(np.maximum(np.einsum("...i,...ij,...j->...", g_lon, c, g_lon), 0))
                + SD_FLOOR
            )
            sd_lat = (
                np.sqrt(np.maximum(np.einsum("...i,...ij,...j->...", g_lat, c, g_lat), 0))
                + SD_FLOOR
            )
            p_lon, p_lat = ndtr(-lon[idx] / sd_lon), ndtr(-lat[idx] / sd_lat)
            p[idx] = 1.0 - (1.0 - p_lon) * (1.0 - p_lat)
        return lon, lat, p

    def _grad(self, k, x, lon, lat):
        """Forward-difference gradients of (delta_lon, delta_lat) over SAFETY_STATE, (..., 5)."""
        g_lon, g_lat = [], []
        for i, h in enumerate(STEPS):
            xi = list(x)
            xi[i] = x[i] + h
            a, b = self.delta(k, *xi)
            g_lon.append((a - lon) / h)
            g_lat.append((b - lat) / h)
        return np.stack(g_lon, -1), np.stack(g_lat, -1)


def score_rollout(safety: SafetyModel, k0, rollout, gradient: bool = True) -> Scores:
    """Score a rollout from step k0 (arrays (Q,)): its worst step over the horizon."""
    k0 = np.asarray(k0, np.int64)
    h = next(iter(rollout.mean.values())).shape[1]
    ks = k0[:, None] + np.arange(1, h + 1)[None, :]
    cov = rollout.cov if rollout.cov.ndim == 4 else rollout.cov[None]  # (Q or 1, H, 5, 5)
    lon, lat, p = safety.probability(ks, rollout.mean, cov, gradient=False)
    r = np.arange(len(k0))
    if not gradient:
        key = p - 1e-12 * np.tanh(np.minimum(lon, lat))  # highest P, then lowest delta
        j = np.argmax(key, axis=1)
        return Scores(lon[r, j], lat[r, j], p[r, j], j + 1)
    # The predictive sd is small next to delta's spread over a horizon, so the step of highest
    # P(hazard) is the step of lowest delta_lon or of lowest delta_lat: linearise only there.
    best = None
    for j in (np.argmin(lon, axis=1), np.argmin(lat, axis=1)):
        state = {n: np.asarray(v)[r, j] for n, v in rollout.mean.items()}
        c = cov[r if cov.shape[0] > 1 else 0, j]
        lo, la, pj = safety.probability(ks[r, j], state, c, True)
        cand = Scores(lo, la, pj, j + 1)
        if best is None:
            best = cand
            continue
        better = (pj > best.p_hazard) | ((pj == best.p_hazard) & (cand.delta < best.delta))
        best = Scores(
            *(
                np.where(better, getattr(cand, f), getattr(best, f))
                for f in ("delta_lon", "delta_lat", "p_hazard", "step")
            )
        )
    return best


@dataclass(frozen=True)
class ScoreOptions:
    """How :func:`score_faults` rolls and scores: ``counterfactual`` (default): the golden run's
    residuals are re-used along the rollout (abduction); otherwise ``anchor``: golden +
    rollout(fault) - rollout(no fault); ``gradient``: P(hazard) by linearisation (else a step at
    delta = 0)."""

    counterfactual: bool = True
    anchor: bool = True
    gradient: bool = True


def score_faults(
    predictor,
    golden,
    safety: SafetyModel,
    k,
    point: str,
    values,
    duration=1,
    horizon: int | None = None,
    options: ScoreOptions = ScoreOptions(),
) -> Scores:
    """Score candidate faults do(point = values) held for ``duration`` steps from steps ``k``
    (arrays (Q,), or scalars broadcast): roll the 3-TBN ``horizon`` steps (default: the longest
    duration + 20) from the golden window (k-1, k) and keep each candidate's worst step, as
    ``options`` say. ``golden`` is a :class:`drivefi.tbn.evidence.GoldenWindows`."""
    from drivefi.tbn.structure import SAFETY_STATE

    k = np.atleast_1d(np.asarray(k, np.int64))
    values = np.asarray(values, float)
    q = max(k.size, values.size, np.size(duration))
    k = np.broadcast_to(k, (q,))
    values = np.broadcast_to(values, (q,))
    dur = np.broadcast_to(np.asarray(duration, np.int64), (q,))
    h = int(horizon if horizon is not None else dur.max() + 20)
    prev, cur = golden.window(k)
    if options.counterfactual:  # the golden run's residuals re-used under do() (abduction)
        ro = predictor.rollout(
            prev, cur, golden.exo_seq(k, h), {point: values}, dur, golden=(golden, k)
        )
    else:
        anc = golden.seq(k, h, SAFETY_STATE) if options.anchor else None
        ro = predictor.rollout(prev, cur, golden.exo_seq(k, h), {point: values}, dur, anchor=anc)
    return score_rollout(safety, k, ro, options.gradient)
