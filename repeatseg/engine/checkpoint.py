"""Checkpoint files, always written atomically (temp file + rename): a kill leaves the old file intact.

A run folder holds ``checkpoints/last.safetensors`` and ``best.safetensors`` (the model's
state_dict under the names its builder gives, with metadata), and ``last.state.pt``: optimiser,
scheduler, scaler, progress and RNG states, readable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..files import atomic_write_bytes, atomic_write_text, load_weights, save_weights, write_json  # noqa: F401


def save_state(path: str | Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
