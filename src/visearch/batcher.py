"""Concurrent forwards of one model merged into one: a small in-process batcher for the query path.

Under load most of a query's CPU is the model's forward. Requests that arrive while the forward
slots are busy wait in a queue per model (category and model version); the next free slot takes
every waiting image of that model, up to ``max_images``, as one batch, and each caller gets its own
rows back. A lone request finds a free slot and runs at once: no added latency unless ``max_wait``
asks a forward to wait for company. The slots bound how many forwards run at once (one per core
with one intra-op thread each: ONNX Runtime's thread pool then never spins while idle).

A row of a batched forward equals the same image's lone forward (tests/unit/test_batcher.py), so
a batched query answers exactly what it answers alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Forward(Protocol):
    """What the batcher runs: a model's batch embedding (N×... float32 → N×D)."""

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch."""
        ...


@dataclass(eq=False)
class _Pending:
    """One caller's images waiting for a forward, then its rows or the forward's error."""

    batch: np.ndarray
    taken: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ForwardBatcher:
    """Runs forwards in at most ``slots`` at once, merging callers of one model that wait meanwhile."""

    def __init__(self, slots: int = 1, *, max_images: int = 32, max_wait: float = 0.0) -> None:
        self.slots = max(1, slots)
        self.max_images = max(1, max_images)
        self.max_wait = max(0.0, max_wait)
        self.forwards = 0  # forwards run and images embedded: images / forwards is the mean batch
        self.images = 0
        self._free = self.slots
        self._queues: dict[Hashable, list[_Pending]] = {}
        self._cond = threading.Condition()  # guards _free and _queues; never held during a forward

    def embed(self, key: Hashable, model: Forward, batch: np.ndarray) -> np.ndarray:
        """``model.embed(batch)``, run alone or with other callers' batches of the same ``key``.

        ``key`` names the model (its category and version): only batches of one key share a forward.
        Raises what the forward raised.
        """
        mine = _Pending(batch)
        with self._cond:
            self._queues.setdefault(key, []).append(mine)
        while not mine.taken:
            group = self._claim(key, mine)
            if group:
                self._run(model, group)
        mine.done.wait()
        if mine.error is not None:
            raise mine.error
        assert mine.result is not None
        return mine.result

    def _claim(self, key: Hashable, mine: _Pending) -> list[_Pending]:
        """A free slot and the waiting batches of ``key`` (oldest first), or [] once ``mine`` is taken by another."""
        with self._cond:
            while not mine.taken and self._free == 0:
                self._cond.wait()
            if mine.taken:
                return []
            self._free -= 1
            if self.max_wait and self._images(key) < self.max_images:
                deadline = time.monotonic() + self.max_wait
                while self._images(key) < self.max_images and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)  # callers of this key enqueue meanwhile
            queue = self._queues.get(key, [])
            if not queue:  # another slot took them all while this one waited
                self._free += 1
                self._cond.notify_all()
                return []
            group: list[_Pending] = []
            images = 0
            while queue and (not group or images + len(queue[0].batch) <= self.max_images):
                pending = queue.pop(0)
                pending.taken = True
                group.append(pending)
                images += len(pending.batch)
            if not queue:
                del self._queues[key]
            self._cond.notify_all()  # the owners of the taken batches stop waiting for a slot
            return group

    def _images(self, key: Hashable) -> int:
        return sum(len(pending.batch) for pending in self._queues.get(key, ()))

    def _run(self, model: Forward, group: list[_Pending]) -> None:
        """One forward for the group; each pending gets its rows (or the error); the slot is given back."""
        try:
            batch = group[0].batch if len(group) == 1 else np.concatenate([p.batch for p in group])
            vectors = model.embed(batch)
            start = 0
            for pending in group:
                pending.result = vectors[start : start + len(pending.batch)]
                start += len(pending.batch)
        except BaseException as exc:  # noqa: BLE001 - every caller of the group gets the forward's error
            for pending in group:
                pending.error = exc
        finally:
            for pending in group:
                pending.done.set()
            with self._cond:
                self._free += 1
                self.forwards += 1
                self.images += sum(len(pending.batch) for pending in group)
                self._cond.notify_all()
