"""The index: versioned collections, uuid5 ids, batched upsert, atomic alias swap, query.

This package face only re-exports; the code lives in its modules:

- :mod:`~visearch.index.versions`: collection versions (``<category>__<version>``) and point ids;
- :mod:`~visearch.index.opening`: :func:`open_index`, the backend the settings choose;
- :mod:`~visearch.index.facade`: :class:`VectorIndex`, every index operation over any backend;
- :mod:`~visearch.index.types`: the values and the backend protocol shared by both engines;
- :mod:`~visearch.index.edge` (embedded qdrant-edge) and :mod:`~visearch.index.qdrant` (a server).

The names below resolve on first use (PEP 562), so importing one backend module (e.g. a
subprocess that only opens :mod:`visearch.index.edge`) does not load the façade and the settings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visearch.index.facade import VectorIndex
    from visearch.index.opening import open_index
    from visearch.index.types import UPSERT_BATCH, Hit, Record, SearchRequest, Sparse
    from visearch.index.versions import CollectionVersion, point_id

__all__ = [
    "UPSERT_BATCH",
    "CollectionVersion",
    "Hit",
    "Record",
    "SearchRequest",
    "Sparse",
    "VectorIndex",
    "open_index",
    "point_id",
]

# Each public name -> the module that defines it.
_HOMES = {
    "UPSERT_BATCH": "types",
    "Hit": "types",
    "Record": "types",
    "SearchRequest": "types",
    "Sparse": "types",
    "CollectionVersion": "versions",
    "point_id": "versions",
    "VectorIndex": "facade",
    "open_index": "opening",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
