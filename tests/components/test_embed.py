"""The embed component: one vector per manifest row, made with the model it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import TINY, FakeArtifact
from visearch.data.manifest import load_manifest
from visearch.embed import read_shards
from visearch.model import read_spec
from visearch.settings import Settings


def test_embed_writes_one_vector_per_image_with_the_given_model(
    steps: Any, step_home: Settings, indexed_home: Settings, tmp_path: Path
) -> None:
    work = indexed_home.work_dir / TINY  # read only: its manifest and champion; the step writes to step_home
    embeddings = FakeArtifact(tmp_path / "embeddings")

    steps.embed.python_func(
        category=TINY,
        manifest=FakeArtifact(work / "manifest"),
        model=FakeArtifact(work / "champion"),
        embeddings=embeddings,
    )

    keys, vectors, version = read_shards(Path(embeddings.path))
    spec = read_spec(work / "champion")
    assert keys == load_manifest(work / "manifest")["key"].tolist()
    assert version == spec.version and vectors.shape == (len(keys), spec.embedding_dim)
    scratch = step_home.work_dir / TINY / "embed-scratch"
    assert not scratch.exists() or not any(scratch.iterdir())  # the finished shards moved into the output
