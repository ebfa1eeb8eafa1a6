"""The file names of a run folder's checkpoint, said once (a leaf module: the trainer writes these
files, and the loaders below the engine, the tools and the study find them by these names)."""

CHECKPOINT_DIR = "checkpoints"  # <run>/checkpoints/
WEIGHTS, BEST, STATE, MANIFEST = "last.safetensors", "best.safetensors", "last.state.pt", "manifest.json"
TENSORBOARD_DIR = "tensorboard"  # <run>/tensorboard/: event files, when train.loggers asks for them
