"""Model build/save/load, versions, ONNX export and torchvision trunks."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from visearch.errors import ConfigError
from visearch.model import create_model, export_onnx, load_model, save_model


@pytest.fixture(scope="module")
def small_model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return create_model("efficientnet-lite0", [16], 32)


def test_save_load_round_trip_gives_same_embeddings_and_version(small_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small_model.eval()
    directory = save_model(small_model, tmp_path / "m")
    assert {p.name for p in directory.iterdir()} == {"trunk.pth", "embedder.pth", "meta.json"}
    loaded = load_model(directory)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected, got = small_model(images), loaded(images)
    torch.testing.assert_close(got, expected)
    assert torch.allclose(got.norm(dim=1), torch.ones(3))
    assert loaded.spec.version == small_model.spec.version != ""
    assert loaded.spec.embedding_dim == 16


def test_version_changes_with_the_weights(small_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small_model = copy.deepcopy(small_model)  # the module's model stays as built for the other tests
    first = save_model(small_model, tmp_path / "a")
    before = load_model(first).spec.version
    with torch.no_grad():
        small_model.embedder[0].bias.add_(1.0)
    assert save_model(small_model, tmp_path / "b") and small_model.spec.version != before


def test_onnx_export_matches_torch(small_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime

    small_model.eval()
    path = export_onnx(small_model, tmp_path / "model.onnx")
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = small_model(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_torchvision_trunk_by_name_with_local_weights(tmp_path: Path) -> None:
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["bn1.running_mean"] = torch.full_like(state["bn1.running_mean"], 0.25)  # no init gives this
    torch.save(state, weights)
    torch.manual_seed(2)
    model = create_model("resnet18", [8], 32, trunk_weights=str(weights))
    assert model.spec.trunk_dim == 512
    assert model.spec.normalize[0] == pytest.approx((0.485, 0.456, 0.406))
    # The file's tensors are the trunk's, not a fresh initialisation's.
    trunk = model.trunk.state_dict()
    for name in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean"):
        assert torch.equal(trunk[name], state[name]), name
    torch.manual_seed(2)
    fresh = torchvision.models.resnet18(weights=None).state_dict()
    assert not torch.equal(fresh["conv1.weight"], state["conv1.weight"])
    assert not torch.equal(fresh["bn1.running_mean"], state["bn1.running_mean"])
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.spec.trunk_model == "resnet18"
    assert torch.equal(loaded.trunk.state_dict()["conv1.weight"], state["conv1.weight"])


def test_unknown_trunk_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown trunk_model"):
        create_model("no-such-net", [8], 32)


def test_a_lite_model_spec_defaults_to_the_one_lite_normalisation_without_torchvision() -> None:
    """The scaling is stated once (``visearch.normalize``); reading a model's spec imports no torchvision."""
    import subprocess
    import sys

    from visearch.model_files import ModelSpec
    from visearch.normalize import LITE_NORMALIZE

    assert ModelSpec().normalize == LITE_NORMALIZE
    assert create_model("efficientnet-lite0", [8], 32).spec.normalize == LITE_NORMALIZE
    code = "import sys, visearch.model_files; print('torchvision' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
