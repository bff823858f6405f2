"""Files that appear complete or not at all, and folders one process at a time.

``os.replace`` within one directory is atomic on POSIX and Windows, so a reader
(or a run resumed after ``kill -9``) never sees half a jet file or checkpoint.
:func:`file_digest` names a file's content, for caches that must not go stale.
:func:`exclusive` holds a lock file, so that two runs never write one folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def temporary_path(path: str | os.PathLike) -> Path:
    """``<name>.<pid>.tmp`` beside ``path``: unique per process, so an orphaned writer never shares it."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, remove it on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the data reaches the disk before the name does
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, ``os.replace``: readers never see half a file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


@contextmanager
def exclusive(lock_path: str | os.PathLike, *, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock_path`` (created if missing) while the block runs.

    If another process holds it, raise :class:`BusyError` with the message ``busy``
    at once rather than wait.  The operating system releases the lock when the
    file closes, also after ``kill -9``, so no stale lock outlives its process.
    Where ``fcntl`` does not exist (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks to take
        yield
        return
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(busy) from None
        yield


class BusyError(RuntimeError):
    """Another process holds the lock of a folder this one wants to write."""
