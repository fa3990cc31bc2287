"""What the UI asks the library and how it shows the answer (plain functions: tested without a browser).

A :class:`Query` is everything the search section holds: the input image and/or caption text,
the filter, the toggles, the page, and the results the user liked or disliked. With neither likes
nor dislikes it is a search (image, text or both); with them, a recommend query whose positives
are the liked results and the input image, and whose negatives the disliked results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from visearch.errors import InvalidQueryError
from visearch.search import SearchEngine
from visearch.search_options import UNUSUAL_NOTICE, SearchAnswer, SearchResult

SCORE_HEADINGS = {
    "cosine": "similarity",
    "recommend": "recommend score",
    "bm25": "text score (BM25)",
    "rrf": "hybrid score (RRF)",
}


@dataclass(frozen=True)
class Example:
    """A result the user liked or disliked: its point id and how to name it."""

    id: str
    label: str

    @classmethod
    def of(cls, result: SearchResult) -> Example:
        """The example for a shown result."""
        return cls(result.id, f"{result.cls} · {result.file}")


@dataclass(frozen=True)
class Query:
    """One query of the search section; ``run`` asks the library for one page of it."""

    category: str
    image: Image.Image | None = None
    text: str | None = None
    filter: dict[str, Any] | None = None
    k: int = 6
    min_similarity: float = 0.0
    diverse: bool = False
    group_by_class: bool = False
    offset: int = 0
    likes: tuple[Example, ...] = field(default_factory=tuple)
    dislikes: tuple[Example, ...] = field(default_factory=tuple)

    def run(self, engine: SearchEngine) -> SearchAnswer:
        """One page of answers: a search, or a recommend query once there are likes or dislikes.

        Raises:
            InvalidQueryError: neither image nor text; only dislikes without an input image; an
                option the library refuses (e.g. diverse with text or with likes).
        """
        text = (self.text or "").strip() or None
        options: dict[str, Any] = {
            "k": self.k,
            "min_similarity": self.min_similarity,
            "filter": self.filter,
            "text": text,
            "offset": self.offset,
            "diverse": self.diverse,
            "group_by_class": self.group_by_class,
        }
        if not (self.likes or self.dislikes):
            if self.image is None and text is None:
                raise InvalidQueryError("give an input image or caption text to search with")
            return engine.search(self.category, self.image, **options)
        if self.image is None and not self.likes:
            raise InvalidQueryError("less like this needs an input image or a liked result to start from")
        return engine.recommend(
            self.category,
            positive_ids=[e.id for e in self.likes],
            negative_ids=[e.id for e in self.dislikes],
            positive_images=[self.image] if self.image is not None else [],
            **options,
        )


def score_text(result: SearchResult, kind: str) -> str:
    """The score as shown: similarity % with its calibrated value for cosine, the raw score otherwise."""
    if kind != "cosine":
        return f"{result.score:.3f}"
    calibrated = "" if result.calibrated is None else f" (calibrated {result.calibrated:.0f})"
    return f"{result.similarity:.1f} %{calibrated}"


def captions_text(result: SearchResult) -> str:
    """The non-empty caption columns as ``column: value`` pairs."""
    return ", ".join(f"{key}: {value}" for key, value in result.captions.items() if value not in (None, ""))


def caption(result: SearchResult, kind: str = "cosine") -> str:
    """Gallery caption of a result: score, class, file and the non-empty captions."""
    parts = (score_text(result, kind), result.cls, result.file, captions_text(result))
    return " · ".join(part for part in parts if part)


def results_table(answer: SearchAnswer, offset: int = 0) -> str:
    """The page as a Markdown table (ranks counted from ``offset``), or a hint when it is empty."""
    if not answer.results:
        return "No image matches; lower the minimum similarity, loosen the filters or go back a page."
    heading = SCORE_HEADINGS.get(answer.score_kind, "score")
    calibrated = answer.score_kind == "cosine"
    rows = [
        f"| # | {heading} |{' calibrated |' if calibrated else ''} class | file | captions |",
        f"|---|---|{'---|' if calibrated else ''}---|---|---|",
    ]
    for rank, result in enumerate(answer.results, offset + 1):
        score = f"{result.similarity:.1f} %" if calibrated else f"{result.score:.3f}"
        middle = f" {'–' if result.calibrated is None else f'{result.calibrated:.0f}'} |" if calibrated else ""
        rows.append(f"| {rank} | {score} |{middle} {result.cls} | {result.file} | {captions_text(result)} |")
    return "\n".join(rows)


def notice_text(answer: SearchAnswer) -> str | None:
    """The prominent warning when the library finds the query unlike the whole category, else None."""
    if answer.notice is None:
        return None
    if answer.notice == UNUSUAL_NOTICE:
        return (
            f"## ⚠ The input image is {UNUSUAL_NOTICE}\n"
            "Its nearest image is less similar than almost any two neighbours in the category: "
            "the results below are the least unlike, not good matches."
        )
    return f"## ⚠ {answer.notice}"


def feedback_text(likes: tuple[Example, ...], dislikes: tuple[Example, ...]) -> str:
    """The likes and dislikes that steer the query, or how to add some."""
    if not (likes or dislikes):
        return "Select a result, then *More like this* or *Less like this* to steer the search."
    lines = []
    if likes:
        lines.append("**More like:** " + "; ".join(e.label for e in likes))
    if dislikes:
        lines.append("**Less like:** " + "; ".join(e.label for e in dislikes))
    return "  \n".join(lines)


def page_text(offset: int, shown: int) -> str:
    """Which results the page shows, e.g. ``Results 7–12``."""
    if not shown:
        return f"No results from {offset + 1}"
    return f"Results {offset + 1}–{offset + shown}"
