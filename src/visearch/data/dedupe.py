"""Exact and near-duplicate images inside a category: pixel digest, perceptual hash, embeddings.

Exact duplicates share the digest of their decoded pixels (so a re-encoded copy with the same
pixels counts). Near duplicates have perceptual hashes (ImageHash pHash, 64 bits) within a small
Hamming distance; optionally, embeddings with a cosine similarity above a threshold. Pairs join
into groups (union-find); the first image of a group in input order is the one to keep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

HASH_BITS = 64
DEFAULT_MAX_DISTANCE = 2  # re-encoded, resized or brightened copies of a photo land at 0-2
DEFAULT_MIN_COSINE = 0.95  # frozen Lite0 at 96 px: a 6% crop of a photo ~0.95, other photos < 0.4
DEFAULT_MAX_COLOUR = 40  # largest difference of a thumbnail channel (0-255) between near duplicates


@dataclass(frozen=True)
class ImageHashes:
    """What duplicate detection needs of one image."""

    digest: str  # sha256 of size + RGB pixels
    phash: int  # 64-bit perceptual hash (of the grey image: blind to colour)
    colour: tuple[int, ...] = ()  # RGB of a 4x4 thumbnail: tells a red shirt from the same shirt in blue


def hash_image(image: Image.Image) -> ImageHashes:
    """Pixel digest and perceptual hash of an image (any mode; compared as RGB)."""
    import imagehash

    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    colour = tuple(rgb.resize((4, 4), Image.Resampling.BOX).tobytes())
    return ImageHashes(digest, int(str(imagehash.phash(rgb)), 16), colour)


@dataclass(frozen=True)
class Duplicate:
    """One duplicate image: the file, the kept image it duplicates, how it was found and how close it is."""

    file: str
    of: str  # the kept image of its group
    kind: str  # exact | near | embedding | chained
    distance: float  # Hamming distance of the hashes (embedding: 1 - cosine)


@dataclass
class DuplicateReport:
    """Every duplicate image with the image it duplicates; ``groups`` counts the kept originals."""

    duplicates: list[Duplicate] = field(default_factory=list)
    groups: int = 0

    def files(self) -> set[str]:
        """The files that ``--dedupe`` drops (every group member except its first image)."""
        return {duplicate.file for duplicate in self.duplicates}

    def counts(self) -> dict[str, int]:
        """Number of duplicates per kind (exact, near, embedding, chained)."""
        counts: dict[str, int] = {}
        for duplicate in self.duplicates:
            counts[duplicate.kind] = counts.get(duplicate.kind, 0) + 1
        return counts

    def summary(self, limit: int = 20) -> str:
        """Human-readable report: totals per kind and the first ``limit`` duplicates."""
        if not self.duplicates:
            return "no duplicate images found"
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.counts().items()))
        lines = [f"{len(self.duplicates)} duplicate images in {self.groups} groups ({kinds})"]
        lines += [f"  {d.file} duplicates {d.of} ({d.kind}, distance {d.distance:g})" for d in self.duplicates[:limit]]
        if len(self.duplicates) > limit:
            lines.append(f"  ... and {len(self.duplicates) - limit} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the group count and every duplicate."""
        return {"groups": self.groups, "duplicates": [vars(duplicate) for duplicate in self.duplicates]}


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:  # the smaller index stays root: the first image of a group is kept
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def near_pairs(phashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs (i < j) whose 64-bit hashes differ in at most ``max_distance`` bits.

    Multi-index hashing: cut the hash into ``max_distance + 1`` blocks; by the pigeonhole principle
    two hashes that close agree exactly on at least one block, so only same-block buckets are
    compared. Far faster than all pairs on 10^5 images.
    """
    hashes = phashes.astype(np.uint64)
    blocks = np.array_split(np.arange(HASH_BITS), max_distance + 1)
    found: set[tuple[int, int]] = set()
    for bits in blocks:
        shift, width = np.uint64(bits[0]), len(bits)
        keys = (hashes >> shift) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        boundaries = np.flatnonzero(np.diff(keys[order])) + 1
        for members in np.split(order, boundaries):
            if len(members) > 1:
                found.update(_bucket_pairs(hashes, np.sort(members), max_distance))
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def _bucket_pairs(
    hashes: np.ndarray, members: np.ndarray, max_distance: int, chunk: int = 1024
) -> set[tuple[int, int]]:
    """Close pairs inside one bucket, a block of rows at a time (a skewed bucket can hold 10^4 hashes)."""
    pairs: set[tuple[int, int]] = set()
    values = hashes[members]
    for start in range(0, len(members), chunk):
        distances = np.bitwise_count(values[start : start + chunk, None] ^ values[None, :])
        rows, cols = np.nonzero(distances <= max_distance)
        rows = rows + start
        keep = rows < cols
        pairs.update(zip(members[rows[keep]].tolist(), members[cols[keep]].tolist(), strict=True))
    return pairs


def colour_distance(a: ImageHashes, b: ImageHashes) -> int:
    """Largest channel difference of the two 4x4 thumbnails (0 when either has no colour)."""
    if not a.colour or not b.colour:
        return 0
    return max(abs(x - y) for x, y in zip(a.colour, b.colour, strict=True))


def embedding_pairs(vectors: np.ndarray, min_cosine: float, chunk: int = 2048) -> np.ndarray:
    """Index pairs (i < j) of L2-normalised vectors with cosine similarity >= ``min_cosine``."""
    pairs = []
    for start in range(0, len(vectors), chunk):
        similarity = vectors[start : start + chunk] @ vectors.T
        rows, cols = np.nonzero(similarity >= min_cosine)
        rows = rows + start
        keep = rows < cols
        pairs.append(np.stack([rows[keep], cols[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def find_duplicates(
    files: Sequence[str],
    hashes: Sequence[ImageHashes],
    *,
    max_distance: int | None = DEFAULT_MAX_DISTANCE,
    vectors: np.ndarray | None = None,
    min_cosine: float = DEFAULT_MIN_COSINE,
    max_colour: int | None = DEFAULT_MAX_COLOUR,
) -> DuplicateReport:
    """Group exact, near (hash) and optionally embedding duplicates; the first file of a group is kept.

    Args:
        files: Image names, in the order that decides which copy is kept.
        hashes: ``hash_image`` of each file.
        max_distance: Largest Hamming distance of near duplicates (None: exact duplicates only).
        vectors: Optional L2-normalised embeddings, one row per file.
        min_cosine: Smallest cosine similarity of embedding duplicates.
        max_colour: Near duplicates must also agree in colour (4x4 thumbnail channels within this;
            None: ignore colour), since pHash sees only grey levels.
    """
    if len(files) != len(hashes) or (vectors is not None and len(vectors) != len(files)):
        raise ValueError("files, hashes and vectors must have the same length")
    union = _UnionFind(len(files))
    first_by_digest: dict[str, int] = {}
    for index, item in enumerate(hashes):
        union.union(first_by_digest.setdefault(item.digest, index), index)
    phashes = np.array([item.phash for item in hashes], dtype=np.uint64)
    if max_distance is not None and len(files) > 1:
        _join_near(union, hashes, phashes, max_distance, max_colour)
    if vectors is not None and len(files) > 1:
        for i, j in embedding_pairs(vectors, min_cosine):
            union.union(int(i), int(j))
    report = DuplicateReport()
    roots = set()
    for index in range(len(files)):
        root = union.find(index)
        if root == index:
            continue
        roots.add(root)
        report.duplicates.append(_describe(index, root, files, hashes, phashes, vectors, max_distance, min_cosine))
    report.groups = len(roots)
    return report


def _join_near(
    union: _UnionFind, hashes: Sequence[ImageHashes], phashes: np.ndarray, max_distance: int, max_colour: int | None
) -> None:
    """Join images with close pHashes and colours.

    Equal pHashes are grouped first (a catalogue can hold thousands of near-blank images with the
    same hash: all pairs would not fit in memory); within a hash, images split into colour
    clusters, each represented by its first image; then only distinct hashes are compared.
    """
    unique, inverse = np.unique(phashes, return_inverse=True)
    clusters: list[list[int]] = [[] for _ in range(len(unique))]

    def same_colour(a: int, b: int) -> bool:
        return max_colour is None or colour_distance(hashes[a], hashes[b]) <= max_colour

    for index, value in enumerate(inverse.tolist()):
        match = next((first for first in clusters[value] if same_colour(first, index)), None)
        if match is None:
            clusters[value].append(index)
        else:
            union.union(match, index)
    for a, b in near_pairs(unique, max_distance).tolist():
        for first_a in clusters[a]:
            for first_b in clusters[b]:
                if same_colour(first_a, first_b):
                    union.union(first_a, first_b)


def _describe(
    index: int,
    root: int,
    files: Sequence[str],
    hashes: Sequence[ImageHashes],
    phashes: np.ndarray,
    vectors: np.ndarray | None,
    max_distance: int | None,
    min_cosine: float,
) -> Duplicate:
    """How a group member relates to the kept image (a chain of near pairs may be further apart)."""
    distance = int(np.bitwise_count(phashes[index] ^ phashes[root]))
    if hashes[index].digest == hashes[root].digest:
        return Duplicate(files[index], files[root], "exact", 0)
    if max_distance is not None and distance <= max_distance:
        return Duplicate(files[index], files[root], "near", distance)
    if vectors is not None:
        cosine = float(vectors[index] @ vectors[root])
        if cosine >= min_cosine:
            return Duplicate(files[index], files[root], "embedding", round(1 - cosine, 4))
    return Duplicate(files[index], files[root], "chained", distance)
