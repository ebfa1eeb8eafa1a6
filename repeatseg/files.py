"""File I/O every layer of the package may use: atomic writes, safetensors, hashes, folder claims
(kernel locks that say who holds a folder).

A leaf module (it imports nothing from repeatseg but its errors), so that config, weights, export and the engine
can write files without reaching up into each other. Every write is atomic (temp file in the same
folder, fsync, rename): a kill leaves either the old file or the new one, never half of either,
and a failed write (disk full) raises an ``OSError`` that names the file.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import math
import os
import pickle
import re
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import CheckpointError, ConfigError, FolderClaimedError, OutputExistsError, WriteError  # noqa: F401  (re-exported)

TEMP_SUFFIX = ".tmp"  # atomic writes stage ``.<name>.<host>-<pid>-<random>.tmp`` beside their target


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (setting it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide results from a shared group


def temp_prefix(path: str | Path) -> str:
    """What an atomic write of ``path`` names its temporary: ``.<name>.<host>-<pid>-``, so a
    later run can tell a dead writer's leftover from a live writer's file (``remove_stale_temporaries``)."""
    return f".{Path(path).name}.{socket.gethostname()}-{os.getpid()}-"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, _FILE_MODE)
        os.replace(temp, path)
    except BaseException as error:
        Path(temp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # e.g. ENOSPC from write/fsync
            raise WriteError(error.errno, f"cannot write {path}: {error.strerror}") from error
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def fsync_dir(path: str | Path) -> None:
    """Make renames inside ``path`` durable (a power cut could otherwise undo them). Filesystems
    that cannot sync a directory say so with EINVAL; that is not an error."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(handle)


def weights_bytes(state_dict: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A state_dict serialised as safetensors; tensors that share storage (a shared parent) are
    copied apart. Metadata values that are not strings are stored as JSON."""
    seen, tensors = set(), {}
    for key, value in state_dict.items():
        value = value.detach().cpu().contiguous()
        pointer = (value.untyped_storage().data_ptr(), value.storage_offset())
        tensors[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    return save(tensors, metadata=meta)


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    atomic_write_bytes(path, weights_bytes(state_dict, metadata))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a damaged file is a ValueError that names it."""
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as error:
        raise CheckpointError(f"{path} is empty, truncated or not a safetensors file ({error})") from error


def load_torch(path: str | Path):
    """``torch.load(path, weights_only=True)`` on the CPU. A damaged file, or one holding Python
    objects other than tensors and containers, is a ValueError naming it; torch's own message for
    a refused pickle advises ``weights_only=False`` (running arbitrary code) and is not passed on."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: it is damaged or holds Python "
                              "objects other than tensors (refused: repeatseg never unpickles)") from error
    except Exception as error:  # noqa: BLE001 - torch raises many kinds; re-raised with the file named
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        reason = type(error).__name__ if "weights_only" in reason else reason
        raise CheckpointError(f"cannot read {path} as a weights-only torch checkpoint: {reason}") from error


def non_finite_keys(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Keys of floating-point tensors holding NaN or inf (weights nobody should train on or save)."""
    return [key for key, value in state_dict.items()
            if torch.is_floating_point(value) and not bool(torch.isfinite(value).all())]


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- leftovers

def _temp_writer(temp: Path, target_name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that staged ``temp`` for ``target_name``, or None if ``temp`` is
    not an atomic write's temporary of that name (see ``temp_prefix``)."""
    head, tail = f".{target_name}.", TEMP_SUFFIX
    name = temp.name
    if not (name.startswith(head) and name.endswith(tail)):
        return None
    parts = name[len(head):-len(tail)].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _dead_here(pid: int) -> bool:
    """Whether no process ``pid`` runs on this host (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale_temporaries(path: str | Path, stale_after: float = 600.0) -> list[Path]:
    """Delete the temporaries that killed atomic writes of ``path`` left beside it, and only
    those: a temporary is stale when its writer's pid is dead on this host, or (written from
    another host sharing the folder) it has not changed for ``stale_after`` seconds. A live
    writer's temporary, and every other file, is left alone. Returns what was removed."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"))
    except OSError:
        return removed
    for temp in candidates:
        writer = _temp_writer(temp, path.name)
        if writer is None or not temp.is_file():
            continue
        host, pid = writer
        if host == socket.gethostname():
            stale = _dead_here(pid)
        else:
            stale = time.time() - temp.stat().st_mtime > stale_after
        if stale:
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


# ------------------------------------------------------------------------------- markers

MARKER = ".repeatseg.json"  # in a folder a repeatseg tool made: what it is (run, study, data, predictions, eval, model)
MARKER_KINDS = ("run", "study", "data", "predictions", "eval", "model")
WRITTEN_BY = "written_by"  # metadata key of every weights file a repeatseg export wrote


def write_marker(folder: str | Path, kind: str, **info) -> dict:
    """Mark ``folder`` as a repeatseg ``kind`` folder (``MARKER_KINDS``): a tool replaces files only
    in folders carrying its own kind of marker. ``info`` is recorded with host, pid and time."""
    if kind not in MARKER_KINDS:
        raise ValueError(f"unknown marker kind {kind!r}; expected one of {MARKER_KINDS}")
    record = {"kind": kind, "format": 1, **info, "host": socket.gethostname(), "pid": os.getpid(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(Path(folder) / MARKER, record)
    return record


def read_marker(folder: str | Path) -> dict | None:
    """The marker of a folder a repeatseg tool made, or None (no marker, or not one of ours)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("kind") in MARKER_KINDS else None


def marker_kind(folder: str | Path) -> str | None:
    return (read_marker(folder) or {}).get("kind")


# ------------------------------------------------------------------------------- folder claims
#
# A claim is a kernel advisory lock, flock(2), on <folder>/.owner.json, held as long as the claim
# is: the kernel refuses it to every other holder while this process lives (however long it is
# stopped or suspended) and drops it when the process dies, SIGKILL included, with no heartbeat
# and no clocks to agree. The file's content (host, pid, since when) is only for messages.
#
# Where flock() is refused, or works only between processes of one host (see _local_only_locks),
# claims fall back to the owner file alone: created atomically, its mtime a heartbeat, taken over
# when its pid is dead on this host or its heartbeat is older than REPEATSEG_CLAIM_STALE_SECONDS.

OWNER_FILE = ".owner.json"
FLOCK, HEARTBEAT = "flock", "heartbeat"
LOCK_ENV = "REPEATSEG_CLAIM_LOCK"  # auto (default), flock or heartbeat
STALE_ENV = "REPEATSEG_CLAIM_STALE_SECONDS"  # the heartbeat fallback's staleness window
STALE_AFTER_S = 600.0
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}

_held: dict[Path, dict] = {}  # folders this process holds now (resolved path -> owner record)
_held_lock = threading.Lock()



class Claim(NamedTuple):
    """A claim held now: its folder, the holder's host and pid, since when (epoch s), how it is held."""

    folder: Path
    host: str
    pid: int
    started: float
    lock: str


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _mount_of(path: Path, mountinfo: str) -> tuple[str, set[str]]:
    """(file system type, mount and super-block options) of the mount holding ``path``, read
    from the text of /proc/self/mountinfo (the last of the longest matching mount points)."""
    found, longest, target = ("", set()), -1, str(path)
    for line in mountinfo.splitlines():
        mount, _, fs = line.partition(" - ")
        mount, fs = mount.split(), fs.split()
        if len(mount) < 6 or len(fs) < 3:
            continue
        point = _unescape(mount[4])
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= longest:
            longest, found = len(point), (fs[0], set(mount[5].split(",")) | set(fs[2].split(",")))
    return found


def _local_only_locks(fstype: str, options: set[str]) -> str | None:
    """Why flock() on this mount succeeds without excluding other hosts, or None where it does."""
    if fstype in ("nfs", "nfs4"):
        local = sorted(options & {"nolock", "local_lock=flock", "local_lock=all"})
        return f"{fstype} mounted with {','.join(local)}: flock() is local to each client" if local else None
    if fstype == "lustre" and "localflock" in options:
        return "lustre mounted with localflock: flock() is local to each client"
    if fstype in ("cifs", "smb3") and "nobrl" in options:
        return f"{fstype} mounted with nobrl: locks are local to each client"
    if fstype == "beegfs":
        return (f"beegfs keeps flock() local to each client unless the client config sets tuneUseGlobalFileLocks "
                f"(not visible from here; {LOCK_ENV}=flock if it does)")
    if fstype == "fuse.sshfs":
        return "sshfs: flock() is local to each client"
    return None


def claim_lock_mode(folder: str | Path, mountinfo: str | None = None) -> tuple[str, str]:
    """How claims under ``folder`` are held, and why: ``(FLOCK, ...)``, a kernel lock, or
    ``(HEARTBEAT, ...)`` where the file system's locks are known to be local to each host
    (``mountinfo``: the text of /proc/self/mountinfo, read when None). ``REPEATSEG_CLAIM_LOCK``
    (flock or heartbeat) overrides the choice. A file system that refuses flock() outright
    (NFSv3 without lockd, Lustre without -o flock) is found at the claim, which then falls back."""
    choice = os.environ.get(LOCK_ENV, "").strip().lower() or "auto"
    if choice in (FLOCK, HEARTBEAT):
        return choice, f"{LOCK_ENV}={choice}"
    if choice != "auto":
        raise ConfigError(f"{LOCK_ENV}={os.environ[LOCK_ENV]!r}: expected auto, flock or heartbeat")
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return FLOCK, "kernel lock (no mount table to check)"
    fstype, options = _mount_of(Path(folder).resolve(), mountinfo)
    reason = _local_only_locks(fstype, options)
    return (HEARTBEAT, reason) if reason else (FLOCK, f"kernel lock on {fstype or 'this file system'}")


def stale_after_s() -> float:
    """The heartbeat fallback's staleness window: ``REPEATSEG_CLAIM_STALE_SECONDS``, else 600 s."""
    text = os.environ.get(STALE_ENV, "").strip()
    if not text:
        return STALE_AFTER_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{STALE_ENV}={text!r}: expected a positive number of seconds")
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _heartbeat_age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _describe_owner(folder: Path, owner: dict | None, path: Path) -> str:
    if owner is None:
        return f"{folder} is claimed by another process ({path} is unreadable)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    beat = "" if owner.get("lock") == FLOCK else f", last heartbeat {_heartbeat_age(path):.0f} s ago"
    return (f"{folder} is in use by pid {owner.get('pid')} on host {owner.get('host')} (since {since}{beat}); "
            f"wait for it to finish or stop it, or use another folder")


# ---- kernel locks

class _NoFlock(OSError):
    """flock() is refused on this file system: claims fall back to heartbeats."""


def _same_file(handle: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle)
    return (at_path.st_dev, at_path.st_ino) == (opened.st_dev, opened.st_ino)


def _flock_now(handle: int, path: Path) -> bool:
    """Take ``handle``'s exclusive lock without waiting; False when another holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in _NO_FLOCK:
            raise _NoFlock(error.errno, f"flock() on {path} failed: {error.strerror}") from error
        raise
    return True


def _open_to_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)  # NFS locks a file for writing only
    except PermissionError:
        return os.open(path, os.O_RDONLY)  # another user's owner file: a local lock needs no write access


def _lock_owner_file(folder: Path, owner: dict) -> int:
    """Lock ``<folder>/.owner.json`` and put a locked file holding ``owner`` in its place; returns
    that file's handle. The record is locked before anything at the path is touched (so a refused
    flock() changes nothing) and renamed into place, so a reader never sees half of it. The old
    file's lock is checked to be that of the file at the path still: its holder may have removed
    it while this process waited."""
    path = folder / OWNER_FILE
    handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{OWNER_FILE}.", suffix=TEMP_SUFFIX)
    try:
        _flock_now(handle, Path(temp))  # a file only this process has opened: refused only if flock() is
        for _ in range(10):
            current = _open_to_lock(path)
            try:
                if not _flock_now(current, path):
                    raise FolderClaimedError(_describe_owner(folder, _read_owner(path), path))
                if _same_file(current, path):
                    os.write(handle, json.dumps(owner).encode())
                    os.fsync(handle)  # other NFS clients read it while it stays open here
                    os.fchmod(handle, _FILE_MODE)
                    os.replace(temp, path)
                    return handle
            finally:
                os.close(current)  # the old file's lock: the new one is held by ``handle``
        raise FolderClaimedError(f"{folder}: could not claim it, other processes keep claiming it")
    except BaseException:
        os.close(handle)
        Path(temp).unlink(missing_ok=True)
        raise


def _release_lock(handle: int, path: Path) -> None:
    try:
        if _same_file(handle, path):
            path.unlink(missing_ok=True)  # while still locked: a waiter then sees it is gone
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)  # also for copies of the handle that forked children hold
        os.close(handle)


# ---- the heartbeat fallback

def _is_stale(path: Path, owner: dict | None, stale_after: float) -> bool:
    """Dead on this host, or silent for longer than ``stale_after`` seconds (any host)."""
    if _heartbeat_age(path) > stale_after:
        return True
    if owner is None:
        return False  # unreadable but fresh: leave it to its writer
    return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1)))


def _break_stale(path: Path, stale: dict | None, token: str) -> None:
    """Move a stale owner file aside; if it turns out to be a fresh claim (a race), put it back."""
    aside = path.with_name(f"{path.name}.{token}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else broke it first
    moved = _read_owner(aside)
    if stale is not None and moved is not None and moved.get("token") != stale.get("token"):
        try:
            os.link(aside, path)  # a fresh claim was moved by mistake: restore it
        finally:
            aside.unlink(missing_ok=True)
        raise FolderClaimedError(_describe_owner(path.parent, moved, path))
    aside.unlink(missing_ok=True)


def _create_exclusive(temp: Path, path: Path) -> None:
    """Put ``temp``'s content at ``path`` only if ``path`` does not exist (FileExistsError otherwise).
    A hard link is atomic with its content, also on NFS; filesystems without hard links get an
    O_EXCL create, whose content a reader may briefly see empty (such a claim counts as held)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE)
        with os.fdopen(handle, "wb") as out:
            out.write(temp.read_bytes())


def _take_heartbeat(folder: Path, owner: dict, stale_after: float) -> None:
    """Create the owner file atomically, breaking a stale one."""
    path = folder / OWNER_FILE
    temp = folder / f".{OWNER_FILE}.{owner['token']}{TEMP_SUFFIX}"
    temp.write_text(json.dumps(owner))
    try:
        for _ in range(5):
            try:
                _create_exclusive(temp, path)
                return
            except FileExistsError:
                holder = _read_owner(path)
                if not _is_stale(path, holder, stale_after):
                    raise FolderClaimedError(_describe_owner(folder, holder, path)) from None
                _break_stale(path, holder, owner["token"])
        raise FolderClaimedError(f"{folder}: could not claim it, other processes keep claiming it")
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def _heartbeat(path: Path, token: str, stale_after: float):
    """Touch ``path`` every ``stale_after / 10`` s; on exit remove it if it is still this claim."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(stale_after / 10):
            try:
                os.utime(path)
            except OSError:
                pass

    thread = threading.Thread(target=beat, name=f"claim:{path.parent}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if (_read_owner(path) or {}).get("token") == token:
            path.unlink(missing_ok=True)


# ---- claims

def _take(folder: Path, owner: dict, stale_after: float | None) -> int | None:
    """Claim ``folder`` for ``owner`` the way its file system allows: the locked handle, or None
    for a heartbeat claim (``owner['lock']`` says which; a refused flock() falls back)."""
    if owner["lock"] == FLOCK:
        try:
            return _lock_owner_file(folder, owner)
        except _NoFlock as error:
            owner["lock"], owner["lock_reason"] = HEARTBEAT, str(error)
    _take_heartbeat(folder, owner, stale_after_s() if stale_after is None else stale_after)
    return None


@contextmanager
def claim_run_folder(folder: str | Path, stale_after: float | None = None):
    """Hold ``folder`` for this process: no other process (or job on another host sharing the
    folder) can claim it until the block ends. Yields the owner record.

    The claim is a kernel lock on ``<folder>/.owner.json``, which holds host, pid, start time
    and how the claim is held (``lock``: flock or heartbeat, see ``claim_lock_mode``). Nobody
    can take it while this process lives, stopped or not; the kernel drops it when the process
    (and any child it forked while holding it) has exited, so a killed job's folder is free at
    once, and the owner file it leaves is taken over. Where locks are local to each host, or
    refused, the owner file alone is the claim, touched every ``stale_after / 10`` s, and taken
    over when its pid is dead on this host or it is silent for ``stale_after`` seconds
    (``REPEATSEG_CLAIM_STALE_SECONDS``, default 600; hosts' clocks must agree to well within it).
    A folder this process already holds is refused too. ``FolderClaimedError`` names the live
    holder. A folder this call created is removed again if it is left empty.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} is a file, not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key, path = folder.resolve(), folder / OWNER_FILE
    try:
        mode, reason = claim_lock_mode(folder)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                 "token": uuid.uuid4().hex, "lock": mode, "lock_reason": reason}
        with _held_lock:  # one claim at a time in this process: a folder it holds is never opened twice
            mine = _held.get(key)
            if mine is not None and mine["pid"] == os.getpid():  # (a forked child's copy is not its own)
                raise FolderClaimedError(_describe_owner(folder, mine, path) + " (this process)")
            handle = _take(folder, owner, stale_after)
            _held[key] = owner
    except BaseException:
        _remove_if_empty(folder, created)
        raise
    try:
        if handle is None:
            with _heartbeat(path, owner["token"], stale_after_s() if stale_after is None else stale_after):
                yield owner
        else:
            try:
                yield owner
            finally:
                _release_lock(handle, path)
    finally:
        with _held_lock:
            _held.pop(key, None)
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        try:
            folder.rmdir()  # only if empty: a run that wrote nothing leaves nothing
        except OSError:
            pass


def _locked_files() -> set[tuple[int, int, int]]:
    """(device major, minor, inode) of every file a process on this host holds a lock on, from
    /proc/locks; empty where it is missing or lists nothing."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return set()
    found = set()
    for field in text.split():
        parts = field.split(":")
        if len(parts) == 3 and all(parts):
            try:
                found.add((int(parts[0], 16), int(parts[1], 16), int(parts[2])))
            except ValueError:
                pass
    return found


def live_claims(root: str | Path) -> list[Claim]:
    """The claims on ``root`` and the folders under it that processes on this host hold now.

    For counting the study processes of one host (to share its cores, say). A kernel-locked claim
    is live while its owner file is locked (/proc/locks; where that lists nothing, while its pid
    lives), a heartbeat claim while its pid lives and it is not stale. Other hosts' claims are
    left out: their locks cannot be seen from here without taking them.
    """
    host, me, locked = socket.gethostname(), os.getpid(), _locked_files()
    with _held_lock:
        mine = {folder: dict(owner) for folder, owner in _held.items() if owner["pid"] == me}
    claims = []
    for path in sorted(Path(root).rglob(OWNER_FILE)):
        folder = path.parent
        owner = mine.get(folder.resolve()) or _read_owner(path)  # this process's own are not reopened
        if owner is None or owner.get("host") != host:
            continue
        pid, lock = int(owner.get("pid", -1)), owner.get("lock", HEARTBEAT)
        if lock == FLOCK:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            live = ((os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino) in locked if locked
                    else _pid_alive(pid))
        else:
            live = _pid_alive(pid) and not _is_stale(path, owner, stale_after_s())
        if live or folder.resolve() in mine:
            claims.append(Claim(folder, owner.get("host"), pid, float(owner.get("started", 0)), lock))
    return claims
