"""Where a tool may write, decided before it writes anything.

The rules every tool follows (docs/reliability.md):

- A file that exists is never replaced, unless the user says ``--force`` **and** the file is one
  a repeatseg export wrote (its metadata carries ``written_by``). A dataset's file, a run's file
  or any other file stays, ``--force`` or not.
- Nothing is written inside a dataset: a folder holding a VOC tree (``JPEGImages`` and
  ``ImageSets``), a ``VOCdevkit``, or a set a repeatseg generator wrote (its data marker).
- Nothing is written directly into a run folder or its ``checkpoints/`` (a subfolder the user
  names, ``RUN/eval``, is a folder of its own).
- A folder belongs to a tool only if it carries that tool's marker (``repeatseg.files.MARKER``):
  ``run`` (training), ``study``, ``data``, ``eval``, ``predictions`` and ``model`` (a model
  folder, ``repeatseg.pretrained``). Runs and studies
  written before markers existed are recognised by their checkpoint manifest or ``study.yaml``.
- A folder a tool fills (``eval_seg.py --output`` and ``--save-predictions``) must be new or
  empty; one it filled before is refilled only with ``--force``, and then only if it holds
  nothing but the files its marker lists (they are removed first, so no stale file survives).

A leaf module: it reads folders and safetensors headers, nothing of the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import OutputError  # noqa: F401  (re-exported)
from .files import MARKER, OWNER_FILE, WRITTEN_BY, marker_kind, read_marker, remove_stale_temporaries, write_marker

CHECKPOINT_FORMAT = "repeatseg-checkpoint-v1"  # engine/checkpoint.py's manifest format (older runs carry no marker)



# ------------------------------------------------------------------------------ what a folder is

def is_run_folder(folder: str | Path) -> bool:
    """A training run folder: its ``run`` marker, or (runs from before markers) a repeatseg
    checkpoint in ``checkpoints/``."""
    folder = Path(folder)
    if marker_kind(folder) == "run":
        return True
    checkpoints = folder / "checkpoints"
    if (checkpoints / "last.state.pt").is_file():
        return True
    try:
        return json.loads((checkpoints / "manifest.json").read_text()).get("format") == CHECKPOINT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def is_study_folder(folder: str | Path) -> bool:
    """A transfer study's folder: its ``study`` marker, or (older studies) ``study.yaml`` beside ``cells/``."""
    folder = Path(folder)
    return marker_kind(folder) == "study" or ((folder / "study.yaml").is_file() and (folder / "cells").is_dir())


def _is_dataset(folder: Path) -> bool:
    if marker_kind(folder) == "data":
        return True
    if (folder / "JPEGImages").is_dir() and (folder / "ImageSets").is_dir():  # a VOC2012 folder
        return True
    return folder.name == "VOCdevkit" and any(folder.glob("VOC*/JPEGImages"))


def enclosing_dataset(path: str | Path) -> Path | None:
    """The dataset ``path`` lies in (or is), or None."""
    path = Path(path).expanduser().resolve()
    for folder in (path, *path.parents):
        if folder.is_dir() and _is_dataset(folder):
            return folder
    return None


def run_holding(path: str | Path) -> Path | None:
    """The run folder ``path`` would be written directly into (``RUN/x`` or ``RUN/checkpoints/x``), or None."""
    parent = Path(path).expanduser().parent.resolve()  # the file itself may be a link: where it is, not where it points
    for folder in (parent, parent.parent) if parent.name == "checkpoints" else (parent,):
        if is_run_folder(folder):
            return folder
    return None


# ------------------------------------------------------------------------------ single files

def written_by_repeatseg(path: str | Path) -> bool:
    """Whether ``path`` is a file a repeatseg export wrote: a safetensors file whose metadata
    carries ``written_by``, or an ONNX file whose metadata properties do."""
    path = Path(path)
    try:
        if path.suffix == ".onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            return any(prop.key == WRITTEN_BY for prop in model.metadata_props)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return WRITTEN_BY in (handle.metadata() or {})
    except Exception:  # noqa: BLE001 - unreadable, or not such a file: not ours
        return False


def check_output_file(path: str | Path, force: bool = False, flag: str = "--output") -> Path:
    """Refuse an output file that would replace or land among files this tool does not own (see
    the module docstring); remove the temporaries killed writes of it left. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    dataset = enclosing_dataset(path.parent)
    if dataset is not None:
        raise OutputError(f"{flag} {path} is inside the dataset {dataset}: write it outside")
    run = run_holding(path)
    if run is not None:
        raise OutputError(f"{flag} {path} would write into the run folder {run} (its files are the run's): "
                          "write it elsewhere")
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputError(f"{flag} {path} exists: choose another name, or add --force to replace a file a "
                              "repeatseg export wrote")
        if path.is_symlink() or not written_by_repeatseg(path):
            raise OutputError(f"{flag} {path} exists and was not written by a repeatseg export: it is not replaced, "
                              "even with --force (remove it yourself, or choose another name)")
    remove_stale_temporaries(path)
    return path


# ------------------------------------------------------------------------------ folders a tool fills

def _owned_files(folder: Path, kind: str) -> list[str]:
    return [str(name) for name in (read_marker(folder) or {}).get("files", [])] if marker_kind(folder) == kind else []


def check_owned_folder(folder: str | Path, kind: str, force: bool = False, flag: str = "--output",
                       dataset: str | Path | None = None) -> Path:
    """Refuse, before anything is computed, a folder a tool would fill with ``kind`` files (see the
    module docstring). ``dataset``: the data set being read (never written into)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder} is a file; give a folder")
    resolved = folder.expanduser().resolve()
    inside = enclosing_dataset(folder)
    if dataset is not None:
        root = Path(dataset).resolve()
        if resolved == root or root in resolved.parents:
            inside = root
    if inside is not None:
        raise OutputError(f"{flag} {folder} is inside the dataset ({inside}): files there could overwrite its "
                          "images or masks; choose a folder outside it")
    if is_run_folder(folder) or (folder.name == "checkpoints" and is_run_folder(folder.parent)):
        raise OutputError(f"{flag} {folder} is a training run folder: its files are the run's; choose another "
                          f"folder (e.g. {folder / kind})")
    entries = sorted(p.name for p in folder.iterdir() if p.name not in (MARKER, OWNER_FILE)) if folder.is_dir() else []
    if not entries:
        return folder
    if marker_kind(folder) != kind:
        raise OutputError(f"{flag} {folder} is not empty and not a {kind} folder a repeatseg tool made (it holds "
                          f"{', '.join(entries[:5])}): choose a new or empty folder")
    if not force:
        raise OutputError(f"{flag} {folder} holds earlier {kind} files ({', '.join(entries[:3])}, ...): choose a new "
                          "folder, or add --force to replace them")
    owned = set(_owned_files(folder, kind))
    foreign = [name for name in entries if name not in owned]
    if foreign:
        raise OutputError(f"{flag} {folder} holds files its {kind} marker does not list ({', '.join(foreign[:5])}): "
                          "not replaced, even with --force; move them away or choose another folder")
    return folder


def fill_owned_folder(folder: str | Path, kind: str, files: list[str], **info) -> Path:
    """Take a folder ``check_owned_folder`` accepted: remove the files an earlier fill listed,
    then mark it as this fill's (``files``: the names it will write)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in _owned_files(folder, kind):
        if Path(name).name == name:  # a marker only ever lists plain names
            (folder / name).unlink(missing_ok=True)
    write_marker(folder, kind, files=list(files), **info)
    return folder
