"""Command-line entry point: parse arguments, call a library function, report user errors.

Every public module in this package is one command (or command group) that
registers itself on ``app`` when imported; the CLI holds no pipeline logic.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
import warnings

import typer
from typer._click.exceptions import ClickException  # typer vendors click (pinned in pyproject)

from pathda.cli._app import (
    _RUNNING,
    WarningPrinter,
    app,
    expand_optional_values,
    fields_as_flags,
    fill_default_help,
    invoked_command,
)
from pathda.errors import PathdaError


def _register_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_commands()


# typer 0.29 raises its vendored click's exceptions (click itself is not a dependency);
# Abort lives in typer.exceptions (public as typer.Abort), not in typer._click.
_ABORTS = (typer.Abort, KeyboardInterrupt)
_INTERRUPTED = 130  # typer turns Ctrl-C into Exit(130)
_BUG_ADVICE = "with the traceback above and the command you ran"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors print one line to stderr and exit with code 2."""
    # Users get "pathda: warning: ..." on one line, each text once, not a source location.
    warnings.showwarning = WarningPrinter()
    args = expand_optional_values(sys.argv[1:] if argv is None else list(argv))
    try:
        if {"--help", "-h"} & set(args):
            fill_default_help()
        _RUNNING[0] = invoked_command(args)
        rc = app(args=args, standalone_mode=False, prog_name="pathda")
    except PathdaError as err:
        command = invoked_command(args)
        print(f"pathda: error: {fields_as_flags(str(err), command)}", file=sys.stderr)
        sys.exit(2)
    except ClickException as err:  # usage errors: exit 2
        err.show()
        sys.exit(err.exit_code)
    except _ABORTS:
        rc = _INTERRUPTED
    except OSError as err:  # read-only output, full disk, ...: the user can fix it
        print(f"pathda: error: {_os_error_message(err, args)}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # a broken invariant: a bug in pathda, whose traceback says where
        traceback.print_exc()
        print(f"pathda: this is a bug, please report it {_BUG_ADVICE}", file=sys.stderr)
        sys.exit(1)
    if rc == _INTERRUPTED:
        print("pathda: interrupted", file=sys.stderr)
    sys.exit(rc if isinstance(rc, int) else 0)


def _os_error_message(err: OSError, args: list[str]) -> str:
    """One line naming the path: the file if the error knows it, else the ``--out`` folder."""
    reason = err.strerror or str(err) or type(err).__name__
    advice = "check that the folder exists, is writable and has free space"
    if err.filename is not None:
        return f"{err.filename}: {reason}; {advice}"
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "-o")), None)
    where = f" while writing under {out}" if out else ""
    return f"{reason}{where}; {advice}"
