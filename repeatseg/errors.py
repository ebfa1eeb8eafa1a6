"""The errors repeatseg raises on purpose: one base class, ``RepeatsegError``, to catch them all.

Each error also keeps the builtin base it had before it had a common one (``ConfigError`` is a
``ValueError``, ``DataError`` a ``RuntimeError``, ``MissingFileError`` a ``FileNotFoundError``), so
``except ValueError`` callers keep working. The command-line tools print a ``RepeatsegError`` as one
line and exit 2 (``NonFiniteLossError``: 3); any other exception is a bug and keeps its traceback.

A leaf module: every layer may import it (layers <- backbones <- encoders <- engine <- study <- tools).
"""

from __future__ import annotations


class RepeatsegError(Exception):
    """An error repeatseg raised on purpose; its message says what is wrong and where (file, key)."""


class ConfigError(RepeatsegError, ValueError):
    """A config value, flag, encoder name or model option that cannot be used; the message names the key."""


class DataError(RepeatsegError, RuntimeError):
    """A problem with the data on disk; the message names the file."""


class CheckpointError(RepeatsegError, ValueError):
    """A checkpoint or weights file that cannot be read, resumed or loaded; the message names the file."""


class MissingFileError(RepeatsegError, FileNotFoundError):
    """A file or folder the user named (weights, checkpoint, run folder) does not exist."""


class WriteError(RepeatsegError, OSError):
    """A file that could not be written (disk full, read-only folder); the message names it."""


class OutputError(RepeatsegError, ValueError):
    """An output a tool refuses to write; the message names the path and what to do instead."""


class OutputExistsError(RepeatsegError, FileExistsError):
    """An output folder that holds something else (another run, a dataset, the user's files), or is a
    file: refused before anything is written there; the message names it and what to do instead."""


class FolderClaimedError(RepeatsegError, RuntimeError):
    """Another live process holds the folder; the message names it (host, pid, since when)."""


class DeviceError(RepeatsegError, RuntimeError):
    """A device that is not one, or not on this machine (``cuda`` without CUDA)."""


class MixedRecipesError(RepeatsegError, ValueError):
    """The encoders of a study were pretrained with different recipes."""


class MixedMachinesError(RepeatsegError, ValueError):
    """A study's units ran on another kind of CPU than this one (their numbers would not pool)."""


class NonFiniteLossError(RepeatsegError, RuntimeError):
    """Training produced a NaN/inf loss (or weights); the last good checkpoint is left as it was."""


class MissingExtraError(RepeatsegError, ImportError):
    """A module needs a package of an optional extra that is not installed; the message names the extra."""


def error_message(error: BaseException | str) -> str:
    """The error's own message. An error raised in a DataLoader worker arrives as the worker's
    whole traceback; its last line holds the message the same error gives with ``--workers 0``."""
    text = str(error)
    if " in DataLoader worker process " in text and "Original Traceback" in text:
        _, found, message = text.rpartition(f"{type(error).__name__}: ")
        if found:
            return message.strip()
    return text


def exit_code(error: BaseException) -> int | None:
    """A tool's exit code for ``error``: 3 for a non-finite loss, 2 for any other ``RepeatsegError``,
    ``None`` for an exception repeatseg did not raise on purpose (a bug: it keeps its traceback)."""
    if isinstance(error, NonFiniteLossError):
        return 3
    return 2 if isinstance(error, RepeatsegError) else None


__all__ = ["RepeatsegError", "ConfigError", "DataError", "CheckpointError", "MissingFileError", "OutputError", "WriteError",
           "OutputExistsError",
           "FolderClaimedError", "DeviceError", "MixedRecipesError", "NonFiniteLossError", "MissingExtraError",
           "error_message", "exit_code"]
