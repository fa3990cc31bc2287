"""`visearch pipeline run`'s terminal: one status line per step and category, kfp's whole log in a file.

The input is kfp.local's own output format (2.17: colour codes, the executor input as JSON, each
step's lines indented, tqdm's carriage-return updates inside one line), written the way kfp writes it.
"""

from __future__ import annotations

import io
from pathlib import Path

from pipelines.status import StatusLines

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def task(step: str, category: str, lines: list[str], status: str = "SUCCESS") -> list[str]:
    """What kfp.local prints for one task: header, executor input, the step's indented output, status."""
    colour = GREEN if status == "SUCCESS" else RED
    return [
        f"06:20:42.384 - INFO - Executing task {CYAN}'{step}'{RESET}\n",
        "06:20:42.384 - INFO - Streamed logs:\n\n",
        "    [KFP Executor 2026-12-07 06:20:42,437 INFO]: Got executor_input:\n",
        '    {\n        "inputs": {\n            "parameterValues": {\n',
        f'                "category": "{category}",\n                "run_id": "1adda5"\n',
        "            }\n        }\n    }\n",
        *(f"    {line}\n" for line in lines),
        f"06:20:47.477 - INFO - Task {CYAN}'{step}'{RESET} finished with status {colour}{status}{RESET}\n",
        "-" * 80 + "\n",
    ]


def epochs(total: int) -> str:
    """One line as kfp relays tqdm: every update of the bar, separated by carriage returns."""
    updates = [
        f"epoch 1/1:  {100 * n // total:>3}%|{'#' * n}{' ' * (total - n)}| {n}/{total} [00:0{n}<00:01]"
        for n in range(total + 1)
    ]
    return "\r".join(updates)


RUN = [
    "06:20:42.380 - INFO - Running pipeline: \x1b[95m'visearch'\x1b[0m\n",
    *task(
        "preprocess", "tiny", ["checking tiny images: 100%|##########| 41/41", "tiny: 40 of 41 rows kept, 1 dropped"]
    ),
    *task("train", "tiny", ["Loaded pretrained weights for efficientnet-lite0", epochs(5)]),
    *task("evaluate", "tiny", ["gate for tiny: promoted: tuned beats the champion (MAP@R 0.61 > none)"]),
    *task("embed", "tiny", ["embedding tiny:  50%|#####     | 20/40", "embedding tiny: 100%|##########| 40/40"]),
    *task("upsert", "tiny", ["index tiny: alias -> tiny__2026-m1-d1-s1 (40 points, reused=False)"]),
    *task("preprocess", "logos-icons", ["logos-icons: 30 of 30 rows kept, 0 dropped"]),
    *task(
        "train",
        "logos-icons",
        ["Traceback (most recent call last):", "visearch.errors.DataError: too few images"],
        "FAILURE",
    ),
]


def replay(tmp_path: Path, *, live: bool) -> tuple[str, Path]:
    screen, log = io.StringIO(), tmp_path / "kfp" / "run.log"
    with StatusLines(log, screen, width=11, live=live):
        for chunk in RUN:  # kfp prints a step's indentation and its line as two writes
            for part in (chunk[:4], chunk[4:]):
                print(part, end="")
    return screen.getvalue(), log


def test_one_line_per_step_and_category_with_the_decisions(tmp_path: Path) -> None:
    screen, log = replay(tmp_path, live=False)
    assert log.read_bytes().decode() == "".join(RUN)  # the whole log, byte for byte
    lines = screen.splitlines()
    steps = [line.split()[:2] for line in lines if not line.startswith("    ")]
    assert steps == [
        ["tiny", "preprocess"],
        ["tiny", "train"],
        ["tiny", "evaluate"],
        ["tiny", "embed"],
        ["tiny", "upsert"],
        ["logos-icons", "preprocess"],
        ["logos-icons", "train"],
    ]
    assert lines[0].endswith("s  40 of 41 rows kept, 1 dropped")
    assert lines[2].endswith("s  gate: promoted: tuned beats the champion (MAP@R 0.61 > none)")
    assert lines[4].endswith("s  index: alias -> tiny__2026-m1-d1-s1 (40 points, reused=False)")
    assert (
        "    visearch.errors.DataError: too few images" in lines and "    Traceback (most recent call last):" in lines
    )
    assert lines[-1].startswith("  logos-icons  train") and f"FAILURE after 0 s (full log: {log})" in lines[-1]
    assert "\r" not in screen and "executor_input" not in screen and "\x1b[" not in screen
    assert len(lines) == 9  # 7 steps + 2 error lines: nothing else of the 60-line log


def test_a_terminal_sees_the_progress_bar_redrawn_in_place(tmp_path: Path) -> None:
    screen, _ = replay(tmp_path, live=True)
    drawn = [part for part in screen.split("\r") if "[" in part and "/5" in part]
    assert any("[####################] epoch 1/1 5/5" in part for part in drawn)
    assert any("[########............] epoch 1/1 2/5" in part for part in drawn)
    final = [line.rsplit("\r", 1)[-1] for line in screen.split("\n")]
    assert [line.split()[:2] for line in final if line.startswith("  tiny")][1] == ["tiny", "train"]
