"""The typer application that every command module registers on."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

from pathda import __version__
from pathda.errors import ConfigError, UnknownClassError

app = typer.Typer(
    name="pathda",
    help="Breast-cancer WSI segmentation with layer-wise domain adaptation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _quiet_libraries(quiet: bool) -> bool:
    # tifffile logs quirks of slide files (e.g. odd OME metadata) on its own logger,
    # straight to stderr; --quiet silences them with the rest.
    logging.getLogger("tifffile").setLevel(logging.ERROR if quiet else logging.NOTSET)
    return quiet


QuietOption = typer.Option(
    False, "--quiet", "-q", help="No progress bars or info output.", callback=_quiet_libraries
)


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


def slide_mpp_option(default: float | None = None, help: str | None = None) -> Any:
    """``--slide-mpp``: level-0 µm/px of the slides, the same option on every command."""
    return typer.Option(
        default,
        "--slide-mpp",
        min=1e-6,
        help=help or "Level-0 resolution of the slides in µm/px, overriding their metadata.",
    )


# `--mpp` meant the level-0 resolution on info/segment/synth; it now names only a working
# resolution (tile's patch µm/px). The old spelling is read for one release.
DeprecatedMppOption = typer.Option(None, "--mpp", min=1e-6, hidden=True)


def renamed_flag(old_value: Any, new_value: Any, old: str, new: str) -> Any:
    """The value of a renamed flag: ``new``'s, or ``old``'s with a deprecation warning."""
    if old_value is None:
        return new_value
    warnings.warn(f"{old} is deprecated here; use {new}", FutureWarning, stacklevel=2)
    if new_value is not None and new_value != old_value:
        raise ConfigError(f"{old} and {new} disagree; give {new} only")
    return old_value


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


_FIELD = re.compile(r"`([a-z][a-z0-9_.]*)`")


def invoked_command(argv: Sequence[str]) -> Any:
    """The (sub)command that ``argv`` runs, or None (duck-typed: typer vendors click)."""
    command = typer.main.get_command(app)
    for word in argv:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None and not word.startswith("-"):
            break
        command = sub or command
    return None if hasattr(command, "commands") else command


def fields_as_flags(message: str, command: Any) -> str:
    """Show the configuration fields a library message names as `field` as this command's flags.

    Library messages name fields (``"`min_tissue` must be in (0, 1]"``) so that they read
    right from YAML and the Python API; on the command line the same field is a flag. A
    list field (``target_domains``) maps to its repeatable singular flag. A field without a
    flag on ``command`` stays as written (it is set in the YAML section).
    """
    if command is None:
        return message
    flags: dict[str, str] = {}
    for param in command.params:
        longs = [o for o in param.opts if o.startswith("--")]
        if longs and param.name:
            flags[param.name] = longs[0]
            flags[longs[0][2:].replace("-", "_")] = longs[0]

    def as_flag(match: re.Match[str]) -> str:
        name = match.group(1).replace(".", "_")  # `tissue.mpp`: the --tissue-mpp flag
        for candidate in (name, name[:-1], name[:-2]):
            if candidate in flags:
                return flags[candidate]
        return match.group(0)

    return _FIELD.sub(as_flag, message)
