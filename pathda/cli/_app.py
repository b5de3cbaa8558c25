"""The typer application that every command module registers on."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
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
        shown = fields_as_flags(text, _RUNNING[0])  # library texts name fields, users flags
        print(f"pathda: warning: {shown}", file=file or sys.stderr)

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


_RUNNING: list[Any] = [None]  # the command being run (set by ``pathda.cli.main``)
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
    config_flags = _CONFIG_FLAGS.get(getattr(command.callback, "__name__", ""))
    for param, field in (config_flags.renames if config_flags else {}).items():
        if param in flags:  # a field whose flag has another name: slide_size -> --slide-dims
            flags.setdefault(field.replace(".", "_"), flags[param])

    def as_flag(match: re.Match[str]) -> str:
        name = match.group(1).replace(".", "_")  # `tissue.mpp`: the --tissue-mpp flag
        for candidate in (name, name[:-1], name[:-2]):
            if candidate in flags:
                return flags[candidate]
        return match.group(0)

    return _FIELD.sub(as_flag, message)


# -- flags derived from a stage's config dataclass ------------------------------------------
_SOURCES_GIVEN = ("COMMANDLINE", "ENVIRONMENT")
_CONFIG_FLAGS: dict[str, ConfigFlags] = {}


class ConfigFlags:
    """How one command's flags set the fields of its stage config, written once.

    A flag sets the config field of its parameter's name unless ``renames`` says otherwise
    (``{"workers": "num_workers", "tissue_mpp": "tissue.mpp"}``: a dotted name is a field of
    a nested config). Only flags given on the command line are passed on, so the YAML
    section and then the dataclass supply everything else: each default lives in the
    dataclass, and help texts show it through a ``{default}`` placeholder, filled in from
    the dataclass only when help is asked for (the config modules import torch/zarr).

    Args:
        command: The command's name (its function's name).
        config: ``"module:Class"`` of the stage config, imported when first needed.
        renames: Parameter -> field, where they differ.
        convert: Parameter -> function turning the flag's text into the field's value.
    """

    def __init__(
        self,
        command: str,
        config: str,
        renames: Mapping[str, str] | None = None,
        convert: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.command, self.config = command, config
        self.renames = dict(renames or {})
        self.convert = dict(convert or {})
        _CONFIG_FLAGS[command] = self

    def config_class(self) -> type:
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)

    def field_of(self, param: str) -> str:
        return self.renames.get(param, param)

    def given(self, ctx: Any) -> dict[str, Any]:
        """``{field: value}`` of the flags given on the command line (nested as dicts)."""
        fields = {f.name for f in dataclasses.fields(self.config_class())}
        values: dict[str, Any] = {}
        for param, value in ctx.params.items():
            source = ctx.get_parameter_source(param)
            if getattr(source, "name", None) not in _SOURCES_GIVEN:
                continue
            head, _, sub = self.field_of(param).partition(".")
            if head not in fields:
                continue  # a flag of the command, not of the config (--out, --quiet, ...)
            if param in self.convert:
                value = self.convert[param](value)
            elif isinstance(value, list):
                value = tuple(value)
            if sub:
                values.setdefault(head, {})[sub] = value
            else:
                values[head] = value
        return values

    def default_of(self, param: str) -> Any:
        """The config's default for the field a parameter sets."""
        cls: Any = self.config_class()
        value: Any = cls()
        for part in self.field_of(param).split("."):
            value = getattr(value, part)
        return value


def fill_default_help() -> None:
    """Put each config default into the ``{default}`` of its flag's help (``--help`` only)."""
    for info in app.registered_commands:
        flags = _CONFIG_FLAGS.get(info.callback.__name__) if info.callback else None
        if flags is None:
            continue
        for name, param in inspect.signature(info.callback).parameters.items():
            text = getattr(param.default, "help", None)
            if isinstance(text, str) and "{default}" in text:
                param.default.help = text.replace("{default}", _shown(flags.default_of(name)))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) or "none"
    return str(value)
