"""Each seed category, prepared from its publisher's layout, answers a filter and a text query.

The registry entries of shoes, dogs, celebrities, logos and fashion declare the columns their
adapters write (``fields`` for filters, ``captions`` for text): this indexes each fixture with the
shipped entry (frozen trunk, no training) and searches it as the service does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.unit.data.datasets import make_dogs, make_fashion, make_imdb, make_logodet, make_zappos
from visearch.categories import Registry, TrainParams, load_registry
from visearch.data.adapters import celebrities, dogs, fashion, logos, shoes
from visearch.data.adapters.runner import PrepareOptions, PrepareReport, prepare_category
from visearch.search import SearchEngine
from visearch.settings import Settings
from visearch.storage import LocalStore


@dataclass(frozen=True)
class Case:
    """A fixture layout, its adapter, a filter and the column value every hit must hold, a text query and its class."""

    make: Callable[[Path], Path]
    scan: Callable[..., list[Any]]
    filter: dict[str, Any]
    holds: tuple[str, Any]
    text: str
    text_class: str


def match(column: str, value: Any) -> dict[str, Any]:
    return {"must": [{"key": column, "match": {"value": value}}]}


CASES = {
    "shoes": Case(make_zappos, shoes.scan, match("brand", "Nike"), ("brand", "Nike"), "teva", "Sandals - Flat"),
    "dogs": Case(
        make_dogs, dogs.scan, match("breed", "Chihuahua"), ("breed", "Chihuahua"), "spaniel", "Japanese spaniel"
    ),
    # birth_year is declared an integer: a range filter needs the payload typed as one.
    "celebrities": Case(
        make_imdb,
        celebrities.scan,
        {"must": [{"key": "birth_year", "range": {"gte": 1920}}]},
        ("birth_year", 1924),
        "astaire",
        "Fred Astaire (nm0000001)",
    ),
    "logos": Case(make_logodet, logos.scan, match("category", "Clothes"), ("brand", "adidas"), "pepsi", "Pepsi"),
    "fashion": Case(
        make_fashion,
        fashion.scan,
        {"must": [{"key": "name", "match": {"text": "jeans"}}]},
        ("colour", "Blue"),
        "kurta",
        "Shirts",
    ),
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@contextmanager
def indexed(tmp_path: Path, name: str, case: Case, registry: Registry) -> Iterator[tuple[SearchEngine, pd.DataFrame]]:
    """The fixture prepared into category ``name`` (its shipped entry), indexed with a frozen trunk: an engine and the meta."""
    from visearch.data.manifest import MANIFEST
    from visearch.index import open_index
    from visearch.stages.embed import run_embed
    from visearch.stages.preprocess import check_data
    from visearch.stages.train import save_baseline
    from visearch.stages.upsert import run_upsert

    settings = Settings(visearch_home=tmp_path / "home", _env_file=None)
    store = LocalStore(settings.objects_dir)
    category = registry.get(name)
    report = PrepareReport(dataset=name)
    candidates = case.scan(case.make(tmp_path / "source"), report)
    prepare_category(store, category, candidates, report, options=PrepareOptions(min_per_class=2, show_progress=False))
    work = settings.work_dir / name
    # The rows and their keys as preprocess writes them; no evaluation is planned (nothing is trained).
    manifest, _ = check_data(settings, store, category, show_progress=False)
    (work / "manifest").mkdir(parents=True)
    manifest.to_csv(work / "manifest" / MANIFEST, index=False)
    model = save_baseline(TrainParams(input_size=32), work / "model")
    embeddings = run_embed(settings, store, category, work / "manifest", model, work / "emb", show_progress=False)
    run_upsert(settings, store, category, work / "manifest", model, embeddings)
    meta = pd.read_csv(settings.objects_dir / category.data_prefix / "meta.csv", index_col=0)
    engine = SearchEngine(settings, registry, store, open_index(settings))
    try:
        yield engine, meta
    finally:
        engine.close()


@pytest.mark.parametrize("name", list(CASES))
def test_a_prepared_seed_category_answers_a_filter_and_a_text_query(
    name: str, tmp_path: Path, registry: Registry
) -> None:
    case = CASES[name]
    declared = registry.get(name)
    with indexed(tmp_path, name, case, registry) as (engine, meta):
        written = set(meta.columns) - {"file", "class", "label"}
        assert set(declared.captions) <= written <= set(declared.fields), "the entry declares what the adapter writes"
        example = engine.examples(name, 1)[0]
        query = engine.store.get_bytes(example.image_key)
        column, value = case.holds
        hits = engine.search(name, query, k=50, filter=case.filter).results
        assert hits and {hit.captions[column] for hit in hits} == {value}
        assert len(hits) == int((meta[column] == value).sum())
        found = engine.search(name, text=case.text, k=50).results
        assert found and {hit.cls for hit in found} == {case.text_class}
