"""The training engine: one loop (trainer.py) for every task, plus DDP, checkpoint and optimiser helpers."""

from ..extras import require

require("tqdm", extra="train")  # the progress bars of every training module (torchmetrics is required where used)
