"""Checkpoints: a ``state_dict`` plus a JSON-able config, written atomically, checksummed, read without running code."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import pickle
import tempfile
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "DIGEST_KEY", "SIGNATURE_KEY"]

#: key under which :func:`save_checkpoint` stores the SHA-256 of the checkpoint's content
DIGEST_KEY = "bayes_diglm_sha256"
#: key under which ``save_checkpoint(..., key=...)`` stores the HMAC-SHA256 of that digest under the user's key
SIGNATURE_KEY = "bayes_diglm_hmac_sha256"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not match the model it is loaded into."""


def _as_key(key) -> bytes | None:
    """A signing key as bytes (``str`` is UTF-8 encoded); None stays None, an empty key is refused."""
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes | bytearray) or len(key) == 0:
        raise TypeError(f"key must be non-empty bytes or str, got {type(key).__name__}")
    return bytes(key)


def _signature(key: bytes, digest: str) -> str:
    return hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()


def save_checkpoint(obj: dict, path: str | os.PathLike, *, key: bytes | str | None = None) -> Path:
    """Write ``obj`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed over ``path``,
    so a crash mid-write leaves the previous checkpoint intact (the next write removes the orphaned temporary
    file). The file also holds, under :data:`DIGEST_KEY`,
    a SHA-256 of the content (every key, number, string, and every tensor's dtype, shape and bytes), which
    :func:`load_checkpoint` checks: a file altered or damaged after it was written does not load. The checksum
    is not keyed, so whoever edits a file can recompute it: for files that cross a trust boundary, give a
    ``key`` (bytes or str): the file then also holds an HMAC-SHA256 of the checksum under that key, under
    :data:`SIGNATURE_KEY`, which ``load_checkpoint(path, key=...)`` requires.
    """
    key = _as_key(key)
    if not isinstance(obj, dict):
        raise TypeError(f"a checkpoint is a dict, got {type(obj).__name__}")
    if DIGEST_KEY in obj or SIGNATURE_KEY in obj:
        raise ValueError(f"{DIGEST_KEY!r} and {SIGNATURE_KEY!r} are reserved for the checkpoint's checksum")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    digest = content_digest(obj)
    signed = {} if key is None else {SIGNATURE_KEY: _signature(key, digest)}
    torch.save({**obj, DIGEST_KEY: digest, **signed}, buffer)
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
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write (SIGKILL)
        stale.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    require_digest: bool = True, key: bytes | str | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: a file that would run code is refused.

    The content must match the SHA-256 that :func:`save_checkpoint` stored with it; a file without one (written
    by plain ``torch.save``) is refused unless ``require_digest=False``. Every failure to read (truncated,
    garbage, altered, unsafe) is a :class:`CheckpointError` naming the file; the returned dict is what was saved.
    With ``key``, the file must also carry the HMAC-SHA256 that ``save_checkpoint(..., key=key)`` wrote: a file
    without one, or signed with another key (or edited and re-checksummed), is refused. Without ``key`` a
    signature in the file is not checked.
    """
    key = _as_key(key)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it is not a plain tensor/state_dict checkpoint ({err})"
        ) from err
    except Exception as err:  # noqa: BLE001 - a damaged zip/pickle fails in many ways inside torch.load
        raise CheckpointError(f"could not read checkpoint {str(path)!r}: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{str(path)!r} does not hold a bayes_diglm checkpoint (got {type(obj).__name__})")
    stored = obj.pop(DIGEST_KEY, None)
    signature = obj.pop(SIGNATURE_KEY, None)
    if key is not None and not isinstance(signature, str):
        raise CheckpointError(f"{str(path)!r} is not signed: a key was given, and the file carries no signature")
    if stored is None:
        if key is not None or require_digest:
            raise CheckpointError(f"{str(path)!r} has no checksum: it was not written by save_checkpoint "
                                  "(pass require_digest=False to read it anyway)")
        return obj
    try:
        actual = content_digest(obj)
    except Exception as err:  # noqa: BLE001 - content of a type the digest cannot read: altered
        raise CheckpointError(f"{str(path)!r} holds content that cannot be checked ({err})") from err
    if stored != actual:
        raise CheckpointError(f"{str(path)!r} is corrupt or was altered after it was written: its content does "
                              "not match the checksum stored with it")
    if key is not None and not hmac.compare_digest(signature.encode(), _signature(key, actual).encode()):
        raise CheckpointError(f"{str(path)!r} has a wrong signature: it was signed with another key, or altered "
                              "and re-checksummed after it was written")
    return obj


def content_digest(obj) -> str:
    """SHA-256 (hex) of a checkpoint's content: keys, scalars, strings, and tensors' dtype, shape and bytes."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        # a fresh tensor: contiguous() keeps stride 0 on size-1 dimensions, which a byte view refuses
        t = torch.empty(obj.shape, dtype=obj.dtype).copy_(obj.detach())
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
