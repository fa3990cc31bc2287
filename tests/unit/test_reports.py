"""What a run shows its users: the evaluation table, the data report (Markdown) and the retrieval grid (HTML)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY, TINY_CLASSES, TINY_PER_CLASS
from visearch.gate import CURRENT, FROZEN, TUNED, decide
from visearch.reports import data_report_markdown, evaluation_markdown
from visearch.retrieval_grid import grid_html, nearest, sample_rows
from visearch.settings import Settings

LABELS = {TUNED: "fine-tuned", FROZEN: "frozen trunk", CURRENT: "current champion"}


def entry(version: str, in_domain: float, class_disjoint: float) -> dict[str, object]:
    return {
        "version": version,
        "in_domain": {"mean_average_precision_at_r": in_domain, "precision_at_1": in_domain + 0.1},
        "class_disjoint": {"mean_average_precision_at_r": class_disjoint, "precision_at_1": class_disjoint + 0.1},
    }


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The evaluation table's body rows by their first cell."""
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows[1:]}


def test_the_evaluation_table_shows_every_model_on_both_questions_and_the_decision() -> None:
    report = {TUNED: entry("t1", 0.61, 0.52), FROZEN: entry("f1", 0.40, 0.50), CURRENT: entry("c1", 0.55, 0.51)}
    decision = decide(report, candidates=[TUNED, FROZEN], champion=CURRENT)
    markdown = evaluation_markdown(report, decision.to_dict(), labels=LABELS, evaluated="40 of 40")

    rows = table_rows(markdown)
    assert list(rows) == ["tuned (fine-tuned)", "baseline (frozen trunk)", "champion (current champion)"]
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    assert "in-domain MAP@R" in header and "class-disjoint MAP@R" in header
    # version, in-domain MAP@R and P@1, ..., class-disjoint MAP@R, ..., the gate's column
    assert rows["tuned (fine-tuned)"][:3] == ["`t1`", "0.6100", "0.7100"]
    assert rows["tuned (fine-tuned)"][5] == "0.5200" and rows["tuned (fine-tuned)"][-1] == "promoted"
    assert rows["champion (current champion)"][1] == "0.5500" and rows["champion (current champion)"][-1] == ""
    assert "**Decision: promoted `tuned`.**" in markdown
    assert f"**Why:** {decision.reason}" in markdown and "beats champion c1" in decision.reason
    assert "Scored on 40 of 40 images" in markdown

    worse = {**report, TUNED: entry("t2", 0.50, 0.52)}
    kept = decide(worse, candidates=[TUNED, FROZEN], champion=CURRENT)
    markdown = evaluation_markdown(worse, kept.to_dict(), labels=LABELS)
    assert "**Decision: kept (`champion` serves).**" in markdown and kept.reason in markdown
    assert table_rows(markdown)["champion (current champion)"][-1] == "serves"


def test_a_class_disjoint_only_evaluation_leaves_the_in_domain_columns_out() -> None:
    report = {TUNED: {"version": "t", "class_disjoint": {"mean_average_precision_at_r": 0.3}}}
    report[FROZEN] = {"version": "f", "class_disjoint": {"mean_average_precision_at_r": 0.4}}
    decision = decide(report, candidates=[TUNED, FROZEN])
    markdown = evaluation_markdown(report, decision.to_dict(), labels=LABELS)
    assert "in-domain" not in markdown.split("**Decision")[0].split("\n", 3)[3]
    assert table_rows(markdown)["baseline (frozen trunk)"][1] == "0.4000"


def test_the_data_report_lists_drops_by_reason_classes_splits_and_the_plan(
    home: Settings,
    registry,
    store,  # type: ignore[no-untyped-def]
) -> None:
    from visearch.data.manifest import load_manifest
    from visearch.stages.preprocess import run_preprocess

    images = home.objects_dir / "datasets" / TINY / "images"
    broken = sorted(images.rglob("*.png"))[0]
    broken.write_bytes(b"not a png")  # one unreadable image: dropped with its reason
    folder, summary = run_preprocess(home, store, registry.get(TINY), home.work_dir / "m", show_progress=False)
    markdown = data_report_markdown(summary, load_manifest(folder.parent))

    total = len(TINY_CLASSES) * TINY_PER_CLASS
    assert f"**{total - 1} of {total} rows kept, 1 dropped.**" in markdown
    (reason,) = summary["reasons"]
    assert f"| {reason} | 1 |" in markdown and f"- `{broken.relative_to(images).as_posix()}`: {reason}" in markdown
    for name in TINY_CLASSES:
        assert re.search(rf"^\| {name} \| \d+ \| (train|heldout|test) \d+", markdown, re.M), name
    for split, count in summary["splits"].items():
        assert f"| {split} | {count} |" in markdown
    assert "- in-domain: yes" in markdown and "- class-disjoint: yes" in markdown
    assert "validation:" in markdown and "The pipeline can run." in markdown


@pytest.fixture
def tiny_images(home: Settings) -> pd.DataFrame:
    """The tiny category's rows (real PNGs) with their local file, and two queries per class."""
    root = home.objects_dir / "datasets" / TINY
    frame = pd.read_csv(root / "meta.csv", index_col=0).reset_index(drop=True)
    frame["path"] = [root / "images" / file for file in frame["file"]]
    frame["query"] = frame.groupby("class").cumcount() < 2
    return frame


def test_the_retrieval_grid_shows_a_row_per_query_with_k_inline_thumbnails_and_marks_wrong_classes(
    tiny_images: pd.DataFrame,
) -> None:
    labels = tiny_images["label"].to_numpy()
    rng = np.random.default_rng(0)
    vectors = np.eye(labels.max() + 1)[labels] + rng.normal(0, 0.05, (len(labels), labels.max() + 1))
    # Two gallery images look like another class: the queries of that class retrieve them first.
    impostors = tiny_images.index[~tiny_images["query"] & (tiny_images["label"] == labels[0])][:2]
    other = labels[labels != labels[0]][0]
    vectors[impostors] = np.eye(labels.max() + 1)[other] * 1.5
    queries = np.flatnonzero(tiny_images["query"])
    gallery = np.flatnonzero(~tiny_images["query"])

    rows = sample_rows(vectors, labels, queries, gallery, count=8, k=5, seed=3)
    assert rows == sample_rows(vectors, labels, queries, gallery, count=8, k=5, seed=3)  # fixed sample
    assert len(rows) == 8 and all(len(row.hits) == 5 for row in rows)
    assert len({labels[row.query] for row in rows}) == len(TINY_CLASSES)  # spread over the classes
    classes = tiny_images["class"].tolist()
    page = grid_html(rows, classes, list(tiny_images["path"]), title="tiny grid")

    body = page.split("<table>")[1]
    table = re.findall(r'<tr class="query-row">(.*?)</tr>', body)
    assert len(table) == 8
    for row, html in zip(rows, table, strict=True):
        cells = re.findall(r'<td class="(query|right|wrong)"><img src="data:image/jpeg;base64,[A-Za-z0-9+/=]+"', html)
        expected = ["right" if classes[hit] == classes[row.query] else "wrong" for hit, _ in row.hits]
        assert cells == ["query", *expected]
    wrong = sum(classes[hit] != classes[row.query] for row in rows for hit, _ in row.hits)
    assert wrong >= 2 and page.count('class="wrong"') == wrong and page.count('<div class="label">✗') == wrong
    assert f"{wrong} of 40 results" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page) and "http" not in page  # self-contained


def test_queries_that_search_among_themselves_never_retrieve_themselves() -> None:
    vectors = np.random.default_rng(1).normal(size=(12, 4))
    labels = np.repeat(np.arange(3), 4)
    rows = sample_rows(vectors, labels, np.arange(12), None, count=12, k=11)
    assert all(row.query not in [hit for hit, _ in row.hits] and len(row.hits) == 11 for row in rows)
    # nearest agrees with a brute-force cosine ranking
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    found = nearest(vectors[:3], vectors, 3)
    for query, hits in enumerate(found):
        assert [hit for hit, _ in hits] == list(np.argsort(-(unit @ unit[query]))[:3])
        assert hits[0] == (query, pytest.approx(1.0))
