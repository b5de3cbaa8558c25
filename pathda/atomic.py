"""Write-then-rename helpers so no reader ever sees a half-written file."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``final`` only if the block succeeds.

    Works for files and directories. The temporary name starts with ``.`` and ends
    with ``.partial`` so globbing for outputs never picks it up. Temporaries of the same
    output left by writers that died (kill -9, power loss) are removed first.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    remove_stale_partials(final)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    os.replace(tmp, final)


def remove_stale_partials(final: str | Path) -> list[Path]:
    """Remove ``.<name>.<pid>.partial`` siblings of ``final`` whose process is gone.

    A temporary whose pid still runs on this machine is kept (it may be a live writer).
    Returns the paths removed.
    """
    final = Path(final)
    prefix = f".{final.name}."
    removed = []
    with contextlib.suppress(OSError):
        for path in final.parent.glob(f"{glob.escape(prefix)}*.partial"):
            pid = path.name[len(prefix) : -len(".partial")]
            if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
                _remove(path)
                removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
