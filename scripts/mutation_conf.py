"""scripts/mutation.sh's helper: pyproject's [tool.mutmut.modules] table, each module's mutmut config, its score.

Commands (``mutation_conf.py COMMAND ARGS``):

* ``names``: the module names;
* ``files MODULE`` / ``globs MODULE``: a module's source files / mutant-name globs;
* ``pyproject MODULE``: pyproject.toml with a [tool.mutmut] for that module alone;
* ``changed PATHS``: the modules whose files or tests are among PATHS (``*``: all);
* ``score MODULE RESULTS GLOB...``: survivors and score; exit status 1 under the minimum.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
KEYS = ("files", "mutants", "tests", "equivalent")


def table() -> dict:
    """The [tool.mutmut] table of pyproject.toml."""
    return tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["mutmut"]


def modules() -> dict[str, dict]:
    """Module name -> its [tool.mutmut.modules.<name>] table."""
    return {name: spec for name, spec in table()["modules"].items() if isinstance(spec, dict)}


def toml_list(values: list[str]) -> str:
    """A TOML array of strings (JSON's string escapes are TOML's basic-string escapes)."""
    return json.dumps(values, ensure_ascii=True)


def pyproject(name: str) -> str:
    """pyproject.toml with [tool.mutmut*] replaced by the shared keys plus this module's files and tests."""
    kept, skipping = [], False
    for line in PYPROJECT.read_text("utf-8").splitlines():
        if line.startswith("["):
            skipping = line.lstrip("[").startswith("tool.mutmut")
        if not skipping:
            kept.append(line)
    shared = {key: value for key, value in table().items() if key != "modules"}
    spec = modules()[name]
    lines = ["[tool.mutmut]"]
    for key, value in shared.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for key, value in spec.items():  # any other key is mutmut's own, for this module only
        if key not in KEYS:
            lines.append(f"{key} = {json.dumps(value)}")
    lines.append(f"only_mutate = {toml_list(spec['files'])}")
    lines.append(f"pytest_add_cli_args_test_selection = {toml_list(spec['tests'])}")
    lines.append("use_git_change_detection = false")  # each run starts from an empty folder anyway
    return "\n".join([*kept, "", *lines, ""])


def changed(paths: str) -> list[str]:
    """Modules whose source files or test files are among ``paths`` (one a line)."""
    every = paths.strip() == "*"
    touched = set(paths.split())
    found = []
    for name, spec in modules().items():
        own = spec["files"] + [t.split("::")[0] for t in spec["tests"] if t.startswith("tests/")]
        if every or touched & set(own):
            found.append(name)
    return found


def score(name: str, results: Path, globs: list[str]) -> int:
    """Print the module's survivors (listed equivalents apart) and score; 1 when under the minimum."""
    spec = modules()[name]
    equivalent = set(spec.get("equivalent", []))
    rows = [line.rsplit(": ", 1) for line in results.read_text("utf-8").splitlines() if ": " in line]
    rows = [
        (mutant.strip(), status) for mutant, status in rows if any(fnmatch.fnmatch(mutant.strip(), g) for g in globs)
    ]
    killed = sum(status == "killed" for _, status in rows)
    kept = [(m, s) for m, s in rows if s != "killed" and m in equivalent]
    survivors = [(m, s) for m, s in rows if s != "killed" and m not in equivalent]
    for mutant, status in survivors:
        print(f"  {mutant}: {status}")
    counted = len(rows) - len(kept)
    percent = 100.0 * killed / counted if counted else 100.0
    minimum = float(os.environ.get("MUTATION_MIN", table()["modules"].get("min_score", 90)))
    print(
        f"score {name}: {killed} of {counted} mutants killed ({percent:.1f}%), {len(kept)} equivalent left out"
        f" ({len(rows)} mutants); minimum {minimum:g}%"
    )
    if not rows:
        print(f"mutation: no mutant of {name} matched {globs}", file=sys.stderr)
        return 1
    return 0 if percent >= minimum else 1


def main(argv: list[str]) -> int:
    """Run one command; the exit status."""
    command, *args = argv
    if command == "names":
        print("\n".join(modules()))
    elif command == "files":
        print(" ".join(modules()[args[0]]["files"]))
    elif command == "globs":
        print("\n".join(modules()[args[0]]["mutants"]))
    elif command == "pyproject":
        print(pyproject(args[0]), end="")
    elif command == "changed":
        print("\n".join(changed(args[0] if args else "")))
    elif command == "score":
        return score(args[0], Path(args[1]), args[2:])
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
