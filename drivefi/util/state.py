"""Batched state containers: dataclasses whose fields are numpy arrays with a leading run axis (N,).

Snapshots, gathers and stacks work field by field, so a world or ADS state can be copied at a step,
sliced to some runs, or assembled from the golden run's states at different steps, bit-exactly.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np

S = TypeVar("S", bound="BatchState")


class BatchState:
    """Mixin for dataclasses of (N, ...) arrays."""

    def copy(self: S) -> S:
        return dataclasses.replace(
            self, **{f.name: np.array(getattr(self, f.name)) for f in dataclasses.fields(self)}
        )

    def take(self: S, idx) -> S:
        """The runs at ``idx`` (an index array or slice), as a new state."""
        return dataclasses.replace(
            self, **{f.name: np.array(getattr(self, f.name)[idx]) for f in dataclasses.fields(self)}
        )

    @property
    def n(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))

    @classmethod
    def stack(cls: type[S], states: list[S]) -> S:
        """Concatenate states along the run axis."""
        return cls(
            **{
                f.name: np.concatenate([getattr(s, f.name) for s in states])
                for f in dataclasses.fields(cls)
            }
        )

    def same(self, other: BatchState) -> np.ndarray:
        """Per run, whether this state and ``other`` (as many runs) are equal bit for bit
        (floats by their bits: NaN equals NaN, 0.0 differs from -0.0)."""
        every = np.arange(self.n)
        out = np.zeros(self.n, bool)
        out[self.same_rows(every, other, every)] = True
        return out

    def same_rows(self, rows: np.ndarray, other: BatchState, at: np.ndarray) -> np.ndarray:
        """The runs ``rows`` of this state that equal ``other``'s runs ``at`` (pairwise), bit for
        bit as in :meth:`same`. Field by field, on the rows still equal: a run that differs is
        usually dropped at the first field, so few values are gathered."""
        rows, at = np.asarray(rows), np.asarray(at)
        for f in dataclasses.fields(self):
            if rows.size == 0:
                break
            a, b = getattr(self, f.name)[rows], getattr(other, f.name)[at]
            if a.dtype.kind == "f":
                a, b = _bits(a), _bits(b)
            eq = a == b
            keep = eq.reshape(len(rows), -1).all(axis=1) if eq.ndim > 1 else eq
            rows, at = rows[keep], at[keep]
        return rows

    def put(self, idx, other: BatchState) -> None:
        """Overwrite the runs at ``idx`` with ``other``'s runs, in place."""
        for f in dataclasses.fields(self):
            getattr(self, f.name)[idx] = getattr(other, f.name)


def _bits(a: np.ndarray) -> np.ndarray:
    """A float array's bits as unsigned integers of the same shape."""
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")
