"""The reference ADS: perception -> planning -> control, array-native over a batch of runs."""

from drivefi.stacks.reference.stack import INJECTION_POINTS, POINTS_BY_NAME, ADSState, ReferenceADS

__all__ = [
    "INJECTION_POINTS",
    "POINTS_BY_NAME",
    "ADSState",
    "ReferenceADS",
]
