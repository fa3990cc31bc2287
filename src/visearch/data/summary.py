"""What a category's data amounts to, and which evaluation it allows: `visearch check` and preprocess print it.

Evaluation has two questions (design.md): in-domain needs held-out images of training classes (a
class gives some up only if enough stay for training); class-disjoint needs at least two held-out
classes. A category whose classes hold two images each is evaluated class-disjoint only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

import pandas as pd

from visearch.data.checks import VALIDATION, VALIDATION_CLASS, smallest_class_held_out
from visearch.data.meta import DataReport


@dataclass
class EvaluationPlan:
    """Which evaluations the split allows, and why one is missing."""

    in_domain: bool
    class_disjoint: bool
    why: list[str] = field(default_factory=list)
    validation_in_domain: bool = False
    validation_classes: bool = False
    validation_why: list[str] = field(default_factory=list)

    @property
    def possible(self) -> bool:
        """Whether at least one evaluation can run."""
        return self.in_domain or self.class_disjoint

    def line(self) -> str:
        """One line: which evaluation runs and why (the run prints it)."""
        ran = [name for name, on in (("in-domain", self.in_domain), ("class-disjoint", self.class_disjoint)) if on]
        head = f"evaluation: {' + '.join(ran)}" if ran else "evaluation: none possible"
        return f"{head}{' (' + '; '.join(self.why) + ')' if self.why else ''}"

    def validation_line(self) -> str:
        """One line: which validation picks the best epoch (and stops early), or why training runs every epoch."""
        ran = [
            name
            for name, on in (("in-domain", self.validation_in_domain), ("held-out classes", self.validation_classes))
            if on
        ]
        head = f"validation: {' + '.join(ran)} (best epoch kept, early stopping)" if ran else "validation: none"
        tail = "; ".join(self.validation_why) + ("; training runs all epochs" if not ran else "")
        return f"{head}{' (' + tail + ')' if tail else ''}"


def evaluation_plan(
    manifest: pd.DataFrame, *, holdout: float, min_images_per_class: int, validation: float = 0.0
) -> EvaluationPlan:
    """What the manifest's split allows (see :func:`visearch.data.checks.split_by_class`)."""
    split = manifest["split"]
    in_domain = bool((split == "heldout").any())
    test_classes = manifest.loc[split == "test", "class"].nunique()
    class_disjoint = test_classes >= 2
    why = []
    training_classes = ~split.isin(["test", VALIDATION_CLASS])
    if not in_domain:
        largest = int(manifest.loc[training_classes].groupby("class").size().max())
        needed = smallest_class_held_out(holdout, min_images_per_class)
        reason = f"holding out {holdout:g} of a class needs {needed}+ images" if needed else "holdout is 0"
        why.append(f"no in-domain: the largest training class has {largest} image(s); {reason}")
    if not class_disjoint:
        why.append(f"no class-disjoint: {test_classes} held-out class(es), 2 needed; add classes or lower split")
    val_in_domain = bool((split == VALIDATION).any())
    val_classes = manifest.loc[split == VALIDATION_CLASS, "class"].nunique() >= 2
    val_why = []
    if validation <= 0:
        val_why.append("validation is 0")
    else:
        if not val_in_domain:
            largest = int(manifest.loc[training_classes].groupby("class").size().max())
            val_why.append(
                f"no in-domain: the largest training class has {largest} image(s), too few to spare {validation:g}"
            )
        if not val_classes:
            held = test_classes + manifest.loc[split == VALIDATION_CLASS, "class"].nunique()
            val_why.append(
                f"no held-out classes: {validation:g} of {held} held-out class(es) is under 2, or leaves under 2 to test"
            )
    return EvaluationPlan(in_domain, class_disjoint, why, val_in_domain, val_classes, val_why)


@dataclass
class DataSummary:
    """Rows kept and dropped by reason, classes, images per class, image sizes, duplicate images."""

    category: str
    report: DataReport
    classes: int
    per_class: dict[str, int]
    sizes: list[tuple[int, int]]
    duplicate_groups: list[list[str]]
    plan: EvaluationPlan

    @classmethod
    def of(
        cls,
        category: str,
        manifest: pd.DataFrame,
        report: DataReport,
        sizes: list[tuple[int, int]],
        plan: EvaluationPlan,
    ) -> DataSummary:
        """Summarise a preprocessed manifest: classes, images per class, duplicate groups by digest."""
        groups = manifest.groupby("digest")["file"].apply(list)
        duplicates = [sorted(map(str, files)) for files in groups if len(files) > 1]
        per_class = {str(k): int(v) for k, v in manifest["class"].value_counts().sort_index().items()}
        return cls(category, report, len(per_class), per_class, sizes, duplicates, plan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary, with min/median/max images per class and image size statistics."""
        counts = list(self.per_class.values())
        return {
            "category": self.category,
            **self.report.to_dict(),
            "classes": self.classes,
            "images_per_class": {"min": min(counts), "median": median(counts), "max": max(counts)},
            "image_sizes": _size_stats(self.sizes),
            "duplicate_images": self.duplicate_groups,
            "evaluation": {
                "in_domain": self.plan.in_domain,
                "class_disjoint": self.plan.class_disjoint,
                "why": self.plan.why,
                "validation": self.plan.validation_line(),
            },
            "can_run": self.plan.possible,
        }

    def text(self) -> str:
        """The terminal report: a table of drop reasons, the class and size figures, the verdict."""
        counts = list(self.per_class.values())
        sizes = _size_stats(self.sizes)
        lines = [
            f"{self.category}: {self.report.kept} of {self.report.total} rows kept, {len(self.report.dropped)} dropped",
        ]
        reasons = self.report.reasons()
        if reasons:
            lines.append(f"  {'dropped':>7}  reason")
            lines += [f"  {count:>7}  {kind}" for kind, count in reasons.most_common()]
        lines += [f"  dropped {file}: {reason}" for file, reason in self.report.dropped[:10]]
        if len(self.report.dropped) > 10:
            lines.append(f"  ... and {len(self.report.dropped) - 10} more (see the JSON report)")
        lines.append(
            f"classes: {self.classes}; images per class: min {min(counts)}, median {median(counts):g}, max {max(counts)}"
        )
        lines.append(
            f"image sizes: {sizes['min']} smallest, {sizes['median']} median, {sizes['max']} largest (width x height)"
        )
        if self.duplicate_groups:
            shown = "; ".join(" = ".join(group) for group in self.duplicate_groups[:5])
            lines.append(f"identical images: {len(self.duplicate_groups)} group(s): {shown}")
        lines.append(self.plan.line())
        lines.append(self.plan.validation_line())
        verdict = "the pipeline can run" if self.plan.possible else "the pipeline cannot evaluate this category"
        lines.append(verdict)
        return "\n".join(lines)


def _size_stats(sizes: list[tuple[int, int]]) -> dict[str, str]:
    if not sizes:
        return {"min": "-", "median": "-", "max": "-"}
    by_area = sorted(sizes, key=lambda size: size[0] * size[1])
    return {
        name: f"{w}x{h}"
        for name, (w, h) in (("min", by_area[0]), ("median", by_area[len(by_area) // 2]), ("max", by_area[-1]))
    }
