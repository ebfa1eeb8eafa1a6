"""Run-folder checkpoints: several files committed as one unit, verified before a resume.

A checkpoint is ``checkpoints/last.safetensors`` and ``best.safetensors`` (the model's state_dict
under the names its builder gives, with metadata), ``last.state.pt`` (optimiser, scheduler,
scaler, progress and RNG states, read with ``torch.load(weights_only=True)``), and
``manifest.json``, which names those files with their sha256, the epoch and step, and the size
of ``metrics.jsonl`` at that moment.

Committing (``commit``) is a small redo log, so a kill at any instant leaves one consistent
checkpoint: the new files are written into ``checkpoints/.pending/``, then the pending manifest
is written atomically (the commit point), then the files are renamed into place, the manifest
last. ``recover`` finishes a committed write or discards an uncommitted one, and removes
temporaries. ``last.state.pt`` is moved first, so "``last.state.pt`` exists" still means "a
checkpoint exists" to the study runner and the Makefile.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import torch

from ..checkpoint_files import BEST, CHECKPOINT_DIR, MANIFEST, STATE, TENSORBOARD_DIR, WEIGHTS  # noqa: F401  (re-exported)
from ..errors import CheckpointError  # noqa: F401  (re-exported)
from ..files import (  # noqa: F401  (re-exported: the engine's one import for file I/O)
    MARKER,
    OWNER_FILE,
    TEMP_SUFFIX,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    load_torch,
    load_weights,
    save_weights,
    sha256_of,
    write_json,
)

PENDING = ".pending"
FORMAT = "repeatseg-checkpoint-v1"
# What a run folder may hold; a fresh run refuses a folder holding anything else.
RUN_FILES = {"config.yaml", "metrics.jsonl", "metrics.json", CHECKPOINT_DIR, TENSORBOARD_DIR, OWNER_FILE, MARKER}



def state_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_state(path: str | Path, state: dict) -> None:
    atomic_write_bytes(path, state_bytes(state))


def load_state(path: str | Path) -> dict:
    """``last.state.pt``, weights-only (see ``repeatseg.files.load_torch``)."""
    try:
        return load_torch(path)
    except ValueError as error:
        raise CheckpointError(str(error)) from error


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_weights(path)
    except ValueError as error:
        raise CheckpointError(str(error)) from error


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# ------------------------------------------------------------------------------------ commit

def commit(checkpoint_dir: str | Path, files: dict[str, bytes], record: dict) -> dict:
    """Write ``files`` (name -> bytes) as one checkpoint with ``record`` (epoch, step, ...) in its
    manifest. Files of the previous checkpoint that are not rewritten (``best`` when it did not
    improve) stay and keep their hash. Returns the manifest."""
    checkpoint_dir = Path(checkpoint_dir)
    roll_forward(checkpoint_dir)
    hashes = _kept_hashes(checkpoint_dir, exclude=set(files))
    pending = checkpoint_dir / PENDING
    pending.mkdir(parents=True)
    manifest = dict(record, format=FORMAT, files=hashes)
    try:
        for name, data in files.items():
            atomic_write_bytes(pending / name, data)
            hashes[name] = hashlib.sha256(data).hexdigest()
        fsync_dir(pending)
        atomic_write_text(pending / MANIFEST, json.dumps(manifest, indent=2) + "\n")  # the commit point
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)  # e.g. disk full: the previous checkpoint stands
        raise
    roll_forward(checkpoint_dir)
    return manifest


def _kept_hashes(checkpoint_dir: Path, exclude: set[str]) -> dict[str, str]:
    previous = (_read_json(checkpoint_dir / MANIFEST) or {}).get("files", {})
    return {name: previous.get(name) or sha256_of(checkpoint_dir / name)
            for name in (WEIGHTS, BEST, STATE) if name not in exclude and (checkpoint_dir / name).is_file()}


def roll_forward(checkpoint_dir: str | Path) -> bool:
    """Finish an interrupted commit (its pending manifest exists) or discard it (it does not).
    Idempotent, so a kill during this is repaired by the next call. True if one was finished."""
    checkpoint_dir = Path(checkpoint_dir)
    pending = checkpoint_dir / PENDING
    if not pending.is_dir():
        return False
    manifest = _read_json(pending / MANIFEST)
    if manifest is None:  # never committed: the previous checkpoint stands
        shutil.rmtree(pending)
        return False
    # A file named by the manifest but no longer pending has been moved already.
    names = sorted((name for name in manifest["files"] if (pending / name).is_file()), key=lambda n: n != STATE)
    for name in names:
        (pending / name).replace(checkpoint_dir / name)
    (pending / MANIFEST).replace(checkpoint_dir / MANIFEST)
    fsync_dir(checkpoint_dir)
    shutil.rmtree(pending)
    return True


def committed(checkpoint_dir: str | Path) -> bool:
    """A checkpoint exists, or will once ``roll_forward`` finishes its committed write."""
    checkpoint_dir = Path(checkpoint_dir)
    return (checkpoint_dir / STATE).is_file() or (checkpoint_dir / PENDING / MANIFEST).is_file()


def verify(checkpoint_dir: str | Path) -> dict | None:
    """The manifest, after checking every file it names against its sha256; None for a
    checkpoint written before manifests existed (it is resumed unchecked)."""
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_dir / MANIFEST
    if not path.is_file():
        return None
    manifest = _read_json(path)
    if manifest is None or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path} is damaged or not a repeatseg checkpoint manifest")
    for name, digest in manifest["files"].items():
        file = checkpoint_dir / name
        if not file.is_file():
            raise CheckpointError(f"{file} is missing, though {path} names it")
        if sha256_of(file) != digest:
            raise CheckpointError(f"{file} does not match its sha256 in {path}: it was changed or damaged "
                                  "after it was written, so this checkpoint cannot be resumed")
    return manifest


def check_against_manifest(path: str | Path) -> None:
    """For a weights file inside a run's ``checkpoints/`` (evaluated or exported on its own):
    refuse it if the manifest there names it with another sha256."""
    path = Path(path)
    digest = ((_read_json(path.parent / MANIFEST) or {}).get("files") or {}).get(path.name)
    if digest is not None and sha256_of(path) != digest:
        raise CheckpointError(f"{path} does not match its sha256 in {path.parent / MANIFEST}: it was changed or "
                              "damaged after it was written")


# ------------------------------------------------------------------------------- run folder

def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and (path.name.endswith(TEMP_SUFFIX) or path.name.endswith(".stale"))


def remove_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete what killed atomic writes left (``.<name>.<random>.tmp``); call only while the
    folder is claimed, when no other process writes there."""
    run_dir = Path(run_dir)
    removed = [p for folder in (run_dir, run_dir / CHECKPOINT_DIR) if folder.is_dir()
               for p in folder.iterdir() if p.is_file() and _is_temporary(p)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def foreign_entries(run_dir: str | Path) -> list[str]:
    """What a folder holds besides the files of a run that never reached its first checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p.name for p in run_dir.iterdir() if p.name not in RUN_FILES and not _is_temporary(p)]
    checkpoints = run_dir / CHECKPOINT_DIR
    if checkpoints.is_dir():
        found += [f"checkpoints/{p.name}" for p in checkpoints.iterdir()
                  if p.name != PENDING and not _is_temporary(p)]
    return sorted(found)


def folder_entries(folder: str | Path) -> list[str]:
    """What a folder holds besides a claim on it and the temporaries of killed writes."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != OWNER_FILE and not _is_temporary(p))


def recover(run_dir: str | Path) -> None:
    """Before a resume: finish or discard an interrupted checkpoint write, remove temporaries."""
    roll_forward(Path(run_dir) / CHECKPOINT_DIR)
    remove_temporaries(run_dir)


def discard_aborted(run_dir: str | Path) -> None:
    """Before a fresh start: drop what an attempt that never reached a checkpoint left behind
    (its log and event files, a first checkpoint not yet moved into place, temporaries)."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / CHECKPOINT_DIR / PENDING, ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)  # its curves, like its log
    remove_temporaries(run_dir)


def truncate(path: str | Path, size: int) -> bool:
    """Cut ``path`` back to ``size`` bytes (records written after the checkpoint); True if it was longer."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size <= size:
        return False
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return True

