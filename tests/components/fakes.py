"""kfp artifacts as a component's Python function receives them (``.python_func`` called directly)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class FakeArtifact:
    """What kfp hands a component for an Input/Output artifact: a local ``path`` and a ``metadata`` dict."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict[str, Any] = {}


class FakeMetrics(FakeArtifact):
    """An Output[Metrics]: ``log_metric`` records into ``metrics``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.metrics: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value
