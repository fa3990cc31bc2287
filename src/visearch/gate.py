"""The evaluation gate: which model serves a category (design.md "Evaluation: two questions").

A candidate takes the ``champion`` alias only if it beats the current champion on in-domain
MAP@R (the classes the index serves today) without falling below the frozen pretrained trunk on
class-disjoint MAP@R (what happens when new classes arrive). The frozen trunk is a candidate too,
so the first run picks the better of fine-tuned and frozen. The champion is re-evaluated on the
same data as the candidates, so the comparison is fair when the data changed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visearch.categories import Category
from visearch.model import read_spec
from visearch.settings import Settings
from visearch.storage import ObjectStore
from visearch.tracking import CANDIDATE_TAG, TrackedRun, Tracker, flatten_report, plot_embedding_map

PRIMARY = "mean_average_precision_at_r"
FROZEN = "baseline"
TUNED = "tuned"
CURRENT = "champion"
# Where the train step logs each candidate in its MLflow run (the registry points there).
ARTIFACT_PATHS = {TUNED: "model", FROZEN: "baseline"}
MODEL_SUFFIXES = (".pth", ".json", ".onnx")


@dataclass
class GateDecision:
    """The gate's verdict: which candidate (if any) becomes champion, and why."""

    promoted: str | None
    serve: str
    reason: str
    eligible: list[str]
    evaluation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _map_at_r(entry: dict[str, Any], evaluation: str) -> float | None:
    metrics = entry.get(evaluation)
    return float(metrics[PRIMARY]) if isinstance(metrics, dict) and PRIMARY in metrics else None


def decide(
    report: dict[str, dict[str, Any]],
    *,
    candidates: list[str],
    frozen: str = FROZEN,
    champion: str | None = None,
) -> GateDecision:
    """Pick the model to serve from an evaluation report (all entries measured on the same data).

    Args:
        report: ``{name: {"version": ..., "in_domain": {...}, "class_disjoint": {...}}}``.
        candidates: Names of the new candidates (the frozen trunk among them).
        frozen: Name of the frozen-trunk entry: the class-disjoint floor.
        champion: Name of the current champion's entry, None before the first promotion.
    """
    names = [*candidates, *([champion] if champion else [])]
    # In-domain needs held-out images of the training classes; without them, rank on held-out classes.
    evaluation = "in_domain" if all(_map_at_r(report[n], "in_domain") is not None for n in names) else "class_disjoint"
    floor = _map_at_r(report[frozen], "class_disjoint")
    eligible, notes = [], []
    for name in candidates:
        disjoint = _map_at_r(report[name], "class_disjoint")
        if name != frozen and floor is not None and disjoint is not None and disjoint < floor:
            notes.append(f"{name} falls below the frozen trunk on held-out classes "
                         f"(class-disjoint MAP@R {disjoint:.4f} < {floor:.4f})")  # fmt: skip
            continue
        eligible.append(name)

    def score(name: str) -> float:
        value = _map_at_r(report[name], evaluation)
        return -1.0 if value is None else value

    # On a tie the frozen trunk wins: equal today, and it has not forgotten anything.
    best = max(eligible, key=lambda name: (score(name), name == frozen))
    label = evaluation.replace("_", "-")
    why = f"; {'; '.join(notes)}" if notes else ""
    if champion is None:
        reason = f"first model of this category: {best} ({label} MAP@R {score(best):.4f}){why}"
        return GateDecision(best, best, reason, eligible, evaluation)
    champion_version = report[champion]["version"]
    if report[best]["version"] == champion_version:
        reason = f"the best candidate ({best}, {champion_version}) is the champion already{why}"
        return GateDecision(None, champion, reason, eligible, evaluation)
    if score(best) > score(champion):
        reason = (f"{best} beats champion {champion_version} on {label} MAP@R "
                  f"({score(best):.4f} > {score(champion):.4f}){why}")  # fmt: skip
        return GateDecision(best, best, reason, eligible, evaluation)
    reason = (f"champion {champion_version} kept: the best candidate {best} does not beat it on {label} MAP@R "
              f"({score(best):.4f} <= {score(champion):.4f}){why}")  # fmt: skip
    return GateDecision(None, champion, reason, eligible, evaluation)


@dataclass
class GateOutcome:
    decision: GateDecision
    report: dict[str, Any]
    champion_dir: Path
    champion_version: str
    registry_version: str | None

    @property
    def metrics(self) -> dict[str, float]:
        """Flat metrics (``tuned.in_domain.precision_at_1``...) plus ``gate.promoted`` (1/0)."""
        return {**flatten_report(self.report), "gate.promoted": float(self.decision.promoted is not None)}


def copy_model(source: Path, destination: Path) -> Path:
    """The model files of a model directory (not checkpoints) into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in MODEL_SUFFIXES and path.resolve() != (destination / path.name).resolve():
            shutil.copyfile(path, destination / path.name)
    return destination


def evaluate_and_gate(
    settings: Settings,
    store: ObjectStore,
    category: Category,
    manifest_dir: Path,
    candidates: dict[str, Path],
    report_dir: Path,
    champion_dir: Path,
    *,
    tracker: Tracker | None = None,
    run: TrackedRun | None = None,
    show_progress: bool = True,
) -> GateOutcome:
    """Evaluate the candidates and the current champion, decide, record, and hand over the champion.

    Writes ``report.json`` (metrics + decision) and ``embedding_map.png`` to ``report_dir`` and the
    model to index (the new or the kept champion) to ``champion_dir``. With a tracker, the metrics,
    report and map go to the run, every candidate is registered once per content hash, and the
    ``champion`` alias moves only when the gate says so.
    """
    from visearch.steps import evaluate_models, load_manifest

    manifest = load_manifest(manifest_dir)
    versions = {name: read_spec(path).version for name, path in candidates.items()}
    models = dict(candidates)
    current = tracker.champion(category.name) if tracker else None
    same_as = next((name for name, version in versions.items() if current and version == current.model_version), None)
    if current and not same_as:
        models[CURRENT] = tracker.download(current, report_dir / "current-champion")  # type: ignore[union-attr]
    report, vectors = evaluate_models(settings, store, manifest, models, show_progress=show_progress)
    if current and same_as:
        report[CURRENT] = dict(report[same_as])
    decision = decide(report, candidates=list(candidates), champion=CURRENT if current else None)
    serve_dir = models[decision.serve] if decision.serve in models else candidates[same_as or ""]

    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / "report.json"
    report_path.write_text(json.dumps({**report, "gate": decision.to_dict()}, indent=2), encoding="utf-8")
    test = (manifest["split"] == "test").to_numpy()
    map_path = None
    if test.sum() > 2:
        shown = {f"{name} ({report[name]['version']})": vectors[name][test] for name in vectors}
        classes = manifest["class"].astype(str).to_numpy()[test].tolist()
        map_path = plot_embedding_map(
            report_dir / "embedding_map.png", shown, manifest["label"].to_numpy()[test], classes
        )
    copy_model(serve_dir, champion_dir)
    champion_version = read_spec(champion_dir).version

    registry_version = None
    if tracker and run:
        registered = {name: _register(tracker, run, category.name, name, path) for name, path in candidates.items()}
        if decision.promoted:
            tracker.set_champion(category.name, registered[decision.promoted])
        champ = tracker.champion(category.name)
        registry_version = champ.registry_version if champ else None
        run.log_metrics({**flatten_report(report), "gate.promoted": float(decision.promoted is not None)})
        run.log_artifact(report_path, "evaluation")
        if map_path:
            run.log_artifact(map_path, "evaluation")
        run.set_tags({"gate.decision": "promoted" if decision.promoted else "kept", "gate.reason": decision.reason,
                      "gate.champion_model_version": champion_version,
                      "gate.champion_registry_version": registry_version or ""})  # fmt: skip
    return GateOutcome(decision, report, champion_dir, champion_version, registry_version)


def _register(tracker: Tracker, run: TrackedRun, category: str, name: str, model_dir: Path) -> str:
    """Register a candidate from its run artifacts, logging them first when the train step did not."""
    artifact_path = ARTIFACT_PATHS.get(name, name)
    if not run.client.list_artifacts(run.run_id, artifact_path):
        run.log_model_dir(model_dir, artifact_path)
    return tracker.register(category, run.run_id, artifact_path, read_spec(model_dir).version, {CANDIDATE_TAG: name})
