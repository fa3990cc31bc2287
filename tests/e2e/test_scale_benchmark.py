"""benchmarks/scale.py on a few hundred Fashion-MNIST images: every step measured, the service answered.

The real script as `make bench-scale` runs it (prepare, `visearch pipeline run`, `visearch serve`),
only smaller: 300 images, one epoch of two steps, 10 requests per client count.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from visearch.data.adapters.fashion_mnist import DEBIAN_SOURCE

ROOT = Path(__file__).resolve().parents[2]
STEP_ROWS = ("prepare", "preprocess", "train", "evaluate", "shards", "embed", "upsert", "pipeline run")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEBIAN_SOURCE / "t10k-images-idx3-ubyte.gz").exists(), reason="needs apt package dataset-fashion-mnist"
    ),
]


def test_scale_benchmark_measures_every_step_and_the_service(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "scale.py"),
        *("--images", "300", "--epochs", "1", "--max-steps", "2", "--train-images-per-class", "10"),
        *("--eval-images-per-class", "20"),
        *("--requests", "10", "--quality-images", "0"),
        *("--home", str(tmp_path / "home"), "--results-dir", str(tmp_path), "--result", "scale-smoke"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (tmp_path / "scale-smoke.md").read_text(encoding="utf-8")
    assert "Parameters: 300 images (30 per class)" in text and "training budget 10 images per class" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for step in STEP_ROWS:
        row = next((line for name, line in rows.items() if name.startswith(step)), None)
        assert row is not None, f"no {step} row in\n{text}"
        cells = [cell.strip() for cell in row.split("|")[2:-1]]
        if step != "shards":  # shards lists the embed parts: it may end between two samples
            assert float(cells[0]) > 0 and float(cells[2]) > 0, row  # wall seconds and peak memory measured
    # Both client counts answered every request (a failed /search aborts the script).
    latency = [line for line in text.splitlines() if re.match(r"\| (1|8) \| 10 \|", line)]
    assert len(latency) == 2, text
    assert all(float(line.split("|")[3]) > 0 for line in latency)
    assert "300 images prepared, evaluated, embedded and indexed" in text
    # The gate scored both models on the evaluation budget's sample (20 of each class's 30) and says so.
    assert "200 of 300 images scored per model" in text and "evaluation budget 20 per class" in text
    gate = [
        line for line in text.splitlines() if re.match(r"\| (baseline|tuned) \| (in_domain|class_disjoint) \|", line)
    ]
    assert len(gate) == 4 and all(0 < float(line.split("|")[4]) <= 1 for line in gate), text
