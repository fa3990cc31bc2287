"""How the CLI prints results: JSON, the metrics table and the search results table."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from visearch.search import SearchResult

SHORT_NAMES = {
    "precision_at_1": "P@1",
    "mean_average_precision_at_r": "MAP@R",
    "r_precision": "R-prec",
    "recall_at_1": "R@1",
    "recall_at_5": "R@5",
    "recall_at_10": "R@10",
}


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (values JSON cannot hold as text)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def format_metrics(report: dict[str, Any]) -> str:
    """A table: one row per (model, evaluation), columns the metrics."""
    from visearch.evaluate import METRICS

    lines = [f"{'model':<10} {'evaluation':<15} " + " ".join(f"{SHORT_NAMES[m]:>7}" for m in METRICS)]
    for name, result in report.items():
        for evaluation in ("in_domain", "class_disjoint"):
            if evaluation in result:
                values = " ".join(f"{result[evaluation][m]:>7.3f}" for m in METRICS)
                lines.append(f"{name:<10} {evaluation:<15} {values}")
    return "\n".join(lines)


def format_results(results: list[SearchResult], score_kind: str = "cosine") -> str:
    """Rank, similarity (and its calibrated rank in the category), class and file of each result.

    Scores that are no cosine similarity (recommend, bm25, rrf) are shown as they are.
    """
    if not results:
        return "no results above the minimum similarity"
    if score_kind != "cosine":
        lines = [f"{'#':>2} {score_kind + ' score':>16}  {'class':<15} file"]
        lines += [f"{i:>2} {r.score:>16.4f}  {r.cls:<15} {r.file}" for i, r in enumerate(results, 1)]
        return "\n".join(lines)
    lines = [f"{'#':>2} {'similarity':>10} {'calibrated':>10}  {'class':<15} file"]
    for i, r in enumerate(results, 1):
        calibrated = f"{r.calibrated:>9.1f}%" if r.calibrated is not None else f"{'-':>10}"
        lines.append(f"{i:>2} {r.similarity:>9.1f}% {calibrated}  {r.cls:<15} {r.file}")
    return "\n".join(lines)
