"""The embed component: one vector per manifest row, made with the model it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.components.fakes import FakeArtifact
from tests.helpers import TINY
from visearch.data.manifest import load_manifest
from visearch.embed import read_embeddings, read_shards
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


def test_shards_lists_the_embed_fan_out_from_the_registry_or_the_pipeline(
    steps: Any, step_home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert steps.shards.python_func(category=TINY) == [{"category": TINY, "shard": "0/1"}]  # registry default: 1
    assert steps.shards.python_func(category=TINY, embed_shards=2) == [
        {"category": TINY, "shard": "0/2"},
        {"category": TINY, "shard": "1/2"},
    ]
    path = step_home.visearch_categories
    assert path is not None
    raw = yaml.safe_load(path.read_text())
    next(entry for entry in raw["categories"] if entry["name"] == TINY)["embed_shards"] = 3
    path.write_text(yaml.safe_dump(raw))
    assert [item["shard"] for item in steps.shards.python_func(category=TINY)] == ["0/3", "1/3", "2/3"]
    with pytest.raises(SystemExit, match="^error: embed_shards must be 1 or more"):
        steps.shards.python_func(category=TINY, embed_shards=0)


def test_embed_of_one_shard_writes_its_range_of_the_manifest(
    steps: Any, step_home: Settings, indexed_home: Settings, tmp_path: Path
) -> None:
    work = indexed_home.work_dir / TINY
    keys = load_manifest(work / "manifest")["key"].tolist()
    outputs = []
    for shard in ("1/2", "0/2"):
        outputs.append(FakeArtifact(tmp_path / f"embeddings-{shard.replace('/', 'of')}"))
        steps.embed.python_func(
            category=TINY,
            manifest=FakeArtifact(work / "manifest"),
            model=FakeArtifact(work / "champion"),
            embeddings=outputs[-1],
            shard=shard,
        )
    second, first = (read_shards(Path(output.path))[0] for output in outputs)
    assert first + second == keys and len(first) == len(keys) // 2
    joined, _, _ = read_embeddings([Path(output.path) for output in outputs])
    assert joined == keys
    with pytest.raises(SystemExit, match="^error: shard 2/2"):
        steps.embed.python_func(
            category=TINY,
            manifest=FakeArtifact(work / "manifest"),
            model=FakeArtifact(work / "champion"),
            embeddings=FakeArtifact(tmp_path / "bad"),
            shard="2/2",
        )
