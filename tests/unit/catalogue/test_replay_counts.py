"""A replay's account and its payloads, on a few records (fast enough for the mutation check).

``replay`` reports what it applied (the upsert step logs it) and leaves the points a query returns:
class, label, captions and image address of each added or replaced image, as a pipeline writes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tests.unit.catalogue.conftest import build_version, embed, png
from visearch.catalogue import Catalogue, ChangeLog, replay
from visearch.index import CollectionVersion, point_id


def test_replay_reports_what_it_applied_and_swaps_only_when_asked(live: Catalogue) -> None:
    log = ChangeLog(live.store, live.category)
    since = log.last_seq()
    new = build_version(live, "m2", upto=since)
    first = live.add(png(20), {"class": "Bag"})
    live.add(png(21), {"class": "Bag"})
    assert live.replace(first.id, png(22)).created  # the same file twice: applied once
    base = live.rows(upto=since)["file"].iloc[0]
    gone = live.remove(point_id(live.category.name, base))
    assert gone.created

    result = replay(live.index, live.store, live.category, new, since, embed, live.lock_dir, swap=False)

    assert (result.records, result.locked_records, result.upserted, result.deleted) == (4, 0, 2, 1)
    assert result.seq == log.last_seq() and result.swapped is False
    assert live.index.require_live(live.category.name).name != new.name  # not swapped
    assert log.applied(new.name) == result.seq and log.built_from(new.name) == since

    again = replay(live.index, live.store, live.category, new, result.seq, embed, live.lock_dir)
    assert (again.records, again.upserted, again.deleted, again.seq, again.swapped) == (0, 0, 0, result.seq, True)
    assert live.index.require_live(live.category.name).name == new.name
    assert log.built_from(new.name) == since  # a second replay keeps what the model was trained on


def test_records_arriving_during_the_replay_are_applied_under_the_lock(live: Catalogue) -> None:
    log = ChangeLog(live.store, live.category)
    since = log.last_seq()
    new = build_version(live, "m2", upto=since)
    live.add(png(30), {"class": "Bag"})
    late: list[str] = []

    def embed_while_a_user_adds(version: CollectionVersion | None, datas: Sequence[bytes]) -> np.ndarray:
        if not late:  # the first (unlocked) pass: another write lands meanwhile
            late.append(live.add(png(31), {"class": "Bag"}).id)
        return embed(version, datas)  # type: ignore[arg-type]

    result = replay(live.index, live.store, live.category, new, since, embed_while_a_user_adds, live.lock_dir)

    assert (result.records, result.locked_records, result.upserted, result.deleted) == (2, 1, 2, 0)
    assert {r.id for r in live.index.records(new.name, late)} == set(late)
    assert result.seq == log.last_seq()


def test_replayed_points_carry_the_payload_a_pipeline_writes(live: Catalogue) -> None:
    since = ChangeLog(live.store, live.category).last_seq()
    new = build_version(live, "m2", upto=since)
    added = live.add(png(40), {"class": "Dress"})
    replay(live.index, live.store, live.category, new, since, embed, live.lock_dir)
    [record] = live.index.records(new.name, [added.id])
    stored = live.index.records(live.index.require_live(live.category.name).name, [added.id])[0].payload
    payload = record.payload
    assert payload["file"] == added.file and payload["class"] == "Dress" and payload["label"] == 3
    assert payload["image_key"] and payload["image_uri"] == live.store.uri(payload["image_key"])
    assert payload == stored
