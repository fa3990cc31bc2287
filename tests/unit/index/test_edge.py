"""The embedded engine across processes: what the shard-per-version layout is for.

Several processes read the live version at once; one process writes a new version (a second
writer is refused); the alias file written by one process is followed by readers in others; a
writer killed with SIGKILL mid-upsert leaves the batches it flushed, and a re-run completes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from visearch.errors import IndexBusyError, NotFoundError
from visearch.index import SearchRequest, VectorIndex, open_index, point_id
from visearch.index import edge as edge_module
from visearch.index.edge import EdgeBackend
from visearch.index.types import Durable
from visearch.settings import Settings

CATEGORY = "shoes"
DIM = 16
POINTS = 3000


def settings_for(home: Path) -> Settings:
    return Settings(visearch_home=home, qdrant_url=None, qdrant_host=None, _env_file=None)


def vectors(n: int) -> np.ndarray:
    data = np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def payloads(n: int) -> list[dict[str, object]]:
    return [{"file": f"{i}.jpg", "class": f"c{i % 7}"} for i in range(n)]


def ids(n: int) -> list[str]:
    return [point_id(CATEGORY, f"{i}.jpg") for i in range(n)]


def python(code: str, home: Path, *args: str) -> subprocess.Popen[str]:
    """A separate Python process running ``code`` against the same home."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from visearch.index import open_index, point_id
        from visearch.settings import Settings
        index = open_index(Settings(visearch_home={str(home)!r}, qdrant_url=None, qdrant_host=None, _env_file=None))
        """
    ) + textwrap.dedent(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QDRANT_")}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return out


def live_version(index: VectorIndex, n: int, model: str = "m1") -> str:
    version = index.create(CATEGORY, model, "data", DIM)
    index.upsert(version.name, ids(n), vectors(n), payloads(n))
    index.seal(version.name)
    index.swap_alias(CATEGORY, version.name)
    return version.name


def sealed_version(tmp_path: Path) -> str:
    """A finished version of 10 points in ``tmp_path``'s index, no handle left open (another process built it)."""
    index = VectorIndex(EdgeBackend(tmp_path / "index"))
    version = index.create(CATEGORY, "m1", "d1", DIM)
    index.upsert(version.name, ids(10), vectors(10), payloads(10))
    index.seal(version.name)
    index.close()
    return version.name


def write_point(backend: EdgeBackend, name: str, n: int, durable: Durable | None = None) -> None:
    """A catalogue write on ``backend``: acquire the version, upsert the ``n``-th point, commit."""
    backend.acquire(name)
    VectorIndex(backend).upsert(name, ids(n)[-1:], vectors(n)[-1:], payloads(n)[-1:])
    backend.commit(name, durable)


def test_other_processes_read_the_live_version_while_it_is_open_here(tmp_path: Path) -> None:
    index = open_index(settings_for(tmp_path))
    collection = live_version(index, 200)
    assert index.query(collection, vectors(200)[5].tolist(), k=1)[0].id == ids(200)[5]  # open here
    readers = [
        python(
            """
        live = index.require_live("shoes")
        print(index.count(live.name), index.query(live.name, [1.0] + [0.0] * 15, k=3)[0].payload["file"])
        """,
            tmp_path,
        )
        for _ in range(3)
    ]
    answers = {finished(reader) for reader in readers}
    assert len(answers) == 1 and answers.pop().startswith("200 ")
    index.close()


def test_a_second_writer_of_the_same_version_is_refused(tmp_path: Path) -> None:
    index = open_index(settings_for(tmp_path))
    version = index.create(CATEGORY, "m1", "data", DIM)
    index.upsert(version.name, ids(10), vectors(10), payloads(10))
    other = python(
        """
        from visearch.errors import IndexBusyError, NotFoundError
        version = index.create("shoes", "m1", "data", 16)  # same model + data: the same version
        try:
            index.upsert(version.name, [point_id("shoes", "x.jpg")], np.ones((1, 16), "float32"), [{"file": "x.jpg"}])
        except IndexBusyError as exc:
            print("refused:", exc)
        """,
        tmp_path,
    )
    assert "being written by another process" in finished(other)
    assert index.status(version.name) == "being written"
    assert index.drop_old(CATEGORY, keep=0) == []  # never a version someone is writing
    index.seal(version.name)
    assert index.status(version.name) == "10 points"
    index.close()


def test_readers_follow_an_alias_swapped_by_another_process(tmp_path: Path) -> None:
    reader = open_index(settings_for(tmp_path))
    first = live_version(reader, 50)
    assert reader.require_live(CATEGORY).name == first
    writer = python(
        """
        vectors = np.eye(16, dtype="float32")
        version = index.create("shoes", "m2", "data", 16)
        index.upsert(version.name, [point_id("shoes", f"n{i}.jpg") for i in range(16)], vectors,
                     [{"file": f"n{i}.jpg", "class": "new"} for i in range(16)])
        index.seal(version.name)
        index.swap_alias("shoes", version.name)
        print(version.name)
        """,
        tmp_path,
    )
    second = finished(writer).strip()
    live = reader.require_live(CATEGORY)
    assert live.name == second and live.model_version == "m2"
    assert reader.query(live.name, [1.0] + [0.0] * 15, k=1)[0].payload["file"] == "n0.jpg"
    assert reader.query(first, [1.0] + [0.0] * 15, k=1)[0].payload["class"] != "new"  # the old one is intact
    reader.close()


def test_a_writer_killed_mid_upsert_leaves_its_flushed_batches_and_a_rerun_completes(tmp_path: Path) -> None:
    writer = python(
        """
        import numpy as np
        n = int(sys.argv[1])
        data = np.random.default_rng(0).normal(size=(n, 16)).astype("float32")
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        version = index.create("shoes", "m1", "data", 16)
        for lo in range(0, n, 50):
            batch = range(lo, min(n, lo + 50))
            index.upsert(version.name, [point_id("shoes", f"{i}.jpg") for i in batch], data[lo : lo + 50],
                         [{"file": f"{i}.jpg", "class": f"c{i % 7}"} for i in batch], batch_size=50)
            print(lo + 50, flush=True)
        """,
        tmp_path,
        str(POINTS),
    )
    assert writer.stdout is not None
    for line in writer.stdout:
        if int(line) >= POINTS // 3:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()

    index = open_index(settings_for(tmp_path))
    (version,) = index.versions(CATEGORY)
    assert index.live(CATEGORY) is None  # nothing went live
    done = index.existing_ids(version.name, ids(POINTS))
    assert POINTS // 3 <= len(done) < POINTS
    # The re-run (what run_upsert does): same version, only the missing points, then seal and swap.
    todo = [i for i, pid in enumerate(ids(POINTS)) if pid not in done]
    index.upsert(
        version.name, [ids(POINTS)[i] for i in todo], vectors(POINTS)[todo], [payloads(POINTS)[i] for i in todo]
    )
    index.seal(version.name)
    index.swap_alias(CATEGORY, version.name)
    assert index.count(version.name) == POINTS
    assert index.query(version.name, vectors(POINTS)[POINTS - 1].tolist(), k=1)[0].id == ids(POINTS)[POINTS - 1]
    index.close()


def test_bad_alias_targets_and_names_are_refused(tmp_path: Path) -> None:
    index = open_index(settings_for(tmp_path))
    for name in ("", "../aliases", ".hidden"):
        with pytest.raises(NotFoundError):
            index.live(name)
    with pytest.raises(NotFoundError):
        index.swap_alias("../x", "shoes__nope-m-d")
    with pytest.raises(NotFoundError):
        index.swap_alias(CATEGORY, "shoes__nope-m-d")
    with pytest.raises(NotFoundError):
        index.count("../../etc")
    with pytest.raises((NotFoundError, IndexBusyError)):
        index.query("shoes__missing-m-d", [0.0] * DIM, k=1)
    index.close()


@pytest.mark.parametrize("name", ["", ".", "..", "../../etc/passwd", "a/b"])
def test_category_names_never_address_files_outside_the_index(tmp_path: Path, name: str) -> None:
    backend = EdgeBackend(tmp_path / "index")
    with pytest.raises(NotFoundError):
        backend.alias(name)
    with pytest.raises(NotFoundError):
        backend.set_alias(name, "x")


def bytes_read() -> int:
    """Bytes this process has passed through read calls so far (page-cache hits included)."""
    line = next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar:"))
    return int(line.split()[1])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_opening_a_version_reads_its_files_once_when_warming_is_on(tmp_path: Path) -> None:
    writer = open_index(settings_for(tmp_path))
    collection = live_version(writer, POINTS)
    writer.close()
    size = sum(path.stat().st_size for path in (tmp_path / "index").rglob("*") if collection in str(path))
    read: dict[bool, int] = {}
    for warm in (True, False):
        index = open_index(settings_for(tmp_path).model_copy(update={"qdrant_warm_on_open": warm}))
        before = bytes_read()
        assert index.query(collection, vectors(POINTS)[7].tolist(), k=1)[0].id == ids(POINTS)[7]
        index.query(collection, vectors(POINTS)[8].tolist(), k=1)  # opened once: no second warm-up
        read[warm] = bytes_read() - before
        index.close()
    assert read[True] >= size > read[False]
    assert read[True] < 2 * size + read[False]


def search_pool_threads() -> set[int]:
    """Ids of this process's threads that belong to an embedded shard's search pool."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("edge-search"):
                found.add(int(task.name))
        except OSError:  # the thread ended meanwhile
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc/self/task")
@pytest.mark.parametrize("threads", [1, 3])
def test_a_version_keeps_the_search_threads_it_was_created_with_in_every_process(tmp_path: Path, threads: int) -> None:
    writer = open_index(settings_for(tmp_path).model_copy(update={"qdrant_search_threads": threads}))
    collection = live_version(writer, POINTS)
    writer.close()
    reader = open_index(settings_for(tmp_path))  # another process, whatever its own setting says
    before = search_pool_threads()
    for n in range(20):
        assert reader.query(collection, vectors(POINTS)[n].tolist(), k=1)[0].id == ids(POINTS)[n]
    assert len(search_pool_threads() - before) == threads
    reader.close()


def test_a_reader_becomes_the_writer_unloaded_only_while_no_other_process_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = sealed_version(tmp_path)
    here, elsewhere = EdgeBackend(tmp_path / "index", linger=0), EdgeBackend(tmp_path / "index", linger=0)
    loads: list[str] = []
    real_load = edge_module._load

    def counted(folder: Path) -> object:
        loads.append(folder.name)
        return real_load(folder)

    monkeypatch.setattr(edge_module, "_load", counted)

    assert here.count(name) == 10
    loads.clear()
    write_point(here, name, 11)  # nobody else wrote since this process read: its reader handle is the writer
    assert loads == [name]  # the one load: the fold when the writer lets go, none to start
    write_point(elsewhere, name, 12)  # another process writes: this process's handle is now a writer behind
    loads.clear()
    write_point(here, name, 13)
    assert loads == [name, name]  # loaded afresh to write, then folded
    fresh = EdgeBackend(tmp_path / "index")
    assert fresh.count(name) == 13  # no write lost: 11 (here), 12 (elsewhere), 13 (here)
    assert len(fresh.retrieve(name, ids(13)[10:], with_payload=False, with_vector=False)) == 3
    for backend in (here, elsewhere, fresh):
        backend.close()


def test_a_writer_waiting_for_another_process_leaves_this_process_s_queries_free(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    here, elsewhere = EdgeBackend(tmp_path / "index"), EdgeBackend(tmp_path / "index")
    assert here.count(name) == 10  # this process reads the version
    elsewhere._lock_for_writing(name)  # another process is in the middle of a write
    waiting = threading.Thread(target=here.acquire, args=(name, 3.0))
    waiting.start()
    time.sleep(0.2)
    assert waiting.is_alive()  # this process's writer waits for the other one...
    assert here.count(name) == 10  # ...and its queries are answered meanwhile
    assert waiting.is_alive()
    elsewhere.close()  # the other writer lets go: the waiting one gets the lock
    waiting.join(5)
    assert not waiting.is_alive() and name in here._sessions
    here.commit(name)
    here.close()


def test_a_group_commit_is_seen_here_at_once_and_flushed_once_when_the_writer_lets_go(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    here = EdgeBackend(tmp_path / "index", linger=30)  # lingers: only close() lets go here
    told: list[tuple[int, bool]] = []
    for n in (11, 12):
        write_point(here, name, n, lambda flushed, n=n: told.append((n, flushed)))
        assert here.count(name) == n  # this process's queries see the write at once
    assert told == []  # not flushed yet: the listeners wait
    here.close()  # lets go: one flush, then every listener in order
    assert told == [(11, True), (12, True)]
    fresh = EdgeBackend(tmp_path / "index")
    assert fresh.count(name) == 12
    fresh.close()


def test_a_group_commit_lost_with_its_handle_is_told_so(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    here = EdgeBackend(tmp_path / "index", linger=30)
    told: list[bool] = []
    write_point(here, name, 11, told.append)
    here._forget(name)  # the handle closed unflushed (e.g. its folder deleted by another process)
    assert told == [False]
    not_lingering = EdgeBackend(tmp_path / "index", linger=0)
    write_point(not_lingering, name, 11, told.append)
    assert told == [False, True]  # a writer that does not linger flushes before it returns
    not_lingering.close()


def test_a_lingering_writer_lets_go_once_idle_for_the_linger_each_commit_moving_it_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_module, "HOLD_SECONDS", 60.0)
    name = sealed_version(tmp_path)
    here, told = EdgeBackend(tmp_path / "index", linger=1.5), []
    for n in (11, 12):
        write_point(here, name, n, told.append)
        time.sleep(1.0)
    # 2 s after the first commit, 1 s after the second: still held (the second commit moved the time on).
    assert told == [] and name in here._locks
    deadline = time.monotonic() + 30
    while name in here._locks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert told == [True, True] and name not in here._locks  # let go: flushed, lock released
    assert len(here._timers) == 0
    fresh = EdgeBackend(tmp_path / "index")
    assert fresh.count(name) == 12
    fresh.close()
    here.close()


@pytest.fixture
def short_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer asked for lets go 0.4 s into its session; one nobody asks for holds on for a minute."""
    monkeypatch.setattr(edge_module, "HOLD_SECONDS", 0.4)
    monkeypatch.setattr(edge_module, "ALONE_HOLD_SECONDS", 60.0)


def test_a_writer_nobody_asks_for_holds_on_under_steady_writes_flushing_every_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_hold: None
) -> None:
    name = sealed_version(tmp_path)
    here, told, loads = EdgeBackend(tmp_path / "index", linger=1.0), [], []
    write_point(here, name, 11, told.append)  # the session's one load
    real_load = edge_module._load
    monkeypatch.setattr(edge_module, "_load", lambda folder: loads.append(folder.name) or real_load(folder))
    for n in range(12, 27):  # 1.5 s of writes, 0.1 s apart: past HOLD_SECONDS three times over
        time.sleep(0.1)
        write_point(here, name, n, told.append)
    assert name in here._locks and loads == []  # still held, never folded (a fold is a load)
    assert False not in told and len(told) >= 10  # yet flushed every HOLD_SECONDS: the writes told so
    here.close()
    assert told == [True] * 16
    fresh = EdgeBackend(tmp_path / "index")
    assert fresh.count(name) == 26
    fresh.close()


def test_a_held_writer_lets_go_once_another_process_asks_for_the_version(tmp_path: Path, short_hold: None) -> None:
    name = sealed_version(tmp_path)
    writer, reader = EdgeBackend(tmp_path / "index", linger=5.0), EdgeBackend(tmp_path / "index")
    assert reader.count(name) == 10
    written = 11
    write_point(writer, name, written, lambda flushed: None)
    assert reader.count(name) == 10  # answered from its handle; it asks for the version
    while name in writer._locks and written < 30:  # writes 0.1 s apart: never idle for the 5 s linger
        time.sleep(0.1)
        written += 1
        write_point(writer, name, written, lambda flushed: None)
    assert name not in writer._locks  # let go at the first commit past HOLD_SECONDS
    assert written <= 17
    assert reader.count(name) == written  # the reader reopens and sees every write
    for backend in (writer, reader):
        backend.close()


@pytest.mark.parametrize("waiting", ["first read", "write"])
def test_a_process_waiting_for_a_held_version_gets_it_after_hold_not_the_lone_writer_s_hold(
    tmp_path: Path, waiting: str, short_hold: None
) -> None:
    name = sealed_version(tmp_path)
    writer, other = EdgeBackend(tmp_path / "index", linger=5.0), EdgeBackend(tmp_path / "index", linger=0)
    write_point(writer, name, 11, lambda flushed: None)
    stop = threading.Event()

    def steady_writes() -> None:  # never idle for the 5 s linger
        for n in range(12, 200):
            if stop.wait(0.1):
                return
            write_point(writer, name, n, lambda flushed: None)

    thread = threading.Thread(target=steady_writes)
    thread.start()
    started = time.monotonic()
    try:
        if waiting == "first read":
            assert other.count(name) >= 11  # no handle yet: it waits for the lock, asking
        else:
            write_point(other, name, 500)  # waits for the writer lock, asking
    finally:
        stop.set()
        thread.join()
    assert time.monotonic() - started < 5.0
    for backend in (writer, other):
        backend.close()


def test_queries_on_this_process_s_own_writer_do_not_wait_for_a_commit_flushing(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    writer = EdgeBackend(tmp_path / "index", linger=30)
    write_point(writer, name, 11, lambda flushed: None)  # the session holds the version
    flushing, done = threading.Event(), threading.Event()

    def commit_flushing() -> None:  # what a commit does while it flushes: holds the backend's guard
        with writer._guard:
            flushing.set()
            done.wait(10)

    thread = threading.Thread(target=commit_flushing)
    thread.start()
    flushing.wait(5)
    started = time.monotonic()
    try:
        hits = VectorIndex(writer).search(name, SearchRequest(1, vector=vectors(11)[-1].tolist()))
        waited = time.monotonic() - started
    finally:
        done.set()
        thread.join()
    assert hits[0].id == ids(11)[-1] and waited < 1.0
    writer.close()


def test_a_reader_answers_from_its_handle_while_another_process_s_writer_holds_the_version(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    writer, reader = EdgeBackend(tmp_path / "index", linger=30), EdgeBackend(tmp_path / "index")
    assert reader.count(name) == 10  # the other process has the version open
    write_point(writer, name, 11, lambda flushed: None)  # lingers: holds the version for 30 s
    started = time.monotonic()
    assert reader.count(name) == 10  # answered at once from its handle: the add not yet
    assert time.monotonic() - started < 1.0  # not after the writer lets go (30 s)
    hits = VectorIndex(reader).search(name, SearchRequest(3, vector=vectors(11)[-1].tolist()))
    assert point_id(CATEGORY, "10.jpg") not in {hit.id for hit in hits}
    writer.close()  # lets go: flushed
    assert reader.count(name) == 11  # the next query reopens and sees it
    fresh = EdgeBackend(tmp_path / "index")
    assert fresh.count(name) == 11
    for backend in (reader, fresh):
        backend.close()


def test_a_point_deleted_by_another_process_s_writer_is_never_a_hit_of_an_older_handle(tmp_path: Path) -> None:
    name = sealed_version(tmp_path)
    writer, reader = EdgeBackend(tmp_path / "index", linger=30), EdgeBackend(tmp_path / "index")
    query = SearchRequest(3, vector=vectors(10)[0].tolist())
    assert VectorIndex(reader).search(name, query)[0].id == ids(10)[0]
    writer.acquire(name)
    writer.delete(name, ids(10)[:1])
    writer.commit(name)  # flushed, and still held: the reader keeps its handle
    hits = VectorIndex(reader).search(name, query)
    assert ids(10)[0] not in {hit.id for hit in hits} and all(hit.payload["file"] for hit in hits)
    writer.close()
    reader.close()
