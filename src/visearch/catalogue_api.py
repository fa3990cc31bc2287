"""The living catalogue as a server offers it: one catalogue per category, write answers, change counts.

The service's REST writes (and the UI's counts) call :class:`LiveCatalogues`; it opens each
category's :class:`~visearch.catalogue.Catalogue` once (through the engine's index and models,
:func:`visearch.live_writes.open_catalogue`), names the near-duplicates an added image has in its
category, and counts the changes made since the live model was trained.

The training position of a version is the log position its data was read at
(:meth:`ChangeLog.built_from`, recorded by the pipeline's replay from the manifest's
``changes_seq``), not :meth:`ChangeLog.applied`: every live write advances the applied marker, so
counting after it would always say "0 changes".
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from visearch.catalogue import Catalogue, ChangeRecord, WriteResult, data_version, net_changes
from visearch.errors import InvalidImageError, InvalidRowError, VisearchError
from visearch.live_writes import open_catalogue
from visearch.search import SearchEngine

logger = logging.getLogger(__name__)

MAX_NEAR_DUPLICATES = 5
# A REST write waits this long for another writer of the category (a CLI sync, a pipeline's swap),
# then answers 503: a client retries sooner than a proxy times the request out.
REST_WAIT_SECONDS = 10.0
# Service start: catalogue catch-up gets this long before the service goes on without waiting for it.
CATCH_UP_SECONDS = 15.0
# /categories waits this long for a recount; past it (a slow or down object store) it answers the last counts.
COUNT_WAIT_SECONDS = 2.0
OPS = {"add": "added", "replace": "replaced", "remove": "removed"}


@dataclass(frozen=True)
class NearDuplicate:
    """An image already in the category whose cosine similarity to the written one is above its threshold."""

    id: str
    file: str
    cls: str
    similarity: float  # percent


@dataclass(frozen=True)
class WriteAnswer:
    """What a REST write did: the point, the model that embedded it, the log position and data version after it."""

    op: str
    id: str
    file: str
    created: bool  # False: the same add sent again, nothing changed
    model_version: str
    seq: int
    data_version: str
    new_class: bool = False
    near_duplicates: list[NearDuplicate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``class`` for a near-duplicate's class)."""
        data = asdict(self)
        data["near_duplicates"] = [{**d, "class": d.pop("cls")} for d in data["near_duplicates"]]
        return data


def parse_row(text: str | None, *, required: bool) -> dict[str, Any] | None:
    """The ``row`` form field (JSON object text) as a dict; None when absent and not required.

    Raises:
        InvalidRowError: absent though required, not JSON, or not a JSON object (field ``row``).
    """
    if text is None or not text.strip():
        if required:
            raise InvalidRowError("row", "required: a JSON object with at least `class`")
        return None
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise InvalidRowError("row", f"must be a JSON object, not valid JSON ({exc})") from exc
    if not isinstance(row, dict):
        raise InvalidRowError("row", f"must be a JSON object of column values, got {type(row).__name__}")
    return row


@contextmanager
def image_field() -> Iterator[None]:
    """Name the ``image`` field in an image error's message (same class: a too-large image stays 413)."""
    try:
        yield
    except InvalidImageError as exc:
        if str(exc).startswith("image:"):
            raise
        raise type(exc)(f"image: {exc}") from exc


def counts_since(trained: set[str], records: Iterable[ChangeRecord]) -> dict[str, int]:
    """Images added, replaced and removed by ``records`` relative to the ``trained`` files (net per file).

    Relative, not by the records' own op: an image added and removed since training is no change
    to what the model saw, and an added image replaced since is still one added image.
    """
    counts = {"add": 0, "replace": 0, "remove": 0}
    for file, record in net_changes(records).items():
        if record.op == "remove":
            counts["remove"] += file in trained
        else:
            counts["replace" if file in trained else "add"] += 1
    return counts


def changes_line(counts: dict[str, int]) -> str:
    """E.g. "12 images added, 3 removed since the model was trained" ("" when nothing changed)."""
    counted = [(counts[op], word) for op, word in OPS.items() if counts.get(op, 0)]
    if not counted:
        return ""
    (first, word), rest = counted[0], counted[1:]
    text = f"{first} image{'' if first == 1 else 's'} {word}" + "".join(f", {n} {w}" for n, w in rest)
    return f"{text} since the model was trained"


class LiveCatalogues:
    """The catalogues a server writes to, one per category, opened on first use and kept."""

    def __init__(self, wait: float = REST_WAIT_SECONDS) -> None:
        self.wait = wait
        self._guard = threading.Lock()
        self._open: dict[str, Catalogue] = {}
        self._counts: dict[str, tuple[tuple[str, int], dict[str, int]]] = {}
        self._counting: dict[str, Future[dict[str, int]]] = {}
        self._counter = ThreadPoolExecutor(max_workers=2, thread_name_prefix="visearch-counts")

    def catalogue(self, engine: SearchEngine, category: str) -> Catalogue:
        """The category's catalogue (UnknownCategoryError for a name not in the registry)."""
        entry = engine.registry.get(category)
        with self._guard:
            found = self._open.get(category)
            # Reopened when the registry was reloaded or the engine reopened: never a stale entry.
            if found is None or found.category is not entry or found.index is not engine.index:
                found = open_catalogue(engine, category)
                found.wait = self.wait
                self._open[category] = found
            return found

    # --- writes -------------------------------------------------------------------------------
    def add(self, engine: SearchEngine, category: str, data: bytes, row: dict[str, Any]) -> WriteAnswer:
        """Add an image (see :meth:`Catalogue.add`), with the near-duplicates it has in the category."""
        with image_field():
            result = self.catalogue(engine, category).add(data, row)
        return self._answer(engine, category, "add", result, duplicates=True)

    def replace(
        self, engine: SearchEngine, category: str, pid: str, data: bytes | None, row: dict[str, Any] | None
    ) -> WriteAnswer:
        """Replace an image's bytes and/or row (see :meth:`Catalogue.replace`).

        Raises:
            InvalidRowError: neither an image nor a row was sent (field ``image``).
        """
        if data is None and row is None:
            raise InvalidRowError("image", "send a new `image` and/or a new `row`")
        if row is not None and "class" in row and "label" not in row:
            # A new class without a label takes its class's label (or the next free one), not the old one.
            row = {**row, "label": None}
        with image_field():
            result = self.catalogue(engine, category).replace(pid, data, row)
        return self._answer(engine, category, "replace", result, duplicates=data is not None)

    def remove(self, engine: SearchEngine, category: str, pid: str) -> WriteAnswer:
        """Remove an image from the live index and the category's data (see :meth:`Catalogue.remove`)."""
        return self._answer(engine, category, "remove", self.catalogue(engine, category).remove(pid))

    def _answer(
        self, engine: SearchEngine, category: str, op: str, result: WriteResult, *, duplicates: bool = False
    ) -> WriteAnswer:
        catalogue = self.catalogue(engine, category)
        seq = result.record.seq if result.record else catalogue.log.last_seq()
        near = self.near_duplicates(engine, category, result.id) if duplicates else []
        return WriteAnswer(
            op,
            result.id,
            result.file,
            result.created,
            result.model_version,
            seq,
            data_version(result.version.data_hash, seq),
            result.new_class,
            near,
        )

    def near_duplicates(self, engine: SearchEngine, category: str, pid: str) -> list[NearDuplicate]:
        """Up to five images of the live index above the category's ``duplicate_threshold`` to ``pid``."""
        threshold = engine.registry.get(category).duplicate_threshold
        answer = engine.similar(category, pid, k=MAX_NEAR_DUPLICATES, min_similarity=threshold * 100)
        return [NearDuplicate(r.id, r.file, r.cls, r.similarity) for r in answer.results if r.score > threshold]

    # --- reads --------------------------------------------------------------------------------
    def changes(self, engine: SearchEngine, category: str) -> dict[str, int]:
        """Images added, replaced and removed since the live version's model was trained (net per file).

        Recounted only when the live version or the log's length changed (one listing per call).
        """
        live = engine.index.live(category)
        if live is None:
            return {"add": 0, "replace": 0, "remove": 0}
        log = self.catalogue(engine, category).log
        last = log.last_seq()
        key = (live.name, last)
        cached = self._counts.get(category)
        if cached and cached[0] == key:
            return cached[1]
        catalogue = self.catalogue(engine, category)
        built = log.built_from(live.name) or 0  # no marker: built before the log existed
        trained = set(catalogue.rows(upto=built)["file"].astype(str))
        counts = counts_since(trained, log.records(after=built, upto=last))
        self._counts[category] = (key, counts)
        return counts

    def changes_now(
        self, engine: SearchEngine, category: str, wait: float = COUNT_WAIT_SECONDS
    ) -> dict[str, int] | None:
        """:meth:`changes` within ``wait`` seconds, else the last counts (None: never counted).

        The count reads the change log from the object store; /categories must answer while the
        store is slow or down (what needs only the index still answers), so it never waits longer.
        One count per category runs at a time: a hung store does not pile up threads.
        """
        with self._guard:
            future = self._counting.get(category)
            if future is None or future.done():
                future = self._counter.submit(self.changes, engine, category)
                self._counting[category] = future
        try:
            return future.result(timeout=wait)
        except Exception as exc:  # noqa: BLE001 - a timeout or an engine error: the counts are only informative
            logger.debug("change counts of %s not available now: %s", category, exc)
            cached = self._counts.get(category)
            return cached[1] if cached else None

    def close(self) -> None:
        """Stop the counting threads (a count stuck on the store is left to finish on its own)."""
        self._counter.shutdown(wait=False, cancel_futures=True)

    # --- service start ------------------------------------------------------------------------
    def catch_up(self, engine: SearchEngine) -> dict[str, str]:
        """Apply to each live version the records it missed (a write killed between record and index write).

        Answers what it did per category (only those with work or a failure). A category that
        fails is reported and skipped; the next write to it catches up again.
        """
        outcome = {}
        for entry in engine.registry.categories:
            if engine.index.live(entry.name) is None:
                continue
            try:
                applied = self.catalogue(engine, entry.name).catch_up()
                if applied.upserted or applied.deleted:
                    outcome[entry.name] = f"{applied.upserted} written, {applied.deleted} deleted"
            except VisearchError as exc:
                outcome[entry.name] = f"not caught up: {exc}"
        return outcome


def bounded(call: Callable[[], Any], seconds: float, name: str) -> bool:
    """Run ``call`` in a daemon thread, waiting at most ``seconds``; True if it finished (it goes on otherwise)."""
    thread = threading.Thread(target=call, name=name, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        logger.warning("%s still running after %.0f s; going on without waiting", name, time.monotonic() - start)
        return False
    return True
