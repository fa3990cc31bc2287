"""components.params: kfp's stand-ins for "not given" (-1, "") become None, which keeps the registry value."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from components.params import is_unset, overrides
from tests.helpers import TINY


def test_overrides_turn_minus_one_and_empty_into_none_and_keep_real_values() -> None:
    unset = overrides(epochs=-1, lr=-1.0, trunk_model="", embedder_layers="", split=-0.5, nothing=None)
    assert unset == dict.fromkeys(["epochs", "lr", "trunk_model", "embedder_layers", "split", "nothing"])
    given = overrides(epochs=0, lr=0.0, trunk_model="resnet18", embedder_layers="64,16", split=0.5, flag=False)
    # zero, 0.0 and False are values a user chose, not "unset"
    assert given == {
        "epochs": 0,
        "lr": 0.0,
        "trunk_model": "resnet18",
        "embedder_layers": "64,16",
        "split": 0.5,
        "flag": False,
    }
    assert overrides() == {}


def test_every_optional_component_parameter_defaults_to_unset(steps: Any) -> None:
    """A pipeline run that leaves a parameter out gets the registry value, never a component's own default."""
    checked = 0
    for name in ("preprocess", "train"):
        for parameter in inspect.signature(getattr(steps, name).python_func).parameters.values():
            if parameter.default is not inspect.Parameter.empty:
                assert is_unset(parameter.default), (name, parameter.name, parameter.default)
                checked += 1
    assert checked >= 12


def test_pipeline_parameters_left_at_minus_one_or_empty_keep_the_registry_value(registry) -> None:  # type: ignore[no-untyped-def]
    from components.params import overrides
    from visearch.errors import ConfigError

    params = registry.get(TINY).train
    unset = overrides(epochs=-1, lr=-1.0, trunk_model="", embedder_layers="", max_steps=-1)
    assert params.with_overrides(unset) == params
    given = params.with_overrides(overrides(epochs=0, weight_decay=0.0, embedder_layers="64,16", split=0.5))
    assert (given.epochs, given.weight_decay, given.embedder_layers, given.split) == (0, 0.0, [64, 16], 0.5)
    with pytest.raises(ConfigError, match="split"):
        params.with_overrides({"split": 2.0})
