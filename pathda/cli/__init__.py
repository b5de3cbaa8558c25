"""Command-line entry point: parse arguments, call a library function, report user errors.

Every public module in this package is one command (or command group) that
registers itself on ``app`` when imported; the CLI holds no pipeline logic.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

import click
import typer._click as typer_click  # typer >= 0.20 vendors its own copy of click

from pathda.cli._app import (
    WarningPrinter,
    app,
    expand_optional_values,
    fields_as_flags,
    invoked_command,
)
from pathda.errors import PathdaError


def _register_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line to stderr and exit with code 2."""
    # Users get "pathda: warning: ..." on one line, each text once, not a source location.
    warnings.showwarning = WarningPrinter()
    try:
        args = expand_optional_values(sys.argv[1:] if argv is None else list(argv))
        rc = app(args=args, standalone_mode=False, prog_name="pathda")
    except PathdaError as err:
        command = invoked_command(args)
        print(f"pathda: error: {fields_as_flags(str(err), command)}", file=sys.stderr)
        sys.exit(2)
    except (click.ClickException, typer_click.ClickException) as err:  # usage errors: exit 2
        err.show()
        sys.exit(err.exit_code)
    except (click.exceptions.Abort, typer_click.exceptions.Abort, KeyboardInterrupt):
        print("pathda: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
