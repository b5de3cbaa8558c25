"""The shared name -> object registry and the five registries built on it."""

from __future__ import annotations

import pytest

from pathda.errors import ConfigError
from pathda.registry import Registry


def test_register_get_names_in_order():
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)

    @reg.register("a")
    def a():
        return 1

    assert reg.names() == ["b", "a"]
    assert reg.get("a") is a
    assert reg["b"] == 2
    assert "a" in reg
    assert "c" not in reg
    assert len(reg) == 2
    assert list(reg) == ["b", "a"]
    assert reg.add("b", 2) == 2  # the same object again (module re-import) is fine
    assert reg.remove("b") == 2
    assert reg.names() == ["a"]


def test_duplicate_name_raises_and_unknown_lists_valid():
    reg: Registry[object] = Registry("widget")
    reg.add("x", object())
    with pytest.raises(ValueError, match="widget 'x' is registered twice"):
        reg.add("x", object())
    with pytest.raises(ValueError, match="non-empty"):
        reg.add("", object())
    with pytest.raises(ConfigError, match=r"unknown widget 'y'; choose one of: x"):
        reg.get("y")


def test_the_five_registries_share_it():
    from pathda.adapt import METHODS
    from pathda.segment.grid import WINDOWS
    from pathda.slide.registry import BACKENDS
    from pathda.stain import NORMALISERS
    from pathda.synth import DOMAINS

    for registry in (METHODS, WINDOWS, BACKENDS, NORMALISERS, DOMAINS):
        assert isinstance(registry, Registry)
        assert len(registry) >= 2
    assert METHODS.names()[:4] == ["none", "dann", "ldann", "lwass"]
    assert all(METHODS.get(n).title for n in METHODS)
