"""A name -> object registry: the one place a swappable part's name is written.

Used for slide backends, adaptation methods, stain normalisers, synthetic domains and
stitching windows. Everything else (config validation, CLI help, reports, tests) asks the
registry for names instead of retyping them, as timm's ``list_models()`` does.

Examples:
    >>> WINDOWS = Registry("blending window")
    >>> @WINDOWS.register("flat")
    ... def flat(u):
    ...     return u * 0 + 1
    >>> WINDOWS.names()
    ['flat']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pathda.errors import ConfigError

T = TypeVar("T")
Obj = TypeVar("Obj")


class Registry(Generic[T]):
    """Objects of one kind by name, in registration order.

    Args:
        kind: What the entries are, for messages (``"stain method"`` gives
            "unknown stain method 'x'; choose one of: ...").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` as ``name``; returns ``obj``.

        Raises:
            ValueError: ``name`` is taken by another object (a programming error: two
                parts would answer to one name). Registering the same object again is a
                no-op, so re-importing a module is harmless.
        """
        if not name:
            raise ValueError(f"a {self.kind} needs a non-empty name")
        current = self._entries.get(name)
        if current is not None and current is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({current!r} and {obj!r})")
        self._entries[name] = obj
        return obj

    def register(self, name: str) -> Callable[[Obj], Obj]:
        """Decorator form of :meth:`add`: ``@REGISTRY.register("name")``."""

        def decorator(obj: Obj) -> Obj:
            self.add(name, obj)  # type: ignore[arg-type]
            return obj

        return decorator

    def remove(self, name: str) -> T:
        """Unregister ``name`` and return its entry (tests that register a throwaway part).

        Raises:
            ConfigError: Unknown name.
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ConfigError: Unknown name; the message lists the valid ones, sorted.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            valid = ", ".join(sorted(self.names()))
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {valid}") from None

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, in registration order."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
