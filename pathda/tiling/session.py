"""What a tiling run does with the store at ``--out``: create, resume, append or nothing.

Rules (checked under the store lock, before anything is written):

- no store: create one for all inputs;
- unfinished store, same inputs: resume (slides not yet ``done`` are redone);
- complete store, same inputs: nothing to do;
- other inputs without ``--append``: refused (the store is never silently replaced);
- ``--append``: inputs already in the store are skipped with a warning, new ones are
  added; an unfinished earlier run is finished first. Grid settings must match.
- in every case, committed slides that fail the store's integrity check (cheap, or deep
  with ``--verify``) are rebuilt in place first (``repair``), and only those.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Literal

import zarr

from pathda.errors import ConfigError, StoreDamageError, TileStoreError
from pathda.provenance import to_jsonable
from pathda.tiling.integrity import damage_message, find_damage
from pathda.tiling.manifest import SlideSpec
from pathda.tiling.store import STORE_FORMAT, STORE_FORMAT_VERSION, TILE_COLUMNS, SlideRecord


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Decision for one run.

    Attributes:
        action: "create", "resume" (includes append) or "nothing".
        rows: the full slide table after this run is set up (existing rows first).
        todo: row indices to (re)tile, ascending.
        domains: domain names, existing ones first.
        repair: rows in ``todo`` that are committed but damaged: rebuilt in place.
    """

    action: Literal["create", "resume", "nothing"]
    rows: list[SlideSpec]
    todo: list[int]
    domains: list[str]
    repair: tuple[int, ...] = ()


def decide_run(
    out: Path, specs: list[SlideSpec], grid: dict[str, Any], append: bool, verify: bool = False
) -> RunPlan:
    """Compare the requested slides and grid with what ``out`` holds (see module docstring).

    ``verify`` checks the committed slides' checksums (reads the whole store), not only that
    their files are present with the committed sizes.
    """
    attrs = read_store_attrs(out)
    if attrs is None:
        return RunPlan("create", specs, list(range(len(specs))), _domains([], specs))
    _check_grid(out, attrs.get("grid", {}), grid)
    records = [SlideRecord.from_dict(r) for r in attrs["slides"]]
    stored = [_spec_of(r) for r in records]
    unfinished = [i for i, r in enumerate(records) if r.status == "pending"]
    if not append and stored != specs:
        state = "complete" if attrs.get("complete") else "unfinished"
        raise ConfigError(
            f"{out}: a {state} tile store of {len(stored)} other slide(s) is already here; "
            "use --append to add slides, rerun its own command to finish it, or choose "
            "another --out"
        )
    repair = _damaged_slides(out, attrs, verify)
    if not append:
        todo = sorted({*unfinished, *repair})
        if attrs.get("complete") and not todo:
            return RunPlan("nothing", stored, [], list(attrs["domains"]))
        return RunPlan("resume", stored, todo, list(attrs["domains"]), tuple(repair))
    by_path = {s.slide: s for s in stored}
    new = []
    for spec in specs:
        old = by_path.get(spec.slide)
        if old is None:
            new.append(spec)
        elif old != spec:
            raise ConfigError(
                f"{spec.slide}: already in {out} with annotation {old.annotation}, domain "
                f"{old.domain!r}, split {old.split!r}; re-tiling a slide is not supported, "
                "tile into a new store instead"
            )
        elif records[stored.index(old)].status != "pending":
            warnings.warn(f"{spec.slide}: already in {out}; skipped", stacklevel=2)
    rows = stored + new
    todo = sorted({*unfinished, *repair}) + list(range(len(stored), len(rows)))
    action = "nothing" if not todo and attrs.get("complete") else "resume"
    return RunPlan(action, rows, todo, _domains(list(attrs["domains"]), new), tuple(repair))


def _damaged_slides(out: Path, attrs: dict[str, Any], deep: bool) -> list[int]:
    """Rows of committed slides that fail the integrity check (warned about, to rebuild)."""
    damage = find_damage(out, attrs, list(TILE_COLUMNS), deep=deep)
    if any(d.slide is None for d in damage):
        raise StoreDamageError(damage_message(out, damage))
    for d in damage:
        warnings.warn(f"{d.path}: damaged in {out} ({d.reason}); rebuilding it", stacklevel=3)
    return [d.slide for d in damage]


def read_store_attrs(out: Path) -> dict[str, Any] | None:
    """The attributes of the store at ``out``, or None when there is none."""
    if not out.exists():
        return None
    if not (out / "zarr.json").is_file():
        raise TileStoreError(f"{out}: exists but is not a tile store; choose another --out")
    attrs = dict(zarr.open_group(out, mode="r", zarr_format=3).attrs)
    if attrs.get("format") != STORE_FORMAT:
        raise TileStoreError(f"{out}: exists but is not a pathda tile store; choose another --out")
    if attrs.get("format_version") != STORE_FORMAT_VERSION:
        raise TileStoreError(
            f"{out}: tile store format version {attrs.get('format_version')} was written by "
            "another pathda version; choose another --out"
        )
    return attrs


def _check_grid(out: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    wanted = to_jsonable(wanted)
    diffs = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    if diffs:
        detail = ", ".join(f"{k}: store {stored.get(k)!r} vs {wanted.get(k)!r}" for k in diffs)
        raise ConfigError(
            f"{out}: built with other grid settings ({detail}); use the same settings or "
            "another --out"
        )


def _spec_of(record: SlideRecord) -> SlideSpec:
    ann = Path(record.annotation) if record.annotation else None
    return SlideSpec(Path(record.path), ann, record.domain, record.split)


def _domains(existing: list[str], specs: list[SlideSpec]) -> list[str]:
    names = list(existing)
    for spec in specs:
        if spec.domain not in names:
            names.append(spec.domain)
    return names
