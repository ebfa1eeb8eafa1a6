"""The training engine: one loop (trainer.py) for every task, plus DDP, checkpoint and optimiser helpers."""
