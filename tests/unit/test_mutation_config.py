"""The mutation check's configuration stays true to the code: every decision module is covered, by files
and fast tests that exist, and ``--changed`` picks a module when its code or its tests change.

scripts/mutation.sh reads pyproject's [tool.mutmut.modules]; a renamed module or test file would
otherwise make the standing check silently test nothing.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The decision code issue 29 names: the gate, search options and request building, the meta CSV rules,
# calibration, filters, admin/rollback, the living catalogue's change-log replay.
DECISIONS = {
    "src/visearch/gate.py",
    "src/visearch/stages/evaluate.py",
    "src/visearch/search_options.py",
    "src/visearch/data/meta.py",
    "src/visearch/neighbours.py",
    "src/visearch/index/filters.py",
    "src/visearch/admin.py",
    "src/visearch/catalogue/replay.py",
    "src/visearch/catalogue/view.py",
    "src/visearch/catalogue/apply.py",
}


@pytest.fixture(scope="module")
def conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_conf", ROOT / "scripts" / "mutation_conf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_conf"] = module
    spec.loader.exec_module(module)
    return module


def test_every_decision_module_is_configured_with_files_and_tests_that_exist(conf: ModuleType) -> None:
    modules = conf.modules()
    assert {file for spec in modules.values() for file in spec["files"]} == DECISIONS
    for name, spec in modules.items():
        assert all((ROOT / file).is_file() for file in spec["files"]), name
        tests = [t.split("::")[0] for t in spec["tests"] if t.startswith("tests/")]
        assert tests and all((ROOT / t).is_file() for t in tests), name
        prefixes = {file.removeprefix("src/").removesuffix(".py").replace("/", ".") for file in spec["files"]}
        assert all(any(glob.startswith(p + ".") for p in prefixes) for glob in spec["mutants"]), name
        # An equivalent mutant is one of the module's scored mutants.
        for mutant in spec.get("equivalent", []):
            assert any(fnmatch.fnmatch(mutant, glob) for glob in spec["mutants"]), mutant
    assert 0 < conf.table()["modules"]["min_score"] <= 100


def test_changed_picks_the_modules_whose_code_or_tests_changed(conf: ModuleType) -> None:
    assert conf.changed("src/visearch/gate.py\nREADME.md") == ["gate"]
    assert conf.changed("tests/unit/test_admin_rollback.py") == ["admin"]
    assert set(conf.changed("src/visearch/catalogue/view.py src/visearch/index/filters.py")) == {"replay", "filters"}
    assert conf.changed("src/visearch/search.py\nui/app.py") == []
    assert conf.changed("*") == list(conf.modules())


def test_each_module_runs_with_its_own_files_and_tests(conf: ModuleType) -> None:
    import tomllib

    text = conf.pyproject("admin")
    mutmut = tomllib.loads(text)["tool"]["mutmut"]
    assert mutmut["only_mutate"] == ["src/visearch/admin.py"]
    assert mutmut["pytest_add_cli_args_test_selection"] == conf.modules()["admin"]["tests"]
    assert "modules" not in mutmut and mutmut["source_paths"] == ["src/"]
    # The rest of pyproject (pytest's markers and options) is kept for the tests mutmut runs.
    assert (
        tomllib.loads(text)["tool"]["pytest"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    )


def test_the_score_leaves_out_listed_equivalents_and_fails_under_the_minimum(
    conf: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    equivalent = conf.modules()["meta"]["equivalent"][0]
    results = tmp_path / "results.txt"
    lines = [f"visearch.data.meta.x_f__mutmut_{i}: killed" for i in range(1, 10)]
    results.write_text("\n".join([*lines, f"    {equivalent}: survived", "visearch.other.x_g__mutmut_1: survived"]))
    monkeypatch.setenv("MUTATION_MIN", "90")
    assert conf.score("meta", results, ["visearch.data.meta.*"]) == 0
    assert "score meta: 9 of 9 mutants killed (100.0%), 1 equivalent left out (10 mutants)" in capsys.readouterr().out
    results.write_text("\n".join([*lines, "visearch.data.meta.x_f__mutmut_10: no tests"]))
    assert conf.score("meta", results, ["visearch.data.meta.*"]) == 0  # 90 % is the minimum itself
    monkeypatch.setenv("MUTATION_MIN", "95")
    assert conf.score("meta", results, ["visearch.data.meta.*"]) == 1
    out = capsys.readouterr().out
    assert "visearch.data.meta.x_f__mutmut_10: no tests" in out and "9 of 10 mutants killed (90.0%)" in out
