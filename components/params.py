"""kfp's "unset": a pipeline parameter cannot be None, so -1 and "" stand for "keep the registry value".

The one place that translates them; the library takes ``None`` for "unset" (``TrainParams.with_overrides``).
"""

from __future__ import annotations

from typing import Any

UNSET_NUMBER = -1
UNSET_TEXT = ""


def overrides(**values: Any) -> dict[str, Any]:
    """The pipeline's parameters with kfp's unset values (negative numbers, empty text) as ``None``."""
    return {name: None if is_unset(value) else value for name, value in values.items()}


def training_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """The training parameters among a component's inputs (``TrainParams``' fields), unset ones as ``None``."""
    from visearch.train_params import TrainParams

    return overrides(**{name: value for name, value in values.items() if name in TrainParams.model_fields})


def is_unset(value: Any) -> bool:
    """True for kfp's stand-ins for "not given"."""
    if value is None or value == UNSET_TEXT:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0
