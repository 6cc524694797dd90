"""Fault models and the fault injector.

A fault is (injection point, fault model, value or bit, start step k, duration m, seed):

- ``1-fixed``  one step k, the output replaced by a constant value;
- ``m-fixed``  the same constant from step k to k+m-1;
- ``1-random`` one step, point and value drawn uniformly (drawn when the plan is made, so the
  plan row shows them);
- ``m-random`` steps k..k+m-1, a random point and value at each step, drawn from the row's seed
  (the row's point is ``*``);
- ``bitflip``  flip bit b (0-31) of the output's IEEE-754 float32 value, at one step or held for m.

:class:`FaultInjector` holds one fault per run of a batch and corrupts outputs with array ops, so a
batch of N faults costs about what one run costs.
"""

from __future__ import annotations

import numpy as np

from drivefi.core import Fault, InjectionPoint, Injector

__all__ = [
    "ANY_POINT",
    "MODELS",
    "Fault",
    "FaultInjector",
    "drawn_text",
    "flip_bit",
    "random_sequence",
]

MODELS = ("1-fixed", "m-fixed", "1-random", "m-random", "bitflip")
ANY_POINT = "*"
_FIXED, _RANDOM, _FLIP = 0, 1, 2


def flip_bit(value, bit):
    """Flip bit ``bit`` of float32(value); returns float64 arrays (NaN and inf pass through)."""
    f32 = np.asarray(value, dtype=np.float64).astype(np.float32)
    u = f32.view(np.uint32) ^ (np.uint32(1) << np.asarray(bit, dtype=np.uint32))
    return u.view(np.float32).astype(np.float64)


def random_sequence(
    seed: int, m: int, points: list[InjectionPoint]
) -> tuple[np.ndarray, np.ndarray]:
    """The m-random fault's per-step point indices and values, fixed by its seed."""
    rng = np.random.default_rng([seed, 0x4D52])
    idx = rng.integers(len(points), size=m)
    u = rng.random(m)
    lo = np.array([p.lo for p in points])[idx]
    hi = np.array([p.hi for p in points])[idx]
    return idx, lo + u * (hi - lo)


def drawn_text(seed: int, m: int, start: int, specs: list | None, shown: int = 3) -> str:
    """What an m-random fault drew, as export and report show it (its plan row says ``*``):
    ``control.steer 0.31 (k=120), planning.target_speed 12.5 m/s (k=121), ... 20 steps``.

    ``specs``: the stack's points in the order its injector holds them, as
    :class:`InjectionPoint` or ``(name, lo, hi, unit)`` (what a campaign stores); ``None`` (a
    campaign stored before DriveFI kept them) gives ``not stored``."""
    if specs is None:
        return "not stored"
    pts = [p if isinstance(p, InjectionPoint) else InjectionPoint(*p[:4], "") for p in specs]
    idx, val = random_sequence(int(seed), int(m), pts)
    parts = [
        f"{pts[j].name} {v:.3g}{' ' + pts[j].unit if pts[j].unit else ''} (k={start + i})"
        for i, (j, v) in enumerate(zip(idx[:shown], val[:shown], strict=True))
    ]
    return ", ".join(parts) + (f", ... {m} steps" if m > shown else "")


class FaultInjector(Injector):
    """One fault per run: run i of the batch carries ``faults[i]`` (None for a fault-free run)."""

    def __init__(self, faults: list[Fault | None], points: list[InjectionPoint]):
        super().__init__()
        n = len(faults)
        self.names = [p.name for p in points]
        index = {name: i for i, name in enumerate(self.names)}
        self.kind = np.full(n, -1)
        self.pid = np.full(n, -1)
        self.start = np.zeros(n, np.int64)
        self.dur = np.zeros(n, np.int64)
        self.value = np.zeros(n)
        self.bit = np.zeros(n, np.int64)
        m_max = max(
            [f.duration for f in faults if f is not None and f.model == "m-random"], default=1
        )
        self.rp = np.full((n, m_max), -1)
        self.rv = np.zeros((n, m_max))
        for i, f in enumerate(faults):
            if f is None:
                continue
            self.start[i], self.dur[i] = f.start, f.duration
            if f.model == "m-random":
                self.kind[i] = _RANDOM
                self.rp[i, : f.duration], self.rv[i, : f.duration] = random_sequence(
                    f.seed, f.duration, points
                )
            else:
                self.pid[i] = index[f.point]
                if f.model == "bitflip":
                    self.kind[i], self.bit[i] = _FLIP, f.bit
                else:
                    self.kind[i], self.value[i] = _FIXED, f.value
        # rows that can ever touch each point, so untouched points cost nothing
        self.rows = {
            j: np.flatnonzero((self.pid == j) | (self.rp == j).any(axis=1))
            for j in range(len(self.names))
        }

    def active(self, k: np.ndarray) -> np.ndarray:
        off = k - self.start
        return (self.kind >= 0) & (off >= 0) & (off < self.dur)

    def corrupt(self, point: str, value: np.ndarray, k: np.ndarray) -> np.ndarray:
        j = self.names.index(point)
        rows = self.rows[j]
        if rows.size == 0:
            return value
        off = k[rows] - self.start[rows]
        on = (off >= 0) & (off < self.dur[rows])
        if not on.any():
            return value
        kind = self.kind[rows]
        out = value.copy()
        clean = value[rows]
        new = clean.copy()
        fixed = on & (kind == _FIXED)
        new[fixed] = self.value[rows][fixed]
        flip = on & (kind == _FLIP)
        if flip.any():
            new[flip] = flip_bit(clean[flip], self.bit[rows][flip])
        rnd = on & (kind == _RANDOM)
        if rnd.any():
            r, o = rows[rnd], off[rnd]
            hit = self.rp[r, o] == j
            sel = np.flatnonzero(rnd)[hit]
            new[sel] = self.rv[r[hit], o[hit]]
        out[rows] = new
        return out
