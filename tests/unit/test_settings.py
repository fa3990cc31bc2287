"""Settings: the embedded defaults, the seed's env names, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from visearch.settings import Settings


def test_settings_defaults_and_seed_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("QDRANT_URL", "QDRANT_HOST", "MLFLOW_TRACKING_URI", "MINIO_HOST", "VISEARCH_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert settings.qdrant_location is None  # the embedded engine
    assert settings.tracking_uri == f"sqlite:///{tmp_path / '.visearch' / 'mlflow.db'}"
    assert not (tmp_path / ".visearch").exists()  # nothing happens at construction
    monkeypatch.setenv("QDRANT_HOST", "qdrant")
    monkeypatch.setenv("QDRANT_PORT", "7000")
    monkeypatch.setenv("MINIO_SECRET_KEY", "s3cr3t")
    settings = Settings(_env_file=None)
    assert settings.qdrant_location == "http://qdrant:7000"
    assert "s3cr3t" not in repr(settings)  # secrets never show in logs or reprs
    monkeypatch.setenv("QDRANT_URL", "https://q.example:6333")
    assert Settings(_env_file=None).qdrant_location == "https://q.example:6333"


def test_a_batch_holds_at_most_as_many_images_as_a_form_holds_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BATCH_IMAGES", "128")
    assert Settings(_env_file=None).max_batch_images == 128
    monkeypatch.setenv("MAX_BATCH_IMAGES", "129")  # the service parses no form with more files
    with pytest.raises(ValueError, match="max_batch_images"):
        Settings(_env_file=None)
