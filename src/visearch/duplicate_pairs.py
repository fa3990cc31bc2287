"""Near-duplicate pairs held as arrays: what a category's neighbour statistics keep in memory.

A 1,000,000-point category measured 6.3 million pairs: as dicts of two id strings and a float
they took 2.7 GB of the service's memory (benchmarks/results/memory.md). Here each id is stored
once (UTF-8 bytes) and a pair is two int32 positions and a float64 similarity: 16 bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np


class DuplicatePairs(Sequence[dict[str, Any]]):
    """``{"a": id, "b": id, "similarity": cosine}`` pairs, read like a list of dicts, stored as arrays."""

    def __init__(self, ids: np.ndarray, a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> None:
        """``ids``: each point id once (bytes); ``a``/``b``: positions in ``ids``; ``similarity`` per pair."""
        self.ids, self.a, self.b, self.similarity = ids, a, b, similarity

    @classmethod
    def of(cls, pairs: Iterable[Mapping[str, Any]]) -> DuplicatePairs:
        """The pairs of a list of dicts (a measurement, or statistics stored inline as JSON), in its order."""
        listed = list(pairs)
        names = [str(pair["a"]) for pair in listed] + [str(pair["b"]) for pair in listed]
        unique, positions = np.unique(np.array(names, dtype=object), return_inverse=True)
        ids = np.array([name.encode() for name in unique], dtype=bytes) if len(unique) else np.array([], dtype="S1")
        count = len(listed)
        similarity = np.array([float(pair["similarity"]) for pair in listed], dtype=np.float64)
        return cls(ids, positions[:count].astype(np.int32), positions[count:].astype(np.int32), similarity)

    @property
    def nbytes(self) -> int:
        """Bytes the arrays hold."""
        return int(self.ids.nbytes + self.a.nbytes + self.b.nbytes + self.similarity.nbytes)

    def __len__(self) -> int:
        return len(self.similarity)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._pair(position) for position in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._pair(index % len(self))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._pair(position) for position in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable arrays: like a list, never a dict key

    def __repr__(self) -> str:
        return f"DuplicatePairs({len(self)} pairs)"

    def _pair(self, position: int) -> dict[str, Any]:
        return {
            "a": self.ids[self.a[position]].decode(),
            "b": self.ids[self.b[position]].decode(),
            "similarity": float(self.similarity[position]),
        }

    def to_bytes(self) -> bytes:
        """The arrays as one ``.npz`` file (no pickled objects)."""
        buffer = io.BytesIO()
        np.savez(buffer, ids=self.ids, a=self.a, b=self.b, similarity=self.similarity)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DuplicatePairs:
        """Pairs read back from :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(arrays["ids"], arrays["a"], arrays["b"], arrays["similarity"])
