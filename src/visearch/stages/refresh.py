"""Refresh: bring a live category up to date with its change log without training, or say it needs training.

Live writes already reach the live index at once; what a refresh adds is the bookkeeping of a run:
it applies any change the live version missed (a writer killed between its record and its index
write), counts what changed since the live model was trained, records that as an MLflow run
(its data version and counts), and applies the category's refresh policy (``Category.refresh``):
past a share of changed images, or when a class the model never saw arrived, the category should
be retrained (``visearch pipeline run``) rather than refreshed.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from visearch.categories import Category
from visearch.settings import Settings
from visearch.storage import ObjectStore


@dataclass
class RefreshOutcome:
    """What a refresh found and did for one category."""

    category: str
    collection: str
    changes: dict[str, int]  # added / replaced / removed since the live model was trained
    images: int
    new_classes: list[str]
    applied: int  # records the live version had missed, applied now
    retrain: bool
    reason: str
    data_version: str = ""
    run_id: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def changed_share(self) -> float:
        """Changed images as a share of the category's images now (0 for an empty category)."""
        return sum(self.changes.values()) / self.images if self.images else 0.0

    def line(self) -> str:
        """One status line: what changed since training and the decision."""
        from visearch.catalogue_api import changes_line

        changed = changes_line(self.changes) or "no change since the model was trained"
        missed = f"; applied {self.applied} missed change(s)" if self.applied else ""
        verdict = "retrain" if self.retrain else "refreshed"
        return f"{self.category}: {changed} ({self.changed_share:.1%} of {self.images} images){missed}; {verdict}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "changed_share": self.changed_share}


def decide(category: Category, changes: dict[str, int], images: int, new_classes: list[str]) -> tuple[bool, str]:
    """The refresh policy: retrain when a new class arrived or too large a share of the images changed."""
    policy = category.refresh
    if new_classes and policy.retrain_on_new_class:
        return True, f"new class(es) the model never saw: {', '.join(sorted(new_classes)[:5])}"
    share = sum(changes.values()) / images if images else 0.0
    if share > policy.max_changed_share:
        return (
            True,
            f"{share:.1%} of the images changed since training (policy: retrain above {policy.max_changed_share:.0%})",
        )
    return False, f"within the policy ({share:.1%} changed, at most {policy.max_changed_share:.0%}; no new class)"


def refresh(settings: Settings, store: ObjectStore, category: Category, *, track: bool = True) -> RefreshOutcome:
    """Apply what the live version missed, count the changes since training, record the run, decide.

    Raises:
        NotFoundError: the category has no live index (run the pipeline first).
    """
    from visearch.catalogue import ChangeLog, data_version, net_changes
    from visearch.catalogue_api import counts_since
    from visearch.categories import Registry
    from visearch.index import open_index
    from visearch.live_writes import open_catalogue
    from visearch.search import SearchEngine

    index = open_index(settings)
    try:
        engine = SearchEngine(settings, Registry(categories=[category]), store, index)
        catalogue = open_catalogue(engine, category.name)
        applied = catalogue.catch_up()
        live = index.require_live(category.name)
        log = ChangeLog(store, category)
        since = log.built_from(live.name) or 0
        seq = log.last_seq()
        records = log.records(after=since, upto=seq)
        net = net_changes(records)
        changes = counts_since(set(catalogue.rows(upto=since)["file"].astype(str)), records)
        new_classes = sorted({str(r.row.get("class")) for r in net.values() if r.new_class and r.op != "remove"})
        rows = catalogue.rows(upto=seq)
        retrain, reason = decide(category, changes, len(rows), new_classes)
        listed = rows.reindex(columns=["file", "class", "label", "key"]).to_csv(index=False).encode()
        version = data_version(hashlib.sha256(listed).hexdigest()[:12], seq)
        outcome = RefreshOutcome(
            category.name,
            live.name,
            changes,
            len(rows),
            new_classes,
            applied.upserted + applied.deleted,
            retrain,
            reason,
            version,
        )
    finally:
        index.close()
    if track:
        outcome.run_id = _record(settings, outcome, seq)
    return outcome


def _record(settings: Settings, outcome: RefreshOutcome, seq: int) -> str:
    """The refresh as an MLflow run of the category's experiment: its data version, counts and decision."""
    from visearch.tracking import Tracker

    tracker = Tracker.from_settings(settings)
    run = tracker.run(tracker.start_run(outcome.category, run_name="refresh", tags={"visearch.mode": "refresh"}))
    with run.failing():
        run.log_params({"data_version": outcome.data_version, "changes_seq": seq, "collection": outcome.collection})
        run.log_metrics(
            {
                **{f"changes.{op}": float(count) for op, count in outcome.changes.items()},
                "changes.share": outcome.changed_share,
                "changes.applied_now": float(outcome.applied),
                "images": float(outcome.images),
            }
        )
        run.set_tags({"refresh.retrain": outcome.retrain, "refresh.reason": outcome.reason})
    run.end()
    return run.run_id
