"""Validation of a row written to a live category: the errors name the field at fault."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from visearch.categories import Category
from visearch.data.meta import REQUIRED_COLUMNS
from visearch.errors import InvalidRowError

# Columns of the catalogue's own bookkeeping, never caption columns a user may write.
INTERNAL_COLUMNS = ("key", "digest", "split")
SMALL = 256  # rows below which plain Python beats pandas' per-call cost


@dataclass(frozen=True)
class CheckedRow:
    """A valid row (class, label, captions; never ``file``) and whether its class is new to the category."""

    values: dict[str, Any]
    new_class: bool


def allowed_columns(current: pd.DataFrame, category: Category) -> list[str]:
    """The columns a row may set: class, label, the category's caption columns and its declared fields."""
    return allowed_in(list(map(str, current.columns)), category)


def allowed_in(columns: Iterable[str], category: Category) -> list[str]:
    """:func:`allowed_columns` of rows with these ``columns``."""
    captions = [c for c in columns if c not in REQUIRED_COLUMNS and c not in INTERNAL_COLUMNS]
    return ["class", "label", *dict.fromkeys([*captions, *category.fields, *category.captions])]


def check_row(row: Mapping[str, Any], current: pd.DataFrame, category: Category) -> CheckedRow:
    """Validate ``row`` against the category's rows now (``current``: file, class, label, captions).

    ``class`` is required; ``label`` must be the label of an existing class, or a label no class
    uses for a new class (default: the next free one); unknown columns are refused; a value of a
    declared integer or float field must be a number. A new class is welcome: ``new_class`` marks
    it as not seen in training.

    Raises:
        InvalidRowError: the row breaks one of these rules (``field`` names the column).
    """
    return check_row_in(row, allowed_columns(current, category), _class_labels(current), category)


def check_row_in(
    row: Mapping[str, Any], allowed: list[str], labels: Mapping[str, int], category: Category
) -> CheckedRow:
    """:func:`check_row` against the ``allowed`` columns (:func:`allowed_in`) and each class's label.

    What a write of a live catalogue calls: it keeps both across writes rather than a frame of every row.
    """
    if not isinstance(row, Mapping):
        raise InvalidRowError("row", "must be a JSON object of column values")
    for column in row:
        if column == "file":
            continue  # the image's name: the caller takes it from the row, it is no column value here
        if column not in allowed:
            raise InvalidRowError(str(column), f"unknown column; this category has {', '.join(allowed)}")
    cls = row.get("class")
    if not isinstance(cls, str) or not cls.strip():
        raise InvalidRowError("class", "required: a non-empty text")
    cls = cls.strip()
    label = _label(row.get("label"), cls, labels)
    values: dict[str, Any] = {"class": cls, "label": label}
    for column in allowed[2:]:
        if column in row:
            values[column] = _caption(column, row[column], category)
    return CheckedRow(values, cls not in labels)


def _class_labels(current: pd.DataFrame) -> dict[str, int]:
    """Each class's label (the first row's: a class has one).

    Plain Python on the few rows a batch passes (one per class): a pandas group-by costs ~3 ms
    whatever the size, per row checked.
    """
    firsts = current.drop_duplicates("class") if len(current) > SMALL else current
    labels: dict[str, int] = {}
    for cls, label in zip(firsts["class"].tolist(), firsts["label"].tolist(), strict=True):
        labels.setdefault(str(cls), int(label))
    return labels


def _label(value: Any, cls: str, labels: Mapping[str, int]) -> int:
    if value is None or value == "":
        if cls in labels:
            return labels[cls]
        return max(labels.values(), default=-1) + 1
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().lstrip("-").isdigit():
        raise InvalidRowError("label", f"must be an integer, got {value!r}")
    label = int(value)
    if cls in labels and labels[cls] != label:
        raise InvalidRowError("label", f"class {cls!r} has label {labels[cls]}, not {label}")
    owner = next((name for name, known in labels.items() if known == label and name != cls), None)
    if owner is not None:
        raise InvalidRowError("label", f"label {label} belongs to class {owner!r}")
    return label


def _caption(column: str, value: Any, category: Category) -> Any:
    kind = category.fields.get(column)
    if value is None:
        return None
    if isinstance(value, Mapping | list):
        raise InvalidRowError(column, "must be a single value, not a list or an object")
    if kind in ("integer", "float"):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (kind == "integer" and not float(value).is_integer()) or not math.isfinite(float(value)):
            raise InvalidRowError(column, f"must be {'an integer' if kind == 'integer' else 'a number'}, got {value!r}")
        return int(value) if kind == "integer" else float(value)
    return value


def check_file_name(file: str) -> str:
    """A file name a row may give: relative, under images/, no traversal (the meta CSV's rule)."""
    name = str(file).strip()
    if not name or name.startswith("/") or "\\" in name or ".." in name.split("/") or "\0" in name:
        raise InvalidRowError("file", f"must be a relative name under images/, got {file!r}")
    return name


__all__ = ["CheckedRow", "allowed_columns", "allowed_in", "check_file_name", "check_row", "check_row_in"]
