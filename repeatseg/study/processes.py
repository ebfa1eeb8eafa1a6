"""The study processes sharing this host, and the one thread count a study's units all run at.

Every study process holds a kernel lock (``filelock``: ``flock`` on Linux) on its own file,
``<study>/.processes/<host>-<pid>.lock``, from its first ``run_study`` on that folder until it
exits. A sibling on the same host is live exactly when its file is locked: the kernel drops the
lock when a process dies, however it dies, so a crashed process is never counted (and the next
count removes its file). Files of other hosts are left alone (a lock there says nothing here, and
``flock`` across NFS is not to be trusted).

The thread count (``train.threads``, part of every unit's recipe: results reproduce at the same
count) is fixed once per study and recorded in ``study.yaml`` as a ``train.threads=N`` entry of
``seg_sets`` and ``pretrain.sets``: given (``--threads``, or in those sets), else the count an
earlier process of the study recorded, else ``repeatseg.threads.default_threads`` over the
live study processes on this host (for ``--shard``, counted after a short wait so that shards
started together see each other). A process that would crowd the host (processes x threads > cores) says so before
each unit that starts while it does.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from ..config import StudyConfig, load_config, save_config
from ..errors import ConfigError, FolderClaimedError
from ..threads import default_threads, environment_threads, oversubscription

FOLDER = ".processes"
LOCK_WAIT_S = 120.0  # the longest another process may take to choose and record the count
SETTLE_S = 2.0  # how long a process waits, registered, before counting siblings to choose a thread count
THREADS_KEY = "train.threads"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


class Registration:
    """This process's lock file in a study folder (see the module doc)."""

    def __init__(self, study_dir: str | Path):
        self.folder = Path(study_dir) / FOLDER
        self.path = self.folder / f"{_host()}-{os.getpid()}.lock"
        self.lock: FileLock | None = None
        self.said: int | None = None  # the crowding last reported (processes), so it is said once

    def open(self) -> Registration:
        """Take the lock; on a file system without ``flock`` (some network mounts) stay unregistered
        and count this process alone (a lock that outlived its process would count it forever)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = _kernel_lock(self.path)
        try:
            lock.acquire()
        except OSError as error:
            warnings.warn(f"{self.path}: no kernel lock on this file system ({error}); study processes on this "
                          "host are not counted (give --threads)", stacklevel=2)
            return self
        self.lock = lock
        return self

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.path.unlink(missing_ok=True)
            self.lock = None

    def live_on_host(self) -> int:
        """Live study processes on this host, this one included; files of dead ones are removed."""
        live = 1
        if self.lock is None:
            return live
        for path in self.folder.glob(f"{_host()}-*.lock"):
            if path == self.path or not path.stem[len(_host()) + 1:].isdigit():
                continue
            probe = _kernel_lock(path)
            try:
                probe.acquire()
            except Timeout:
                live += 1  # its owner holds it: alive
                continue
            except OSError:  # vanished meanwhile: not a live sibling
                continue
            try:
                path.unlink(missing_ok=True)  # its owner died without cleaning up
            finally:
                probe.release()
        return live

    def say_if_crowded(self, threads: int, say: Callable[[str], None]) -> int:
        """Count the live processes; say so when they crowd the host (once per count). Returns the count."""
        processes = self.live_on_host()
        crowded = oversubscription(processes, threads)
        if crowded and processes != self.said:
            say(f"{crowded} (study processes on this host: {self.folder})")
        self.said = processes if crowded else None
        return processes


def _kernel_lock(path: Path) -> FileLock:
    """A non-blocking ``flock`` on ``path``, never the existence-only fallback."""
    return FileLock(path, timeout=0, is_singleton=False, fallback_to_soft=False)


_REGISTERED: dict[Path, Registration] = {}


def register(study_dir: str | Path) -> Registration:
    """This process's registration in ``study_dir``, made on the first call and held until the
    process exits (the kernel frees it if the process dies first)."""
    key = Path(study_dir).resolve()
    if key not in _REGISTERED:
        _REGISTERED[key] = Registration(study_dir).open()
        atexit.register(_REGISTERED[key].close)
    return _REGISTERED[key]


def sets_threads(sets: list[str]) -> int | None:
    """The last ``train.threads=N`` among ``--set`` strings, or None."""
    found = None
    for item in sets:
        key, _, value = item.partition("=")
        if key.strip() == THREADS_KEY and value.strip().isdigit():
            found = int(value)
    return found


def study_threads(study: StudyConfig) -> int | None:
    return sets_threads(study.seg_sets) or sets_threads(study.pretrain.sets)


def at_threads(study: StudyConfig, threads: int) -> StudyConfig:
    """A copy of ``study`` whose units run at ``threads``."""
    def replaced(sets: list[str]) -> list[str]:
        return [*(s for s in sets if s.partition("=")[0].strip() != THREADS_KEY), f"{THREADS_KEY}={threads}"]

    return dataclasses.replace(study, seg_sets=replaced(study.seg_sets),
                               pretrain=dataclasses.replace(study.pretrain, sets=replaced(study.pretrain.sets)))


def recorded_threads(study_dir: Path) -> int | None:
    """The count ``study.yaml`` records, if the folder holds one."""
    path = Path(study_dir) / "study.yaml"
    return study_threads(load_config(StudyConfig, [path])) if path.is_file() else None


def at_recorded_threads(study: StudyConfig, study_dir: Path) -> StudyConfig:
    """``study`` at the count its folder records, unless it gives one (reading a finished study)."""
    recorded = recorded_threads(study_dir)
    return at_threads(study, recorded) if recorded and not study_threads(study) else study


def planned_threads(study: StudyConfig, study_dir: Path) -> int:
    """The study's count as far as it is known before this process registers: given, recorded, or
    the default for one process (the recipe check runs at it; ``fix_threads`` settles it)."""
    return study_threads(study) or recorded_threads(study_dir) or default_threads()


def units_started(study_dir: Path) -> bool:
    """Whether a unit of the study has written its run folder (so it runs at the recorded count)."""
    return any(Path(study_dir).glob("cells/*/*/config.yaml")) or any(Path(study_dir).glob("pretrain/*/*/config.yaml"))


def fix_threads(study: StudyConfig, study_dir: Path, registration: Registration, settle_s: float = SETTLE_S) -> int:
    """Settle the study's thread count (see the module doc) and record it in ``study.yaml``, under a
    lock so that processes starting together agree; returns it. A given count that differs from
    the recorded one is refused once a unit has run at the recorded one."""
    given = study_threads(study)
    lock = FileLock(registration.folder / "threads.lock", timeout=LOCK_WAIT_S)
    try:
        lock.acquire()
    except Timeout as error:
        raise FolderClaimedError(f"{lock.lock_file} has been held for {LOCK_WAIT_S:g} s: if no study process is running "
                                 "on this folder, remove it and start again") from error
    try:
        recorded = recorded_threads(study_dir)
        if given and recorded and given != recorded and units_started(study_dir):
            raise ConfigError(f"{Path(study_dir) / 'study.yaml'} records train.threads={recorded} and units have run "
                              f"at that count; --threads {given} would mix thread counts in one study (results change "
                              "with the count): drop --threads, or start another study folder")
        if not (given or recorded or environment_threads()):
            time.sleep(settle_s)  # shards started together register before any of them counts
        threads = given or recorded or default_threads(registration.live_on_host())
        save_config(at_threads(study, threads), Path(study_dir) / "study.yaml")
    finally:
        lock.release()
    return threads
