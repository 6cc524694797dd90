"""The ``drivefi`` command line (also ``python -m drivefi``); nothing in the library imports it.

Every user-facing error is one line on stderr and a non-zero exit (2 for bad input or bad usage),
never a traceback; every command that summarises something takes ``--json``.

To add a command group:
1. write ``drivefi/cli/NAME.py`` with the commands and a ``register(app: typer.Typer)`` that
   attaches them (``app.command("name")(fn)`` or ``app.add_typer(sub_app, name="name")``);
2. take shared options and output helpers (``JsonOpt``, ``SimOpt``, the CARLA options,
   ``bridge_options``, ``emit_json``, ``kv_table``, the consoles) from ``drivefi.cli.options``
   and add new shared ones there;
3. add ``NAME`` to ``GROUPS`` below (the order is the order in ``drivefi --help``);
4. import library modules inside the command functions, so ``drivefi --help`` stays fast;
   raise ``drivefi.errors.InputError`` for bad input (``main`` turns it into one line + exit 2).
"""

from __future__ import annotations

import importlib
import sys

import typer
import typer.core

import drivefi
from drivefi.cli.options import err_console
from drivefi.errors import DriveFIError

GROUPS = (
    "scenarios", "points", "record", "plan", "campaign", "report", "replay", "fit", "search",
    "pipeline",
)  # fmt: skip

# The click that typer runs on (recent typer vendors it as ``typer._click``, older typer imports
# ``click``): its exceptions are the ones a parse error raises. pyproject bounds typer to the
# versions tests/test_cli_usage.py has checked.
_click = getattr(typer.core, "_click", None) or typer.core.click
ClickException = _click.exceptions.ClickException
UsageError = _click.exceptions.UsageError
NoArgsIsHelpError = getattr(_click.exceptions, "NoArgsIsHelpError", None)


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"drivefi {drivefi.__version__}\n")
        raise typer.Exit(0)


def build_app() -> typer.Typer:
    """The ``drivefi`` app with every command group of ``GROUPS`` attached."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        help="DriveFI: find the faults that make a driving stack unsafe.",
    )

    @app.callback()
    def _root(
        _version: bool = typer.Option(
            False,
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Print the version and exit.",
        ),
        debug: bool = typer.Option(
            False,
            "--debug",
            help="On an error, print the full traceback after the one-line message (a failing "
            "agent's own, where it is at fault).",
        ),
    ) -> None:
        """DriveFI: find the faults that make a driving stack unsafe."""
        _DEBUG[0] = debug

    for name in GROUPS:
        importlib.import_module(f"drivefi.cli.{name}").register(app)
    return app


_DEBUG = [False]  # --debug of this invocation
app = build_app()


def _error(text: str) -> None:
    err_console.print(text, style="bold red", markup=False, highlight=False, soft_wrap=True)


def _usage_line(e: Exception) -> str:
    """One line: the command, what is wrong, where to look."""
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path if ctx is not None else "drivefi"
    msg = " ".join(e.format_message().split())
    return f"{path}: error: {msg} (see '{path} --help')"


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    A command run under a parent (:mod:`drivefi.cli.guard`: a user's agent in this process) ends
    its child process here, whatever happened; the parent returns the child's exit code."""
    from drivefi.cli.guard import end_child, is_child

    try:
        rc = _main(argv)
    except SystemExit as e:
        end_child(e.code if isinstance(e.code, int) else 1)
        raise
    except BaseException:
        if is_child():
            import traceback

            traceback.print_exc()
        end_child(1)
        raise
    end_child(rc)
    return rc


def _main(argv: list[str] | None) -> int:
    from drivefi.cli.guard import Supervised

    _DEBUG[0] = False
    cmd = typer.main.get_command(app)
    try:
        rv = cmd.main(args=argv, prog_name="drivefi", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except Supervised as e:  # the parent of a command that ran in a child process
        return e.code
    except ClickException as e:
        if NoArgsIsHelpError is not None and isinstance(e, NoArgsIsHelpError):
            # a group without a command: its help (typer's rich help is already printed on
            # stdout when the error is made; plain click's is in the message), then one line
            if e.format_message().strip():
                e.show()
            _error(
                f"{e.ctx.command_path}: error: missing command (see '{e.ctx.command_path} --help')"
            )
            return 2
        if isinstance(e, UsageError):
            _error(_usage_line(e))
            return 2
        _error(f"error: {' '.join(e.format_message().split())}")
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except DriveFIError as e:
        _error(f"error: {e}")
        if _DEBUG[0]:
            import traceback

            details = getattr(e, "details", None)
            sys.stderr.write(details or "".join(traceback.format_exception(e)))
        return e.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted; stored results are kept")
        return 130


def entry() -> None:
    sys.exit(main())
