#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the decision modules that pyproject's [tool.mutmut.modules] names,
# each module against its own fast tests, with a score per module.
#
#   scripts/mutation.sh                       every module (refresh benchmarks/results/mutation.md after)
#   scripts/mutation.sh gate admin            the named modules
#   scripts/mutation.sh --changed [REF]       the modules whose files differ from REF (default: main);
#                                             none changed = nothing to run (what CI runs, see .ci/run)
#   scripts/mutation.sh --sample gate         every fifth mutant of each function (numbers ending 0 or 5)
#   scripts/mutation.sh gate -- "visearch.gate.x_decide__mutmut_1*"   only the mutants matching a glob
#
# A module's score = killed / (its mutants - its listed equivalents that survived); "no tests" and
# timeouts count as survived. Exit status 1 when a module scores under [tool.mutmut.modules] min_score
# (MUTATION_MIN overrides). Each module runs in its own folder .mutation/run/<module> (ignored) with a
# [tool.mutmut] written for it, so mutmut's one-configuration-per-project holds one module at a time and
# collects coverage only from that module's tests. mutmut is not in the project's extras: when .venv
# lacks it, it is installed with its pinned dependencies into .mutation/lib, never into .venv.
# CPU-heavy: MUTATION_JOBS workers (default 2; use 1 when the machine is shared) and nice.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PY=${PYTHON:-.venv/bin/python}
LIB=.mutation/lib
PINS=(mutmut==3.8.1 libcst==1.9.0 coverage==7.18.0 setproctitle==1.3.8 textual==8.2.8 linkify-it-py==2.2.0
    mdit-py-plugins==0.7.0)

changed="" sample="" modules=() globs=()
while [ $# -gt 0 ]; do
    case "$1" in
    --changed)
        changed=main
        if [ $# -gt 1 ] && [[ $2 != -* ]] && ! grep -q "^\[tool.mutmut.modules.$2\]" pyproject.toml; then
            changed=$2
            shift
        fi
        ;;
    --sample) sample="[05]" ;;
    --) shift; globs=("$@"); break ;;
    *) modules+=("$1") ;;
    esac
    shift
done

# conf.py: the module table, each module's [tool.mutmut], the changed modules, the scores.
conf() { "$PY" "$ROOT/scripts/mutation_conf.py" "$@"; }

if [ -n "$changed" ]; then
    # The branch point with REF (or origin/REF in a CI checkout), and what changed since, committed or not.
    base=$(git merge-base HEAD "$changed" 2>/dev/null || git merge-base HEAD "origin/$changed" 2>/dev/null) &&
        files=$( (git diff --name-only "$base" -- src/ tests/ && git ls-files --others --exclude-standard src/ tests/) 2>/dev/null) || {
        echo "mutation: cannot compare with $changed (no git history here?): checking every module" >&2
        files="*"
    }
    mapfile -t modules < <(conf changed "$files" | grep .)
    if [ ${#modules[@]} -eq 0 ]; then
        echo "mutation: no decision module or its tests changed since $changed: nothing to run"
        exit 0
    fi
fi
[ ${#modules[@]} -gt 0 ] || mapfile -t modules < <(conf names)

if ! "$PY" -c "import mutmut" 2>/dev/null && ! PYTHONPATH=$LIB "$PY" -c "import mutmut" 2>/dev/null; then
    # --no-deps: everything else mutmut needs (pytest, click, rich...) is in .venv already, at its pinned version.
    "$PY" -m pip install -q --no-deps --target "$LIB" "${PINS[@]}"
fi
# src first (the src layout without relying on the editable install); mutmut then puts its mutated
# copy (mutants/src) in front and drops the original src from sys.path.
export PYTHONPATH="$ROOT/$LIB:$ROOT/src:$ROOT"
case "$PY" in /*) ;; *) PY=$ROOT/$PY ;; esac

mutmut() { nice "$PY" -c 'import sys; sys.argv[0] = "mutmut"; from mutmut.__main__ import cli; cli()' "$@"; }

known=$(conf names)
status=0
for module in "${modules[@]}"; do
    # Never an empty or unknown name: the folder below is deleted first.
    grep -qx -- "$module" <<<"$known" || { echo "mutation: no module '$module' (modules: $(echo $known))" >&2; exit 2; }
    work=$ROOT/.mutation/run/$module
    rm -rf "$work" # a fresh run: results of earlier code or tests are never reused
    mkdir -p "$work"
    ln -s "$ROOT/src" "$work/src"
    ln -s "$ROOT/tests" "$work/tests"
    conf pyproject "$module" >"$work/pyproject.toml"
    mapfile -t run_globs < <(if [ ${#globs[@]} -gt 0 ]; then printf '%s\n' "${globs[@]}"; else conf globs "$module"; fi)
    if [ -n "$sample" ]; then run_globs=("${run_globs[@]/%/$sample}"); fi
    echo "== $module: $(conf files "$module")"
    (cd "$work" && mutmut run --max-children "${MUTATION_JOBS:-2}" "${run_globs[@]}" | tr '\r' '\n' | tail -n 2)
    (cd "$work" && mutmut results --all true >mutants/results.txt)
    conf score "$module" "$work/mutants/results.txt" "${run_globs[@]}" || status=1
done
exit "$status"
