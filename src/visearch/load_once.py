"""Values a server loads on first use (its engine, one model per category and version), one load at a time per key.

A lock held across a load would make every caller wait for the slowest load, also callers of
other keys whose values are ready. Here a lock guards only two dicts; loads run outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LoadOnce(Generic[K, V]):
    """A cache whose missing values are loaded by the first caller; callers of that key meanwhile wait for it.

    Waiters share the load's outcome, its value or its exception, so a load that fails (an engine
    that does not answer) costs every waiter one wait, not one each in turn; the next caller after
    a failure loads again. Callers of other keys never wait for it.
    """

    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._loading: dict[K, Future[V]] = {}
        self._lock = threading.Lock()  # guards the two dicts only; never held while loading

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The value of ``key``, calling ``load`` for it unless it is cached or already being loaded."""
        with self._lock:
            if key in self._values:
                return self._values[key]
            pending = self._loading.get(key)
            owner = pending is None
            if pending is None:
                pending = self._loading[key] = Future()
        if not owner:
            return pending.result()
        try:
            value = load()
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            self._values[key] = value
            del self._loading[key]
        pending.set_result(value)
        return value

    def peek(self, key: K) -> V | None:
        """The cached value of ``key`` without loading it (None when missing or still loading)."""
        with self._lock:
            return self._values.get(key)

    def pop(self, key: K) -> V | None:
        """Forget ``key``'s value and return it (a load in progress still completes and is kept)."""
        with self._lock:
            return self._values.pop(key, None)
