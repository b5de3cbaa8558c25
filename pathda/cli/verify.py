"""``pathda verify``: check a tile store's files against the checksums its writer recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from pathda.cli._app import QuietOption, app


@app.command()
def verify(
    store: Path = typer.Argument(..., help="Tile store folder written by `pathda tile`."),
    quiet: bool = QuietOption,
) -> None:
    """Deep-check a tile store: every slide's patches and labels against their checksums."""
    from pathda.errors import StoreDamageError
    from pathda.tiling import TileStore
    from pathda.tiling.integrity import damage_message

    opened = TileStore(store, allow_incomplete=True, check=False)
    damage = opened.verify(deep=True)
    if damage:
        raise StoreDamageError(damage_message(opened.path, damage))
    if not quiet:
        state = "" if opened.complete else " (unfinished: committed slides only)"
        typer.echo(
            f"{store}: intact{state}: {len(opened.slides)} slides, {len(opened)} tiles, "
            "checksums verified",
            err=True,
        )
