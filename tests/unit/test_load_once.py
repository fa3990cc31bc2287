"""LoadOnce on real threads: one load per key, waiters share its value or its failure, other keys never wait."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from visearch.load_once import LoadOnce

TIMEOUT = 10.0  # seconds: far above any wait here; a hang fails the test instead of the run


class Gate:
    """A load function that blocks until released, then returns ``value`` or raises ``error``; counts its calls."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> Any:
        self.calls += 1
        self.started.set()
        assert self.release.wait(TIMEOUT), "the test never released the load"
        if self.error is not None:
            raise self.error
        return self.value


class Caller(threading.Thread):
    """``cache.get(key, load)`` on its own thread; keeps what it returned or raised."""

    def __init__(self, cache: LoadOnce[str, Any], key: str, load: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.cache, self.key, self.load = cache, key, load
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.cache.get(self.key, self.load)
        except BaseException as exc:  # noqa: BLE001 - the test inspects what the caller got
            self.error = exc

    def finish(self) -> Caller:
        self.join(TIMEOUT)
        assert not self.is_alive(), "a caller is still waiting"
        return self


def blocked(thread: threading.Thread) -> bool:
    """Whether ``thread`` sits in a blocking wait (a Condition, Event or Future wait), not in a load."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith("threading.py"):
            return True
        frame = frame.f_back
    return False


def start_waiters(cache: LoadOnce[str, Any], key: str, load: Callable[[], Any], count: int) -> list[Caller]:
    """``count`` callers of ``key`` started while its load runs, returned once every one is waiting."""
    waiters = [Caller(cache, key, load) for _ in range(count)]
    for waiter in waiters:
        waiter.start()
    deadline = time.monotonic() + TIMEOUT
    while not all(blocked(waiter) for waiter in waiters):
        assert time.monotonic() < deadline, "the waiters never blocked"
        time.sleep(0.005)
    return waiters


def test_concurrent_callers_of_one_key_share_one_load() -> None:
    cache: LoadOnce[str, object] = LoadOnce()
    value = object()
    load = Gate(value)
    owner = Caller(cache, "a", load)
    owner.start()
    assert load.started.wait(TIMEOUT)
    waiters = start_waiters(cache, "a", load, 8)
    assert cache.peek("a") is None  # still loading: nothing cached yet
    assert all(waiter.is_alive() for waiter in waiters)  # nobody returned before the load did
    load.release.set()
    for caller in (owner, *waiters):
        assert caller.finish().error is None
        assert caller.result is value
    assert load.calls == 1
    assert cache.peek("a") is value
    assert cache.get("a", Gate(error=AssertionError("a cached value is never loaded again"))) is value


def test_a_failed_load_is_shared_by_its_waiters_and_the_next_caller_loads_again() -> None:
    cache: LoadOnce[str, str] = LoadOnce()
    failure = ConnectionError("engine down")
    load = Gate(error=failure)
    owner = Caller(cache, "a", load)
    owner.start()
    assert load.started.wait(TIMEOUT)
    waiters = start_waiters(cache, "a", load, 5)
    load.release.set()
    for caller in (owner, *waiters):
        assert caller.finish().error is failure  # the same exception: one wait, not one each in turn
    assert load.calls == 1
    assert cache.peek("a") is None  # a failure is not cached
    retry = Gate("up again")
    retry.release.set()
    assert cache.get("a", retry) == "up again"
    assert retry.calls == 1
    assert cache.peek("a") == "up again"


def test_callers_of_other_keys_never_wait_for_a_load() -> None:
    cache: LoadOnce[str, str] = LoadOnce()
    assert cache.get("ready", lambda: "ready") == "ready"
    slow = Gate("slow")
    owner = Caller(cache, "slow", slow)
    owner.start()
    assert slow.started.wait(TIMEOUT)
    ready, other = Caller(cache, "ready", lambda: "reloaded"), Caller(cache, "other", lambda: "other")
    for caller in (ready, other):
        caller.start()
    assert ready.finish().result == "ready"  # cached: returned while "slow" loads
    assert other.finish().result == "other"  # another key: loaded while "slow" loads
    assert owner.is_alive()  # the slow load is still running all along
    slow.release.set()
    assert owner.finish().result == "slow"


def test_pop_forgets_a_value_and_the_next_caller_loads_it_again() -> None:
    cache: LoadOnce[str, int] = LoadOnce()
    assert cache.pop("a") is None
    assert cache.get("a", lambda: 1) == 1
    assert cache.pop("a") == 1
    assert cache.peek("a") is None
    assert cache.get("a", lambda: 2) == 2


def test_pop_during_a_load_keeps_what_the_load_returns() -> None:
    cache: LoadOnce[str, str] = LoadOnce()
    load = Gate("new")
    owner = Caller(cache, "a", load)
    owner.start()
    assert load.started.wait(TIMEOUT)
    assert cache.pop("a") is None
    load.release.set()
    assert owner.finish().result == "new"
    assert cache.peek("a") == "new"


def test_an_interrupt_during_a_load_reaches_its_caller_and_frees_the_key() -> None:
    """BaseException (KeyboardInterrupt, SystemExit) is released like any failure, never left pending."""
    cache: LoadOnce[str, str] = LoadOnce()

    def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get("a", interrupted)
    again = Caller(cache, "a", lambda: "loaded")
    again.start()
    assert again.finish().result == "loaded"
