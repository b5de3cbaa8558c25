"""The typer application that every command module registers on."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from pathda import __version__
from pathda.errors import UnknownClassError

app = typer.Typer(
    name="pathda",
    help="Breast-cancer WSI segmentation with layer-wise domain adaptation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars or info output.")


class WarningPrinter:
    """``warnings.showwarning`` for users: ``pathda: warning: ...``, each distinct text once.

    A command may meet one warning several times (tile reads each annotation file when it
    validates the inputs and again when it plans the slide); the user needs it once.
    ``shown`` keeps every warning printed, by text, for a run summary.
    """

    def __init__(self) -> None:
        self.shown: dict[str, Warning] = {}

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text in self.shown:
            return
        self.shown[text] = message if isinstance(message, Warning) else category(text)
        print(f"pathda: warning: {text}", file=file or sys.stderr)

    def of_category(self, category: type[Warning]) -> list[Warning]:
        """The warnings shown so far of ``category`` (or a subclass), in order."""
        return [w for w in self.shown.values() if isinstance(w, category)]


@contextmanager
def class_alias_advice() -> Iterator[None]:
    """Name ``--class-alias`` in unknown-class errors, for the commands that take it."""
    try:
        yield
    except UnknownClassError as err:
        if err.label is None:
            raise
        raise UnknownClassError(
            f"{err}; pass --class-alias '{err.label}=CLASS'", err.label
        ) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pathda {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Breast-cancer WSI segmentation with layer-wise domain adaptation."""


_OPTIONAL_VALUES: dict[str, tuple[str, Callable[[str], bool]]] = {}


def optional_value(flag: str, implied: str, is_value: Callable[[str], bool]) -> None:
    """Let ``flag`` stand alone, meaning ``flag=implied``, when the next word is not its value."""
    _OPTIONAL_VALUES[flag] = (implied, is_value)


def expand_optional_values(argv: list[str]) -> list[str]:
    """Rewrite bare ``--flag`` (see :func:`optional_value`) to ``--flag=implied``."""
    out = []
    for i, word in enumerate(argv):
        rule = _OPTIONAL_VALUES.get(word)
        if rule is not None and (i + 1 == len(argv) or not rule[1](argv[i + 1])):
            word = f"{word}={rule[0]}"
        out.append(word)
    return out
