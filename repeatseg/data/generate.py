"""Writing a built-in data set once: atomically, by one process, and never over another set.

Every generator (digits, synthetic VOC, synthetic ImageNet, and any new one) calls
``generate_once(folder, recipe, write)``:

- **Recorded.** The finished set carries a data marker (``repeatseg.files.MARKER``, kind ``data``)
  holding its ``recipe``: the generator's name and every argument that decides its content. A
  later call with the same recipe finds it and writes nothing; one with another recipe is refused,
  naming the arguments that differ (so runs already evaluated on a set never see other scenes).
- **Atomic.** ``write`` fills a temporary sibling (``.<name>.<host>-<pid>.partial``); the marker is
  written last and the sibling renamed into place. A kill, a full disk or a read-only file system
  leaves no half set at ``folder``; what a killed writer left aside is removed by the next writer.
- **Claimed.** A kernel lock (``filelock``, on ``.<name>.lock`` beside the set) lets one process
  write while the others wait, then find the set finished. The kernel drops the lock when its
  holder dies, so a killed writer never blocks the next one.

A folder that exists and is not such a set is never written into: it is refused, unless the
caller accepts it (``accept``: a set of another recipe, or one written before markers existed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from ..extras import require
from ..files import fsync_dir, read_marker, write_marker
from .voc import DataError

filelock = require("filelock", extra="train")
FileLock, Timeout = filelock.FileLock, filelock.Timeout

PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"


def recipe_differences(found: dict, wanted: dict) -> list[str]:
    """``key: found -> wanted`` for every argument the two recipes disagree on."""
    keys = sorted(set(found) | set(wanted))
    return [f"{key}: {found.get(key)!r} -> {wanted.get(key)!r}" for key in keys if found.get(key) != wanted.get(key)]


Accept = Callable[[Path, "dict | None"], bool]


def _check_existing(folder: Path, recipe: dict, accept: Accept | None) -> bool:
    """True if ``folder`` already holds a set to use (``recipe``'s, or one ``accept`` takes);
    False if it is absent or an empty folder; a DataError for anything else."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a data set folder")
    marker = read_marker(folder)
    found = marker.get("recipe") if marker is not None and marker.get("kind") == "data" else None
    if found == recipe:
        return True
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return False
    if accept is not None and accept(folder, found):
        return True
    if found is not None:
        differences = recipe_differences(found, recipe)
        raise DataError(f"{folder} holds a {found.get('generator', 'generated')} set written with other arguments "
                        f"({'; '.join(differences)}): runs evaluated on it would see other data. Choose another "
                        "folder, or remove this one if nothing depends on it")
    raise DataError(f"{folder} exists and is not a data set a repeatseg generator wrote (it holds "
                    f"{', '.join(entries[:5])}): choose a new or empty folder")


def _partial_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.{socket.gethostname()}-{os.getpid()}{PARTIAL_SUFFIX}"


def _remove_leftovers(folder: Path) -> None:
    """Partial sets killed writers left beside ``folder`` (only called while holding its lock)."""
    for partial in folder.parent.glob(f".{folder.name}.*{PARTIAL_SUFFIX}"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)


def _lock(folder: Path, wait_s: float) -> FileLock:
    """Hold ``folder``'s generation lock; says so once if another process holds it."""
    lock = FileLock(str(folder.parent / f".{folder.name}{LOCK_SUFFIX}"))
    try:
        lock.acquire(timeout=0)
        return lock
    except Timeout:
        print(f"waiting for another process that is writing {folder} ...", file=sys.stderr, flush=True)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout as error:
        raise DataError(f"gave up after {wait_s:.0f} s waiting for another process writing {folder}") from error
    return lock


def generate_once(folder: str | Path, recipe: dict, write: Callable[[Path], object], *,
                  accept: Accept | None = None, wait_s: float = 6 * 3600.0) -> Path:
    """Make sure ``folder`` holds the set ``recipe`` describes, calling ``write(partial_folder)``
    to write it if it does not (see the module docstring). ``recipe`` is JSON-able and names the
    generator (``{"generator": "digits", "seed": 0, ...}``). ``accept(folder, found_recipe)`` may
    take an existing set of another recipe (``found_recipe`` None: one without a marker, written
    before markers existed), as a config that only needs *a* set of that kind does. Returns ``folder``.

    A DataError names the folder for: another set there (and the differing arguments), a
    non-empty folder that is no set, or a write that failed (read-only file system, disk full).
    """
    folder = Path(folder).expanduser()
    recipe = json.loads(json.dumps(recipe))  # as the marker will hold it (tuples become lists)
    if _check_existing(folder, recipe, accept):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(folder, wait_s)
    except OSError as error:
        raise DataError(f"cannot write the data set {folder}: {error.strerror or error}") from error
    try:
        if _check_existing(folder, recipe, accept):  # another process wrote it while we waited
            return folder
        _remove_leftovers(folder)
        partial = _partial_path(folder)
        try:
            partial.mkdir()
            write(partial)
            write_marker(partial, "data", recipe=recipe)
            fsync_dir(partial)
            if folder.exists():
                folder.rmdir()  # empty (checked above)
            partial.rename(folder)
            fsync_dir(folder.parent)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(error, OSError):
                raise DataError(f"cannot write the data set {folder}: {error.strerror or error}"
                                + (f" ({error.filename})" if error.filename else "")) from error
            raise
    finally:
        lock.release()
    return folder


def holds(folder: str | Path, recipe: dict) -> bool:
    """Whether ``folder`` already holds the finished set ``recipe`` describes."""
    marker = read_marker(folder)
    return marker is not None and marker.get("kind") == "data" and marker.get("recipe") == json.loads(json.dumps(recipe))
