"""The training engine: one loop (trainer.py) for every task, plus DDP, checkpoint and optimiser helpers."""

from ..extras import require

for _module in ("tqdm", "torchmetrics"):  # what every training module imports: one line naming the extra
    require(_module, extra="train")
