"""Checkpoints: a ``state_dict`` plus a JSON-able config, written atomically, read without running code."""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not match the model it is loaded into."""


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over ``path``,
    so a crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: a file that would run code is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it is not a plain tensor/state_dict checkpoint ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"could not read checkpoint {str(path)!r}: {err}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} does not hold a bayes_diglm checkpoint (got {type(obj).__name__})")
    return obj
