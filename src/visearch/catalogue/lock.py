"""The category write lock: one catalogue writer per category and home at a time.

The embedded index admits one writer per shard and a change record's sequence number must be
unique, so every catalogue write (record + apply) and the pipeline's last replay + alias swap hold
this lock. An fcntl lock dies with its process: a writer killed with SIGKILL never leaves it held.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from visearch.errors import CatalogueBusyError

WAIT_SECONDS = 30.0
POLL_SECONDS = 0.02


def lock_path(lock_dir: Path, category: str) -> Path:
    """The lock file of a category under ``lock_dir`` (e.g. ``<home>/locks``)."""
    return lock_dir / f"catalogue-{category}.lock"


@contextmanager
def category_lock(lock_dir: Path, category: str, *, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the category's write lock; wait up to ``wait`` seconds for another holder.

    Raises:
        CatalogueBusyError: the lock stayed held for ``wait`` seconds.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(lock_dir, category), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Polled, not blocking: a stuck holder turns into a clear 503 instead of a hung request.
                if time.monotonic() >= deadline:
                    raise CatalogueBusyError(
                        f"category {category!r} is being written by another process; retry in a moment"
                    ) from None
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
