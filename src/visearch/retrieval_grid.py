"""The retrieval grid: a fixed sample of held-out queries and the top-k images a model retrieves for them.

One self-contained HTML page (thumbnails inline as ``data:`` URIs, no external URL), so the Kubeflow
dashboard renders it as an ``HTML`` output artifact and MLflow shows it as a run artifact. A result
of another class than its query is marked wrong: what the metrics count, made visible.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUERIES = 8
TOP_K = 5
THUMBNAIL = 96  # px, the longer side of a thumbnail
BATCH = 512  # queries per similarity block: memory stays bounded on large galleries


@dataclass(frozen=True)
class GridRow:
    """One query (a row position) and its results: (row position, cosine similarity), best first."""

    query: int
    hits: list[tuple[int, float]]


def nearest(
    queries: np.ndarray, reference: np.ndarray, k: int, *, skip: np.ndarray | None = None
) -> list[list[tuple[int, float]]]:
    """The ``k`` most cosine-similar reference rows of each query: (reference position, similarity), best first.

    ``skip``: per query, a reference position it must not retrieve (itself, when queries search
    among themselves), or -1.
    """
    ref = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    k = min(k, len(ref) - (0 if skip is None else 1))
    found: list[list[tuple[int, float]]] = []
    for lo in range(0, len(queries), BATCH):
        block = queries[lo : lo + BATCH]
        sims = (block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)) @ ref.T
        if skip is not None:
            rows = np.flatnonzero(skip[lo : lo + BATCH] >= 0)
            sims[rows, skip[lo : lo + BATCH][rows]] = -np.inf
        # Ties are broken by position, so the grid is the same on every run.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        found += [[(int(j), float(sims[i, j])) for j in row] for i, row in enumerate(order)]
    return found


def sample_rows(
    vectors: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    reference: np.ndarray | None,
    *,
    count: int = QUERIES,
    k: int = TOP_K,
    seed: int = 0,
) -> list[GridRow]:
    """``count`` queries drawn with ``seed`` (spread over their classes) and their top ``k`` results.

    ``queries`` and ``reference`` are row positions; ``reference`` None: the queries search among
    themselves (a query never retrieves itself).
    """
    order = np.random.default_rng(seed).permutation(queries)
    # Round-robin over classes: the first of each class, then the second of each...
    seen: dict[int, int] = {}
    rank = []
    for row in order:
        label = int(labels[row])
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    chosen = order[np.argsort(rank, kind="stable")][:count]
    ref = queries if reference is None else reference
    skip = None
    if reference is None:
        where = {int(row): position for position, row in enumerate(ref)}
        skip = np.array([where[int(row)] for row in chosen])
    hits = nearest(vectors[chosen], vectors[ref], k, skip=skip)
    return [
        GridRow(int(query), [(int(ref[i]), score) for i, score in found])
        for query, found in zip(chosen, hits, strict=True)
    ]


def thumbnail_uri(path: Path, size: int = THUMBNAIL) -> str:
    """The image as a ``data:image/jpeg;base64,...`` thumbnail (longer side ``size``; small images scaled up)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        small = ImageOps.contain(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
table{border-collapse:collapse}td{padding:4px;text-align:center;vertical-align:top;font-size:12px}
td.query{border-right:3px solid #888;padding-right:12px}
img{display:block;margin:auto;border:3px solid transparent;border-radius:4px}
td.right img{border-color:#2e7d32}td.wrong img{border-color:#c62828}
td.wrong .label{color:#c62828;font-weight:bold}td.right .label{color:#2e7d32}
"""


def grid_html(
    rows: Sequence[GridRow], classes: Sequence[str], images: Sequence[Path], *, title: str, subtitle: str = ""
) -> str:
    """The grid as one HTML page: a table row per query, its ``k`` results beside it, wrong classes marked.

    ``classes`` and ``images`` are indexed by row position (the positions in ``rows``).
    """
    wrong = sum(classes[hit] != classes[row.query] for row in rows for hit, _ in row.hits)
    total = sum(len(row.hits) for row in rows)
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h2>{html.escape(title)}</h2>",
        f"<p>{html.escape(subtitle)}</p>" if subtitle else "",
        f'<p class="summary">{wrong} of {total} results are of another class than their query (red, ✗).</p>',
        "<table>",
    ]
    for row in rows:
        query_class = classes[row.query]
        cells = [_cell("query", images[row.query], f"query: {query_class}")]
        for hit, score in row.hits:
            right = classes[hit] == query_class
            mark = "✓" if right else "✗"
            cells.append(_cell("right" if right else "wrong", images[hit], f"{mark} {classes[hit]} · {score:.2f}"))
        lines.append(f'<tr class="query-row">{"".join(cells)}</tr>')
    lines += ["</table>", "</body></html>"]
    return "\n".join(line for line in lines if line)


def _cell(kind: str, image: Path, label: str) -> str:
    text = html.escape(label)
    return (
        f'<td class="{kind}"><img src="{thumbnail_uri(image)}" alt="{text}" title="{html.escape(image.name)}">'
        f'<div class="label">{text}</div></td>'
    )
