"""File I/O every layer of the package may use: atomic writes, safetensors, hashes.

A leaf module (it imports nothing from repeatseg), so that config, weights and export can write
files without reaching up into the training engine. Every write is atomic (temp file in the same
folder, fsync, rename): a kill leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """A state_dict as safetensors; tensors that share storage (a shared parent) are copied apart.
    Metadata values that are not strings are stored as JSON."""
    seen, tensors = set(), {}
    for key, value in state_dict.items():
        value = value.detach().cpu().contiguous()
        pointer = (value.untyped_storage().data_ptr(), value.storage_offset())
        tensors[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(path), device="cpu")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()
