#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules that pyproject's [tool.mutmut] names, against its fast tests.
#
#   scripts/mutation.sh                        every configured module
#   scripts/mutation.sh "visearch.data.meta*"  only the mutants whose names match
#
# mutmut is not in the project's extras yet: when .venv lacks it, it is installed with its pinned
# dependencies into .mutation/lib (ignored), never into .venv. CPU-heavy: MUTATION_JOBS (default 2)
# workers. Prints the survivors and the score (killed / all mutants; "no tests" counts as survived).
# The report to keep up to date is benchmarks/results/mutation.md.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
LIB=.mutation/lib
PINS=(mutmut==3.8.1 libcst==1.9.0 coverage==7.18.0 setproctitle==1.3.8 textual==8.2.8 linkify-it-py==2.2.0
    mdit-py-plugins==0.7.0)

if ! "$PY" -c "import mutmut" 2>/dev/null && ! PYTHONPATH=$LIB "$PY" -c "import mutmut" 2>/dev/null; then
    # --no-deps: everything else mutmut needs (pytest, click, rich...) is in .venv already, at its pinned version.
    "$PY" -m pip install -q --no-deps --target "$LIB" "${PINS[@]}"
fi
# src first (the src layout without relying on the editable install); mutmut then puts its mutated
# copy (mutants/src) in front and drops the original src from sys.path.
export PYTHONPATH="$PWD/$LIB:$PWD/src:$PWD"

mutmut() { nice "$PY" -c 'import sys; sys.argv[0] = "mutmut"; from mutmut.__main__ import cli; cli()' "$@"; }

rm -rf mutants # a fresh run: results of earlier code or tests are never reused
mutmut run --max-children "${MUTATION_JOBS:-2}" "$@" | tr '\r' '\n' | tail -n 3
mutmut results --all true >mutants/results.txt
grep -v ': killed$' mutants/results.txt || true
awk -F': ' '{n++; s[$2]++} END {printf "score: %d of %d mutants killed (%.1f%%)", s["killed"], n, 100 * s["killed"] / n;
    for (k in s) if (k != "killed") printf "; %s %d", k, s[k]; print ""}' mutants/results.txt
