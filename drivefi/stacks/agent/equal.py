"""Whether a live agent is in the same state as a snapshot of it, bit for bit.

The counterpart of :mod:`drivefi.stacks.agent.snapshot`: a snapshot is what ``copy.deepcopy`` (or
``get_state``) captures, and two agents are in the same state when those object graphs are equal:
the same types; floats with the same bits (NaN equals NaN, 0.0 differs from -0.0); numpy arrays
with the same dtype, shape and bytes; containers with equal items in the same order; other
objects with equal ``__reduce_ex__`` results, which is what ``deepcopy`` copies (an object's
attributes, a random generator's state). What a copy shares instead of copying (functions,
classes, modules, map handles, the global plan) is equal only when it is the same object; the
stand-ins of two runs are equal when ``pairs`` maps one to the other. What cannot be compared
counts as different: a false "different" costs simulation time, a false "same" correctness.
"""

from __future__ import annotations

import math
import types

import numpy as np

from drivefi.stacks.agent.snapshot import CARLA_VALUES

_VALUES = (int, bool, str, bytes, type(None), complex, range)
_SHARED = (
    type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType, types.CodeType,
    types.MethodWrapperType, types.WrapperDescriptorType,
)  # fmt: skip


def same_state(live, frozen, pairs: dict[int, int] | None = None) -> bool:
    """Whether ``live`` equals the snapshot ``frozen``; ``pairs``: id(live object) -> id(its
    counterpart in the snapshot) for objects that stand for each other (a run's stand-ins)."""
    return _Compare(pairs or {}).eq(live, frozen)


class _Compare:
    def __init__(self, pairs: dict[int, int]):
        self.pairs = pairs
        self.open: set[tuple[int, int]] = set()  # pairs under comparison (cycles end there)

    def eq(self, a, b) -> bool:
        if a is b or self.pairs.get(id(a)) == id(b):
            return True
        t = type(a)
        if t is not type(b):
            return False
        if t is float:
            return _same_float(a, b)
        if t in _VALUES:
            return a == b
        key = (id(a), id(b))
        if key in self.open:
            return True
        self.open.add(key)
        try:
            return self._eq(t, a, b)
        except Exception:  # a type that cannot be compared counts as different
            return False

    def _eq(self, t, a, b) -> bool:
        if t is list or t is tuple:
            return len(a) == len(b) and all(self.eq(x, y) for x, y in zip(a, b, strict=True))
        if t is dict:
            return len(a) == len(b) and all(
                self.eq(ka, kb) and self.eq(va, vb)
                for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
            )
        if t is set or t is frozenset:
            return a == b
        if t is np.ndarray:
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if a.dtype.hasobject:
                return all(self.eq(x, y) for x, y in zip(a.flat, b.flat, strict=True))
            return a.tobytes() == b.tobytes()
        if isinstance(a, np.generic):
            return a.dtype == b.dtype and a.tobytes() == b.tobytes()
        if t.__module__.startswith("carla") and t.__name__ in CARLA_VALUES:
            return all(self.eq(getattr(a, f), getattr(b, f)) for f in CARLA_VALUES[t.__name__])
        if t is types.MethodType:
            return a.__func__ is b.__func__ and self.eq(a.__self__, b.__self__)
        if isinstance(a, _SHARED):
            return False  # shared by copies: the same only when it is the same object
        # what deepcopy copies is what __reduce_ex__ hands it: compare that
        ra, rb = a.__reduce_ex__(4), b.__reduce_ex__(4)
        return (
            ra[0] is rb[0]
            and len(ra) == len(rb)
            and all(self.eq(_items(x), _items(y)) for x, y in zip(ra[1:], rb[1:], strict=True))
        )


def _same_float(a: float, b: float) -> bool:
    if a == b:
        return a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b)
    return a != a and b != b  # both NaN


def _items(x):
    """A ``__reduce_ex__`` part as comparable data (its item iterators as lists)."""
    if x is not None and hasattr(x, "__next__"):
        return list(x)
    return x
