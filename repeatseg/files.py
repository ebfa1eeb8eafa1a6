"""File I/O every layer of the package may use: atomic writes, safetensors, hashes, folder claims.

A leaf module (it imports nothing from repeatseg), so that config, weights, export and the engine
can write files without reaching up into each other. Every write is atomic (temp file in the same
folder, fsync, rename): a kill leaves either the old file or the new one, never half of either,
and a failed write (disk full) raises an ``OSError`` that names the file.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import pickle
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

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
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from error
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
        raise ValueError(f"{path} is empty, truncated or not a safetensors file ({error})") from error


def load_torch(path: str | Path):
    """``torch.load(path, weights_only=True)`` on the CPU. A damaged file, or one holding Python
    objects other than tensors and containers, is a ValueError naming it; torch's own message for
    a refused pickle advises ``weights_only=False`` (running arbitrary code) and is not passed on."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"cannot read {path} as a weights-only torch checkpoint: it is damaged or holds Python "
                         "objects other than tensors (refused: repeatseg never unpickles)") from error
    except Exception as error:  # noqa: BLE001 - torch raises many kinds; re-raised with the file named
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        reason = type(error).__name__ if "weights_only" in reason else reason
        raise ValueError(f"cannot read {path} as a weights-only torch checkpoint: {reason}") from error


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

MARKER = ".repeatseg.json"  # in a folder a repeatseg tool made: what it is (run, study, data, predictions, eval)
MARKER_KINDS = ("run", "study", "data", "predictions", "eval")
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

OWNER_FILE = ".owner.json"
STALE_AFTER_S = 600.0


class FolderClaimedError(RuntimeError):
    """Another live process holds the folder; the message names it (host, pid, since when)."""


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
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _heartbeat_age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _is_stale(path: Path, owner: dict | None, stale_after: float) -> bool:
    """Dead on this host, or silent for longer than ``stale_after`` seconds (any host)."""
    if _heartbeat_age(path) > stale_after:
        return True
    if owner is None:
        return False  # unreadable but fresh: leave it to its writer
    return owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1)))


def _describe_owner(folder: Path, owner: dict | None, path: Path) -> str:
    if owner is None:
        return f"{folder} is claimed by another process ({path} is unreadable)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return (f"{folder} is in use by pid {owner.get('pid')} on host {owner.get('host')} (since {since}, "
            f"last heartbeat {_heartbeat_age(path):.0f} s ago); wait for it to finish or stop it, "
            f"or use another folder")


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


def _take(folder: Path, owner: dict, stale_after: float) -> None:
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
def claim_run_folder(folder: str | Path, stale_after: float = STALE_AFTER_S):
    """Hold ``folder`` for this process: no other process (or job on another host sharing the
    folder) can claim it until the block ends. Yields the owner record.

    The claim is ``<folder>/.owner.json`` (host, pid, start time, token), created atomically; a
    thread touches it every ``stale_after / 10`` seconds. A claim is stale, and is taken over,
    when its pid is dead on this host or its heartbeat is older than ``stale_after`` seconds
    (any host: hosts' clocks must agree to well within that). So a SIGKILLed job never holds a
    folder forever, and a suspended one loses it after ``stale_after``. ``FolderClaimedError``
    names the live holder. A folder this call created is removed again if it is left empty.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": uuid.uuid4().hex}
    path = folder / OWNER_FILE
    _take(folder, owner, stale_after)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(stale_after / 10):
            try:
                os.utime(path)
            except OSError:
                pass

    heartbeat = threading.Thread(target=beat, name=f"claim:{folder}", daemon=True)
    heartbeat.start()
    try:
        yield owner
    finally:
        stop.set()
        heartbeat.join()
        if (_read_owner(path) or {}).get("token") == owner["token"]:
            path.unlink(missing_ok=True)
        if created:
            try:
                folder.rmdir()  # only if empty: a run that wrote nothing leaves nothing
            except OSError:
                pass
