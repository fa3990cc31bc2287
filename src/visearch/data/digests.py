"""Content digests of image files, remembered by file identity so an unchanged category is not re-read.

The data version of a collection covers each image's bytes: a replaced image yields a new version.
Hashing 70,000 files on every run would cost minutes, so a digest is kept with the file's size,
modification time and inode; the local store replaces files atomically and the S3 cache re-downloads
an object whose ETag changed, so any new content shows up as a new identity.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class DigestCache:
    """``file_digest`` with memory: a JSON file maps a path to (size, mtime_ns, inode, digest)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[str, list[object]] = {}
        self.hits = 0
        if path is not None and path.is_file():
            try:
                self._entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache only costs a re-read

    def digest(self, file: Path) -> str:
        """The digest of ``file``, re-read only when its size, mtime or inode changed."""
        stat = file.stat()
        identity = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = self._entries.get(str(file))
        if entry is not None and entry[:3] == identity:
            self.hits += 1
            return str(entry[3])
        value = file_digest(file)
        self._entries[str(file)] = [*identity, value]
        return value

    def save(self) -> None:
        """Write the cache (atomically) if it has a file."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(self._entries), encoding="utf-8")
        partial.replace(self.path)
