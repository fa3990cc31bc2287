"""Query-time inference: the ONNX export and the torch model give the same vectors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.helpers import TINY
from tests.unit.homes import search_engine
from visearch.inference import OnnxEmbedder, TorchEmbedder, load_embedder, preprocess
from visearch.search import SearchEngine
from visearch.settings import Settings


@pytest.fixture(scope="module")
def engine(indexed_home: Settings) -> Iterator[SearchEngine]:
    """The indexed home's engine: where the live model's files and the example images come from."""
    engine = search_engine(indexed_home)
    yield engine
    engine.close()  # embedded Qdrant: free the folder for the next module (the service tests)


def test_onnx_and_torch_give_the_same_vectors(engine: SearchEngine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    live = engine.index.require_live(TINY)
    directory = engine._fetch_model(TINY, live.model_version)
    torch_model = load_embedder(directory, backend="torch")
    onnx_model = load_embedder(directory, backend="onnx", onnx_cache=tmp_path)
    assert isinstance(torch_model, TorchEmbedder) and isinstance(onnx_model, OnnxEmbedder)
    images = [engine.decode(engine.store.get_bytes(r.image_key)) for r in engine.examples(TINY, limit=16)]
    batch = preprocess(images, torch_model.spec)
    expected, got = torch_model.embed(batch), onnx_model.embed(batch)
    assert got.shape == expected.shape == (16, torch_model.spec.embedding_dim)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # Batch size does not change a vector (the dynamic batch axis of the export).
    np.testing.assert_allclose(onnx_model.embed(batch[:1])[0], got[0], atol=1e-5)
