"""Shared bits of the benchmark scripts: machine facts and writing a results table."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
VERSIONS = (
    "torch",
    "pytorch-metric-learning",
    "qdrant-client",
    "qdrant-edge-py",
    "onnxruntime",
    "bentoml",
    "kfp",
    "mlflow",
)


def machine() -> str:
    import os

    versions = []
    for name in VERSIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return (
        f"{time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · "
        + ", ".join(versions)
        # The machine is shared: a 1-minute load above the core count means the figures are slowed.
        + f" · load average {os.getloadavg()[0]:.1f} at the end"
    )


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, title: str, parameters: str, body: str, *, folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(f"# {title}\n\n{machine()}\n\nParameters: {parameters}\n\n{body}\n", encoding="utf-8")
    print(path.read_text(encoding="utf-8"))
    return path
