"""DriveFI: Bayesian fault injection for autonomous-driving stacks."""

__version__ = "0.1.0"
