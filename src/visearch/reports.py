"""What a run found, as Markdown: the evaluation table with the gate's decision, and the data report.

The Kubeflow dashboard renders a step's ``Markdown`` output artifact and MLflow shows the same file
as a run artifact; these functions build the text, the stages and components only write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

QUESTIONS = {
    "in_domain": "in-domain (held-out images of the training classes)",
    "class_disjoint": "class-disjoint (held-out classes)",
}
COLUMNS = {
    "mean_average_precision_at_r": "MAP@R",
    "precision_at_1": "P@1",
    "r_precision": "R-prec.",
    "recall_at_5": "Recall@5",
}
DROPPED_SHOWN = 20
CLASSES_SHOWN = 50
WORST_SHOWN = 10


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (pipes in cells escaped)."""
    cells = [[str(cell).replace("|", "\\|") for cell in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in cells[1:]]


def evaluation_markdown(
    report: Mapping[str, Any],
    decision: Mapping[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
    title: str = "Evaluation",
    evaluated: str = "",
    per_class: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    """The models side by side on both questions, then the gate's decision and why.

    Args:
        report: ``{model: {"version", "in_domain": {metric: value}, "class_disjoint": {...}}}``.
        decision: The gate's decision (``GateDecision.to_dict()``: promoted, serve, reason, eligible, evaluation).
        labels: What each model name means (``{"baseline": "frozen trunk"}``); also the row order.
        title: The heading.
        evaluated: How many images were scored (``"40 of 40"``).
        per_class: The served model's per-class metrics; the weakest classes are listed.
    """
    labels = labels or {}
    names = [name for name in labels if name in report] + [name for name in report if name not in labels]
    asked = [q for q in QUESTIONS if any(isinstance(report[n].get(q), Mapping) for n in names)]
    header = ["model", "version", *(f"{q.replace('_', '-')} {c}" for q in asked for c in COLUMNS.values()), "gate"]
    rows = []
    for name in names:
        entry = report[name]
        values = [_number(entry.get(q, {}), metric) for q in asked for metric in COLUMNS]
        role = "promoted" if name == decision.get("promoted") else ("serves" if name == decision.get("serve") else "")
        label = f"{name} ({labels[name]})" if name in labels else name
        rows.append([label, f"`{entry.get('version', '')}`", *values, role])
    promoted = decision.get("promoted")
    verdict = f"promoted `{promoted}`" if promoted else f"kept (`{decision.get('serve')}` serves)"
    ranked = str(decision.get("evaluation", "")).replace("_", "-")
    lines = [f"## {title}", ""]
    lines += [f"Questions: {'; '.join(QUESTIONS[q] for q in asked)}." if asked else "No evaluation was possible.", ""]
    lines += _table(header, rows)
    lines += [
        "",
        f"**Decision: {verdict}.**",
        "",
        f"**Why:** {decision.get('reason', '')}",
        "",
        f"Ranked on {ranked} MAP@R; eligible: {', '.join(decision.get('eligible') or []) or 'none'}."
        + (f" Scored on {evaluated} images." if evaluated else ""),
    ]
    if per_class:
        worst = sorted(per_class, key=lambda c: (per_class[c]["map_at_r"], c))[:WORST_SHOWN]
        lines += ["", f"### Weakest classes of `{decision.get('serve')}` (MAP@R)", ""]
        lines += _table(
            ["class", "MAP@R", "P@1", "queries"],
            [
                [c, f"{per_class[c]['map_at_r']:.4f}", f"{per_class[c]['precision_at_1']:.4f}", per_class[c]["queries"]]
                for c in worst
            ],
        )
    return "\n".join(lines) + "\n"


def _number(metrics: Mapping[str, Any], metric: str) -> str:
    return f"{float(metrics[metric]):.4f}" if metric in metrics else "–"


def data_report_markdown(summary: Mapping[str, Any], manifest: pd.DataFrame | None = None) -> str:
    """Preprocess's ``report.json`` as Markdown: rows kept and dropped by reason, classes, splits, the evaluation plan.

    With the ``manifest``, a table of the classes (the largest ``CLASSES_SHOWN``) and where each went.
    """
    dropped = list(summary.get("dropped", []))
    lines = [
        f"## Data report: {summary.get('category', '')}",
        "",
        f"**{summary.get('kept', 0)} of {summary.get('total', 0)} rows kept, {len(dropped)} dropped.**",
        "",
    ]
    reasons = dict(summary.get("reasons", {}))
    if reasons:
        ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
        lines += _table(["reason", "rows dropped"], [[reason, count] for reason, count in ordered])
        lines += ["", *(f"- `{d['file']}`: {d['reason']}" for d in dropped[:DROPPED_SHOWN])]
        if len(dropped) > DROPPED_SHOWN:
            lines.append(f"- ... and {len(dropped) - DROPPED_SHOWN} more (report.json lists all)")
        lines.append("")
    per_class, sizes = summary.get("images_per_class", {}), summary.get("image_sizes", {})
    lines += [
        "### Classes",
        "",
        f"{summary.get('classes', 0)} classes; images per class: min {per_class.get('min', '–')}, "
        f"median {per_class.get('median', '–')}, max {per_class.get('max', '–')}; image sizes "
        f"{sizes.get('min', '–')} to {sizes.get('max', '–')} (median {sizes.get('median', '–')}).",
        "",
    ]
    splits = dict(summary.get("splits", {}))
    if splits:
        lines += [*_table(["split", "images"], [[name, count] for name, count in sorted(splits.items())]), ""]
    if manifest is not None and len(manifest):
        counts = manifest.groupby("class")["split"].agg(
            lambda s: ", ".join(f"{k} {v}" for k, v in s.value_counts().items())
        )
        sizes_by_class = manifest["class"].value_counts()
        shown = sorted(sizes_by_class.index, key=lambda c: (-sizes_by_class[c], str(c)))[:CLASSES_SHOWN]
        lines += _table(
            ["class", "images", "split"], [[c, sizes_by_class[c], counts[c]] for c in sorted(shown, key=str)]
        )
        if len(sizes_by_class) > CLASSES_SHOWN:
            lines.append(f"\n... and {len(sizes_by_class) - CLASSES_SHOWN} smaller classes")
        lines.append("")
    plan = summary.get("evaluation", {})
    lines += [
        "### Evaluation plan",
        "",
        f"- in-domain: {'yes' if plan.get('in_domain') else 'no'}",
        f"- class-disjoint: {'yes' if plan.get('class_disjoint') else 'no'}",
        *(f"- {why}" for why in plan.get("why", [])),
        f"- {plan.get('validation', 'validation: none')}",
        "",
        "The pipeline can run." if summary.get("can_run", True) else "The pipeline cannot evaluate this category.",
    ]
    return "\n".join(lines) + "\n"
