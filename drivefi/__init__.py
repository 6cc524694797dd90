"""DriveFI: Bayesian fault injection for autonomous-driving stacks."""

__version__ = "0.1.0"

from drivefi.inject import declare, inject  # noqa: F401  (source-level injection API)
