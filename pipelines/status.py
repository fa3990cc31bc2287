"""The terminal view of a kfp.local run: one status line per step and category, the whole log in a file.

kfp.local prints each step's whole output: its executor input as JSON, library logs, one line per
progress-bar update (thousands for one category). :class:`StatusLines` stands in for stdout while
the pipeline runs: every byte goes to the log file; the screen gets, per step and category, one
line when it ends (its time and what it decided: rows kept, the gate's decision, the live index), a
progress bar redrawn in place while a long step reports one (on a terminal only), and error lines.
"""

import io
import re
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXECUTING = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
CATEGORY = re.compile(r'^\s*"category": "([^"]+)"')
# tqdm's line: "epoch 1/6:  45%|████▌     | 9/20 [00:19<00:25, ...]"
PROGRESS = re.compile(r"^\s*(?P<desc>[^|]*?):\s+(?P<percent>\d+)%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")
# What a step decided, from the lines the library's step functions print: (pattern, shown as).
DECISIONS = (
    (re.compile(r"^\s*\S+: (\d+ of \d+ rows kept, \d+ dropped)"), r"\1"),
    (re.compile(r"^\s*train \S+: (reusing model .*)"), r"\1"),
    (re.compile(r"^\s*gate for \S+: (.*)"), r"gate: \1"),
    (re.compile(r"^\s*index \S+: (alias -> .*)"), r"index: \1"),
)
ERRORS = ("Traceback", "Error: ", "error: ")
BAR = 20


class StatusLines(io.TextIOBase):
    """A stdout for a kfp.local run: everything to ``path``, status lines to ``screen``.

    Args:
        path: The log file (created; its folder too).
        screen: Where the status lines go (the real stdout).
        width: Column width of the category names (aligns the lines).
        live: Redraw progress bars in place (default: when ``screen`` is a terminal).
    """

    def __init__(self, path: Path, screen: TextIO, *, width: int = 12, live: bool | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("w", encoding="utf-8", newline="")
        self.screen = screen
        self.width = width
        self.live = screen.isatty() if live is None else live
        self.redirect = redirect_stdout(self)
        self.pending = ""
        self.step = ""
        self.category = ""
        self.decision = ""
        self.started = 0.0
        self.drawn = 0  # characters of the progress line on screen (0: none)

    def writable(self) -> bool:
        """Always True: this stream accepts writes."""
        return True

    def write(self, text: str) -> int:
        """Write ``text`` to the log file; each complete line may update the screen."""
        self.file.write(text)
        *lines, self.pending = re.split(r"[\r\n]", self.pending + text)
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        """Flush the log file and the screen."""
        self.file.flush()
        self.screen.flush()

    def _line(self, line: str) -> None:
        if found := EXECUTING.search(line):
            self.step, self.category, self.decision, self.started = found.group(1), "", "", time.monotonic()
        elif found := FINISHED.search(line):
            self._finished(found.group(1), found.group(2))
        elif (found := CATEGORY.match(line)) and self.step and not self.category:
            self.category = found.group(1)  # the first "category" of the step's executor input
        elif (found := PROGRESS.match(line)) and self.step:
            self._progress(found.group("desc").strip(), int(found.group("done")), int(found.group("total")))
        elif any(key in line for key in ERRORS):
            self._show(f"    {line.strip()}")
        else:
            for pattern, shown in DECISIONS:
                if pattern.match(line):
                    self.decision = pattern.sub(shown, line).strip()

    def _head(self, step: str) -> str:
        return f"  {self.category or '?':<{self.width}}  {step:<10}"

    def _finished(self, step: str, status: str) -> None:
        took = f"{time.monotonic() - self.started:.0f} s"
        if status == "SUCCESS":
            self._show(f"{self._head(step)}  {took:>5}" + (f"  {self.decision}" if self.decision else ""))
        else:
            self._show(f"{self._head(step)}  {status} after {took} (full log: {self.path})")
        self.step = ""

    def _progress(self, desc: str, done: int, total: int) -> None:
        if not self.live or not total:
            return
        filled = BAR * min(done, total) // total
        text = f"{self._head(self.step)}  [{'#' * filled}{'.' * (BAR - filled)}] {desc} {done}/{total}"
        self.screen.write("\r" + text.ljust(self.drawn))
        self.screen.flush()
        self.drawn = len(text)

    def _show(self, text: str) -> None:
        """A whole line, over the progress bar if one is drawn."""
        if self.drawn:
            self.screen.write("\r" + " " * self.drawn + "\r")
            self.drawn = 0
        self.screen.write(text + "\n")
        self.screen.flush()

    def __enter__(self) -> "StatusLines":
        self.redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.redirect.__exit__(*exc)  # type: ignore[arg-type]
        if self.pending:
            self._line(ANSI.sub("", self.pending))
        if self.drawn:
            self.screen.write("\n")
        self.file.close()
