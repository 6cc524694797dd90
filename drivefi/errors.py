"""Errors that DriveFI reports to the user as one clear line (exit code 2), never a traceback."""

from __future__ import annotations


class DriveFIError(Exception):
    """An error with a message meant for the user. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(DriveFIError):
    """Bad user input: a file, field or argument that is missing or malformed (exit 2)."""

    exit_code = 2


class SimulatorError(DriveFIError):
    """The simulator failed or stopped answering during a run."""

    exit_code = 1
