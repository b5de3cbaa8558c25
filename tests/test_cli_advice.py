"""Every ``--flag`` that an error or warning can advise exists on the command that shows it.

A static check, so it covers messages no other test triggers: for each CLI command, the
functions it can reach (its callback, then every function or method whose name a reached
body mentions, across the ``pathda`` modules it imports, transitively) are searched for
``raise ...(...)`` and ``warnings.warn(...)`` calls whose string parts name ``--flags``;
each flag must be an option of that command. Reaching by name over-approximates (two
functions of one name both count), so a pass is meaningful; a failure names the module,
line and flag.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer

from pathda.cli import app

REPO = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass
class _Unit:
    """A top-level function, a method, or a class body (with its dunder methods)."""

    module: str
    name: str
    nodes: list[ast.AST]
    mentions: set[str] = field(default_factory=set)


def _module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*parts, *([target] if target else [])])
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("pathda") and _module_file(m)}


def _mentions(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
    return names


def _units(tree: ast.Module, module: str) -> Iterator[_Unit]:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield _Unit(module, node.name, [node])
        elif isinstance(node, ast.ClassDef):
            body = [n for n in node.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef)]
            dunder = [m for m in methods if m.name.startswith("__")]
            yield _Unit(module, node.name, [*node.bases, *node.decorator_list, *body, *dunder])
            for method in methods:
                if not method.name.startswith("__"):
                    yield _Unit(module, method.name, [method])


def _advised_flags(node: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, flag) in the string parts of raise and warnings.warn calls under ``node``."""
    for sub in ast.walk(node):
        call = None
        if isinstance(sub, ast.Raise) and isinstance(sub.exc, ast.Call):
            call = sub.exc
        elif isinstance(sub, ast.Call) and getattr(sub.func, "attr", None) == "warn":
            call = sub
        for part in ast.walk(call) if call is not None else ():
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                yield from ((part.lineno, f) for f in FLAG.findall(part.value))


def _reachable_flags(root_module: str, root: str) -> set[tuple[str, int, str]]:
    """(module, line, flag) advised by what ``root`` in ``root_module`` can reach."""
    modules, todo, units = set(), [root_module], []
    module_level: set[str] = set()
    while todo:
        module = todo.pop()
        if module in modules:
            continue
        modules.add(module)
        path = _module_file(module)
        tree = ast.parse(path.read_text())
        todo += _imports(tree, module, path.name == "__init__.py")
        for unit in _units(tree, module):
            unit.mentions = set().union(*map(_mentions, unit.nodes))
            units.append(unit)
        for node in tree.body:  # module-level code runs on import
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                module_level |= _mentions(node)
    reached = {u.name for u in units if u.module == root_module and u.name == root}
    names = set(module_level) | reached
    done: set[int] = set()
    while True:
        new = [u for u in units if id(u) not in done and u.name in names]
        if not new:
            break
        for unit in new:
            done.add(id(unit))
            names |= unit.mentions
    flags = set()
    for unit in units:
        if id(unit) in done:
            for node in unit.nodes:
                flags |= {(unit.module, line, flag) for line, flag in _advised_flags(node)}
    return flags


def _commands() -> Iterator[tuple[str, Any]]:
    # Duck-typed: typer >= 0.20 builds its commands with its own vendored copy of click.
    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}".strip())
        else:
            yield path, command

    yield from walk(typer.main.get_command(app), "")


COMMANDS = dict(_commands())


def test_every_command_is_checked():
    assert {"tile", "train", "segment", "score", "info"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_advised_flags_exist_on_the_command(name):
    command = COMMANDS[name]
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    callback = command.callback
    flags = _reachable_flags(callback.__module__, callback.__name__)
    wrong = sorted(f"{m}:{line} advises {flag}" for m, line, flag in flags if flag not in options)
    assert not wrong, f"pathda {name} has no such option: " + "; ".join(wrong)


def test_the_check_sees_advice_deep_in_the_library():
    """Guard against a check that finds nothing: tile reaches tiling's store advice."""
    flags = {flag for _, _, flag in _reachable_flags("pathda.cli.tile", "tile")}
    assert {"--out", "--append"} <= flags
