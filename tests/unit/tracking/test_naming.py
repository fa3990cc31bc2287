"""The names visearch gives things in MLflow, and the commit a run records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visearch.tracking import experiment_name, git_commit, model_name


def test_each_category_has_its_experiment_and_registered_model() -> None:
    assert experiment_name("shoes") == "visearch-shoes" and model_name("shoes") == "visearch-shoes"
    assert model_name("shoes") != model_name("bags")


def fake_git(directory: Path, script: str) -> None:
    """A ``git`` on PATH that runs ``script`` (and nothing else is on PATH)."""
    directory.mkdir()
    git = directory / "git"
    git.write_text(f"#!/bin/sh\n{script}\n")
    git.chmod(0o755)


def test_git_commit_prefers_the_baked_in_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    head = "0123456789abcdef0123456789abcdef01234567"
    fake_git(tmp_path / "answers", f"echo {head}")
    monkeypatch.setenv("PATH", str(tmp_path / "answers"))
    monkeypatch.setenv("VISEARCH_GIT_COMMIT", "abc123")
    assert git_commit() == "abc123"  # baked into the image: wins over the checkout's HEAD
    monkeypatch.setenv("VISEARCH_GIT_COMMIT", "")
    assert git_commit() == head  # an empty value is no value
    monkeypatch.delenv("VISEARCH_GIT_COMMIT")
    assert git_commit() == head

    fake_git(tmp_path / "fails", "echo HEAD; echo 'fatal: not a git repository' >&2; exit 128")
    monkeypatch.setenv("PATH", str(tmp_path / "fails"))
    assert git_commit() is None
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git at all
    assert git_commit() is None
    assert os.environ.get("VISEARCH_GIT_COMMIT") is None
