"""The training parameters are declared once (TrainParams): every field is a CLI option, a pipeline run
parameter and an input of the preprocess component, and a new field becomes the first two by itself."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
from pydantic import Field, create_model
from typer.main import get_command

from visearch.errors import ConfigError
from visearch.train_params import TrainParams, parse_accelerator, parse_layers, run_parameters


def _options(command: Any) -> dict[str, Any]:
    """The click options of a typer command function, by parameter name."""
    app = typer.Typer()
    app.command()(command)
    return {param.name: param for param in get_command(app).params}


def _visearch_command(path: list[str]) -> Any:
    import visearch.cli.main  # noqa: F401 - registers every command on the app
    from visearch.cli.app import app

    group = get_command(app)
    for name in path:
        group = group.commands[name]  # type: ignore[attr-defined]
    return group


@pytest.mark.parametrize("path", [["train"], ["preprocess"], ["pipeline", "run"]])
def test_every_field_is_an_option_of_the_commands_that_train(path: list[str]) -> None:
    options = {param.name: param for param in _visearch_command(path).params}
    for field, info in TrainParams.model_fields.items():
        assert field in options, f"visearch {' '.join(path)} lacks --{field.replace('_', '-')}"
        assert options[field].default is None  # not given = the category's registry value
        assert info.description and info.description in (options[field].help or "")


def test_every_field_is_a_run_parameter_with_its_description() -> None:
    from pipelines.visearch_pipeline import build_pipeline

    inputs = build_pipeline("registry.example.com/train:test").pipeline_spec.root.input_definitions.parameters
    for parameter in run_parameters():
        assert parameter.name in inputs, f"the pipeline has no run parameter {parameter.name}"
        assert TrainParams.model_fields[parameter.name].description in inputs[parameter.name].description
        assert inputs[parameter.name].is_optional


def test_the_preprocess_component_takes_every_field_with_its_unset_default() -> None:
    """kfp embeds a component's source, so its signature is written out: this test holds it to TrainParams."""
    from components.preprocess import preprocess

    signature = inspect.signature(preprocess).parameters
    for parameter in run_parameters():
        assert parameter.name in signature, f"components/preprocess.py lacks the input {parameter.name}"
        assert signature[parameter.name].annotation is parameter.kind
        assert signature[parameter.name].default == parameter.unset


def test_a_new_field_becomes_an_option_and_a_run_parameter_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import visearch.train_params as train_params
    from pipelines.visearch_pipeline import build_pipeline
    from visearch.cli.options import train_options

    wider = create_model(
        "WiderParams", __base__=TrainParams, margin=(float | None, Field(default=None, description="A new margin"))
    )
    monkeypatch.setattr(train_params, "TrainParams", wider)
    got: dict[str, Any] = {}

    @train_options()
    def command(category: str = "x", *, overrides: dict[str, Any]) -> None:
        got.update(overrides)

    option = _options(command)["margin"]
    assert "A new margin" in (option.help or "")
    app = typer.Typer()
    app.command()(command)
    get_command(app).main(["--margin", "0.25", "--epochs", "2"], standalone_mode=False)
    assert got == {"margin": 0.25, "epochs": 2}  # only what was given
    import pipelines.visearch_pipeline as pipeline

    training = {p.name: (p.kind, p.unset, p.help) for p in run_parameters()}
    others = {name: spec for name, spec in pipeline.RUN_PARAMETERS.items() if name not in pipeline.TRAINING}
    monkeypatch.setattr(pipeline, "TRAINING", training)
    monkeypatch.setattr(pipeline, "RUN_PARAMETERS", {**others, **training})
    # The preprocess component has no input `margin` yet: building fails, as its test above says it must.
    with pytest.raises(TypeError, match="margin"):
        build_pipeline("registry.example.com/train:test")


def test_text_forms_of_the_fields_that_are_no_text() -> None:
    assert parse_layers("512, 128") == [512, 128] and parse_layers("none") == [] and parse_layers("") == []
    assert parse_accelerator("nvidia.com/gpu=2") == {"nvidia.com/gpu": 2} and parse_accelerator("none") is None
    params = TrainParams().with_overrides({"embedder_layers": "64,16", "accelerator": "nvidia.com/gpu=1", "seed": 3})
    assert (params.embedder_layers, params.accelerator, params.seed) == ([64, 16], {"nvidia.com/gpu": 1}, 3)
    with pytest.raises(ConfigError, match="accelerator"):
        TrainParams().with_overrides({"accelerator": "gpu=many"})
    with pytest.raises(ConfigError, match="seed"):
        TrainParams().with_overrides({"seed": -3})
