"""Checkpoint files, always written atomically (temp file + rename): a kill leaves the old file intact.

A run folder holds ``checkpoints/last.safetensors`` and ``best.safetensors`` (the model's
state_dict under the names its builder gives, with metadata), and ``last.state.pt``: optimiser,
scheduler, scaler, progress and RNG states, readable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
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
    """A state_dict as safetensors; tensors that share storage (a shared parent) are copied apart."""
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


def save_state(path: str | Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
