"""Image digests: sha256 of the bytes, re-read only when a file's identity (size, mtime, inode) changes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.helpers import TINY_CLASSES, copy_tiny_dataset
from visearch.data.digests import CHUNK, DigestCache, file_digest


def tiny_images(root: Path) -> list[Path]:
    """The tiny category's real PNGs, copied under ``root``."""
    copy_tiny_dataset(root)
    images = sorted((root / "images").rglob("*.png"))
    assert len(images) >= 2 * len(TINY_CLASSES)
    return images


def rewrite_in_place(file: Path, data: bytes) -> None:
    """New bytes of the same size in the same inode, with the old modification time put back."""
    stat = file.stat()
    assert len(data) == stat.st_size
    with file.open("r+b") as handle:
        handle.write(data)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file.stat().st_ino == stat.st_ino and file.stat().st_mtime_ns == stat.st_mtime_ns


def test_file_digest_is_the_sha256_of_every_byte(tmp_path: Path) -> None:
    image = tiny_images(tmp_path)[0]
    assert file_digest(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    large = tmp_path / "large.bin"  # several read blocks, the last one partial
    large.write_bytes(image.read_bytes() * (2 * CHUNK // image.stat().st_size + 2))
    assert large.stat().st_size > 2 * CHUNK
    assert file_digest(large) == hashlib.sha256(large.read_bytes()).hexdigest()
    tail_changed = bytearray(large.read_bytes())
    tail_changed[-1] ^= 0xFF
    large.write_bytes(bytes(tail_changed))
    assert file_digest(large) == hashlib.sha256(bytes(tail_changed)).hexdigest()


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    image = tiny_images(tmp_path)[0]
    cache = DigestCache()
    first = cache.digest(image)
    assert first == file_digest(image) and cache.hits == 0
    # Same size, mtime and inode: the remembered digest is returned, the bytes are not read.
    rewrite_in_place(image, bytes(reversed(image.read_bytes())))
    assert cache.digest(image) == first
    assert cache.hits == 1


def test_a_new_identity_is_read_again(tmp_path: Path) -> None:
    image = tiny_images(tmp_path)[0]
    cache = DigestCache()
    cache.digest(image)
    stat = image.stat()
    # Replaced atomically (what the local store does) by other bytes of the same size and mtime: the inode tells.
    replacement = tmp_path / "replacement.png"
    replacement.write_bytes(bytes(reversed(image.read_bytes())))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.replace(image)
    assert image.stat().st_ino != stat.st_ino
    assert cache.digest(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    # Changed in place with the same size: only the modification time tells.
    later = stat.st_mtime_ns + 1_000_000_000
    with image.open("r+b") as handle:
        handle.write(b"\x00")
    os.utime(image, ns=(later, later))
    assert cache.digest(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    # Grown, with the mtime put back: the size tells.
    with image.open("ab") as handle:
        handle.write(b"more")
    os.utime(image, ns=(later, later))
    assert cache.digest(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    assert cache.hits == 0


def test_a_saved_cache_serves_the_next_run(tmp_path: Path) -> None:
    images = tiny_images(tmp_path / "data")
    path = tmp_path / "cache" / "digests.json"  # its folder does not exist yet
    cache = DigestCache(path)
    digests = [cache.digest(image) for image in images]
    cache.save()
    assert sorted(json.loads(path.read_text(encoding="utf-8"))) == sorted(str(image) for image in images)
    assert [p.name for p in path.parent.iterdir()] == ["digests.json"]  # no partial file left behind
    later = DigestCache(path)
    assert [later.digest(image) for image in images] == digests
    assert later.hits == len(images)


def test_a_damaged_or_missing_cache_file_costs_only_a_re_read(tmp_path: Path) -> None:
    image = tiny_images(tmp_path / "data")[0]
    damaged = tmp_path / "digests.json"
    damaged.write_text('{"truncated": [1, 2', encoding="utf-8")
    cache = DigestCache(damaged)
    assert cache.digest(image) == file_digest(image) and cache.hits == 0
    cache.save()
    assert DigestCache(damaged).digest(image) == file_digest(image)
    assert DigestCache(tmp_path / "absent.json").digest(image) == file_digest(image)


def test_a_cache_without_a_file_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing lands in the working directory either
    image = tiny_images(tmp_path / "data")[0]
    cache = DigestCache()
    cache.digest(image)
    cache.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
