"""Concurrent queries batched into one forward answer exactly what each answers alone (real model, real index)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers import TINY, phone_photo
from tests.unit.homes import search_engine
from visearch.batcher import ForwardBatcher
from visearch.search import SearchEngine
from visearch.settings import Settings


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    # A forward waits 20 ms for company: concurrent queries surely share forwards here.
    engine = search_engine(indexed_home.model_copy(update={"batch_wait_ms": 20.0}))
    yield engine
    engine.close()


def test_a_row_of_a_batched_forward_equals_the_lone_forward(engine: SearchEngine) -> None:
    model = engine.model_for(TINY)
    images = [engine.decode(engine.store.get_bytes(r.image_key)) for r in engine.examples(TINY, limit=8)]
    batch = engine.embed_images(TINY, images)
    for image, row in zip(images, batch, strict=True):
        np.testing.assert_array_equal(engine.embed_images(TINY, [image]), row[None, :])
    assert model.spec.embedding_dim == batch.shape[1]


def test_concurrent_queries_answer_what_each_answers_alone(engine: SearchEngine) -> None:
    datas = [engine.store.get_bytes(r.image_key) for r in engine.examples(TINY, limit=12)] + [phone_photo()]
    alone = [engine.search(TINY, data, k=10) for data in datas]
    forwards, images = engine._forwards.forwards, engine._forwards.images
    start = threading.Barrier(32)

    def query(position: int) -> tuple[int, object]:
        if position < 32:
            start.wait()  # the first wave arrives together
        which = position % len(datas)
        return which, engine.search(TINY, datas[which], k=10)

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(query, range(32 * 6)))
    for which, answer in answers:
        expected = alone[which]
        assert [r.id for r in answer.results] == [r.id for r in expected.results]  # type: ignore[attr-defined]
        assert [r.score for r in answer.results] == [r.score for r in expected.results]  # type: ignore[attr-defined]
    batched_forwards = engine._forwards.forwards - forwards
    assert engine._forwards.images - images == len(answers)
    assert batched_forwards < len(answers) / 2  # they did share forwards


class Doubling:
    """A stand-in model with a visible answer per row: 2x its input, and a count of its forwards."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.release.wait(5)
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 2


def test_each_caller_gets_its_own_rows_and_a_failing_forward_fails_its_callers_only() -> None:
    batcher = ForwardBatcher(1, max_images=64)
    model = Doubling()
    with ThreadPoolExecutor(max_workers=9) as pool:
        first = pool.submit(batcher.embed, "m", model, np.full((1, 2), 100.0))  # holds the one slot
        while model.calls == 0:
            pass
        waiting = [pool.submit(batcher.embed, "m", model, np.full((n, 2), float(n))) for n in range(1, 8)]
        while sum(len(p.batch) for p in batcher._queues.get("m", [])) < 28:
            pass
        model.release.set()
        assert first.result().tolist() == [[200.0, 200.0]]
        for n, future in enumerate(waiting, start=1):
            assert future.result().tolist() == [[2.0 * n] * 2] * n
    assert model.calls == 2  # the seven waiting callers shared one forward
    bad = pool_error(batcher, model)
    assert isinstance(bad, ValueError)
    assert batcher.embed("m", model, np.ones((1, 2))).tolist() == [[2.0, 2.0]]  # the slot came back


def pool_error(batcher: ForwardBatcher, model: Doubling) -> BaseException | None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(batcher.embed, "m", model, -np.ones((1, 2))).exception()


def test_forward_slots_share_the_cores_among_workers_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    assert Settings(_env_file=None).cores == 8
    assert Settings(_env_file=None).forward_slots == 8  # 1 worker, 1 thread a forward: one forward per core
    assert Settings(_env_file=None, serve_workers=2).forward_slots == 4
    assert Settings(_env_file=None, serve_workers=2, inference_threads=2).forward_slots == 2
    assert Settings(_env_file=None, serve_workers=16).forward_slots == 1
