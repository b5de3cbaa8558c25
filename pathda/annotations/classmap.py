"""Class maps: annotation label names -> integer class ids, colours and overlap priority."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pathda.errors import ConfigError, UnknownClassError

RGB = tuple[int, int, int]


def normalise_alias(name: str) -> str:
    """Lower-case; collapse runs of whitespace, '-', '_' to one space ("In-Situ" -> "in situ")."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def _lookup_key(name: str) -> str:
    # Spacing is ignored entirely on lookup so "insitu", "in situ" and "In_Situ" all match.
    return normalise_alias(name).replace(" ", "")


@dataclass(frozen=True)
class ClassMap:
    """Names, colours, aliases and overlap priority of the segmentation classes.

    Attributes:
        names: canonical class names; the index is the label id written into rasters.
        colors: RGB (0-255) per id, used when writing GeoJSON (QuPath) and XML.
        aliases: lower-cased alias -> id. Canonical names are always aliases of their id.
            Lookup ignores case, spaces, '-' and '_'.
        severity: priority per id where polygons overlap; the higher value is painted on
            top (ties: the higher id wins).

    Not hashable (``aliases`` is a mapping); compare with ``==``.
    """

    names: tuple[str, ...]
    colors: tuple[RGB, ...]
    aliases: Mapping[str, int] = field(default_factory=dict)
    severity: tuple[int, ...] = ()
    _lookup: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        n = len(names)
        if not 0 < n <= 256:
            raise ConfigError(f"a class map needs 1 to 256 classes (uint8 rasters), got {n}")
        if len({_lookup_key(x) for x in names}) != n:
            raise ConfigError(f"class names must differ (ignoring case and spacing): {names}")
        colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        if len(colors) != n or any(
            len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors
        ):
            raise ConfigError(f"class map needs one RGB colour (0-255) per class, got {colors}")
        severity = tuple(int(s) for s in self.severity) if self.severity else tuple(range(n))
        if len(severity) != n:
            raise ConfigError(f"class map needs one severity per class, got {severity} for {names}")
        aliases: dict[str, int] = {normalise_alias(x): i for i, x in enumerate(names)}
        name_ids = {_lookup_key(x): i for i, x in enumerate(names)}
        for alias, cid in self.aliases.items():
            cid = int(cid)
            if not 0 <= cid < n:
                raise ConfigError(f"alias {alias!r} -> {cid}: class ids are 0..{n - 1}")
            name_id = name_ids.get(_lookup_key(alias), cid)
            if name_id != cid:
                raise ConfigError(
                    f"alias {alias!r} maps to both {names[name_id]!r} and {names[cid]!r}"
                )
            aliases[normalise_alias(alias)] = cid
        lookup: dict[str, int] = {}
        for alias, cid in aliases.items():
            key = _lookup_key(alias)
            if lookup.get(key, cid) != cid:
                raise ConfigError(
                    f"alias {alias!r} maps to both {names[lookup[key]]!r} and {names[cid]!r}"
                )
            lookup[key] = cid
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "severity", severity)
        object.__setattr__(self, "aliases", MappingProxyType(aliases))
        object.__setattr__(self, "_lookup", MappingProxyType(lookup))

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str, source: str | None = None) -> int:
        """Class id of a label (case- and spacing-insensitive).

        Args:
            name: the label as written in an annotation file.
            source: file the label came from, named in the error message.

        Raises:
            UnknownClassError: the label is neither a class name nor an alias.
        """
        cid = self._lookup.get(_lookup_key(name))
        if cid is not None:
            return cid
        where = f"{source}: " if source else ""
        # No command-line flag here: only commands that read annotations take
        # --class-alias, and they add it (pathda.cli._app.class_alias_advice).
        raise UnknownClassError(
            f"{where}unknown class {name!r}; known classes: {', '.join(self.names)} "
            f"(aliases: {', '.join(sorted(self.aliases))}); map it with an alias "
            f"'{name}=CLASS' (class_aliases, or ClassMap.with_aliases({{{name!r}: CLASS}}))",
            label=str(name),
        )

    def with_aliases(self, extra: Mapping[str, str | int]) -> ClassMap:
        """A copy with more aliases; values are class names/aliases or ids. New aliases win."""
        resolved: dict[str, int] = {}
        for alias, target in extra.items():
            if isinstance(target, str) and not target.strip().isdigit():
                resolved[alias] = self.id_of(target)
            else:
                cid = int(target)
                if not 0 <= cid < len(self.names):
                    raise ConfigError(
                        f"alias {alias!r} -> {cid}: class ids are 0..{len(self.names) - 1}"
                    )
                resolved[alias] = cid
        # An old alias redefined by a new one is replaced, not reported as a conflict.
        new_keys = {_lookup_key(a) for a in resolved}
        kept = {a: i for a, i in self.aliases.items() if _lookup_key(a) not in new_keys}
        return ClassMap(self.names, self.colors, {**kept, **resolved}, self.severity)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for provenance and checkpoints); inverse of :meth:`from_dict`."""
        return {
            "names": list(self.names),
            "colors": [list(c) for c in self.colors],
            "aliases": dict(sorted(self.aliases.items())),
            "severity": list(self.severity),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassMap:
        """Rebuild a class map written by :meth:`to_dict`.

        Raises:
            ConfigError: keys missing or values of the wrong form.
        """
        try:
            return cls(
                names=tuple(data["names"]),
                colors=tuple(tuple(c) for c in data["colors"]),
                aliases=dict(data.get("aliases", {})),
                severity=tuple(data.get("severity", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid class map {dict(data)!r}: {exc!r}") from None


def parse_class_aliases(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--class-alias NAME=CLASS`` options into a mapping for :meth:`ClassMap.with_aliases`.

    Raises:
        ConfigError: an item without '=' or with an empty side.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ConfigError(f"class alias {item!r}: expected NAME=CLASS, e.g. 'Tumor=invasive'")
        out[name.strip()] = target.strip()
    return out


BACH_CLASSES = ClassMap(
    names=("normal", "benign", "in situ", "invasive"),
    # QuPath-like defaults: grey-green normal, green benign, yellow in situ, red invasive.
    colors=((128, 128, 128), (0, 170, 0), (255, 200, 0), (220, 20, 20)),
    aliases={
        "background": 0,
        "normal tissue": 0,
        "benign lesion": 1,
        "carcinoma in situ": 2,
        "in situ carcinoma": 2,
        "dcis": 2,
        "carcinoma invasive": 3,
        "invasive carcinoma": 3,
        "idc": 3,
    },
    severity=(0, 1, 2, 3),
)
"""The BACH 2018 challenge classes (ids 0-3); BACH XML labels "Benign", "Carcinoma in situ",
"Carcinoma invasive" map to 1, 2, 3, and unannotated tissue is normal (0)."""
