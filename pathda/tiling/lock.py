"""One writer per store: a lock file ``<store>.lock`` holding the writer's pid and host.

The file is created with ``O_CREAT | O_EXCL``, so two processes cannot both succeed.
A lock left by a process that died on this host (its pid no longer runs) is taken
over with a warning; a lock from another host is never taken over automatically.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import warnings
from collections.abc import Iterator
from pathlib import Path

from pathda.errors import StoreLockedError


def lock_path(store: Path) -> Path:
    """The lock file beside ``store``."""
    return store.with_name(store.name + ".lock")


@contextlib.contextmanager
def store_lock(store: str | Path) -> Iterator[Path]:
    """Hold the write lock of ``store`` for the duration of the block."""
    path = lock_path(Path(store))
    path.parent.mkdir(parents=True, exist_ok=True)
    _acquire(path)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _acquire(path: Path) -> None:
    me = {"pid": os.getpid(), "host": platform.node()}
    for _ in range(2):  # second try after removing a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if not _is_stale(owner):
                raise StoreLockedError(
                    f"{path}: store is being written by pid {owner.get('pid')} on "
                    f"{owner.get('host')}; wait for it, or delete the lock file if that "
                    "process is gone"
                ) from None
            warnings.warn(
                f"{path}: taking over a stale lock of dead pid {owner.get('pid')}",
                stacklevel=3,
            )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise StoreLockedError(f"{path}: could not take the store lock; another writer raced us")


def _read_owner(path: Path) -> dict:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        owner = {}
    return owner if isinstance(owner, dict) else {}


def _is_stale(owner: dict) -> bool:
    """True when the lock's owner is a dead process on this host."""
    if owner.get("host") != platform.node():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        # An empty file may be a live writer that has not filled it yet: never stale.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False
