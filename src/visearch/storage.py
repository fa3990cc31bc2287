"""Object store: a local folder or MinIO/S3 (through the `minio` client), one interface.

Keys are POSIX paths relative to the store root (e.g. ``datasets/shoes/meta.csv``); on MinIO
they live under ``MINIO_MAIN_PATH`` in ``MINIO_BUCKET_NAME`` (the seed's layout).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from visearch.errors import NotFoundError, VisearchError
from visearch.settings import Settings


def clean_key(key: str) -> str:
    """Normalise a key and refuse anything that could escape the store root."""
    parts = PurePosixPath(key.replace("\\", "/")).parts
    if not parts or key.startswith("/") or any(part in ("..", "") for part in parts):
        raise VisearchError(f"invalid object key {key!r}")
    return "/".join(parts)


class ObjectStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def put_file(self, key: str, path: Path) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def local_path(self, key: str, cache_dir: Path) -> Path: ...
    def uri(self, key: str) -> str: ...


class LocalStore:
    """Objects as files under one folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / clean_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        if target.resolve() == path.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFoundError(f"object not found: {key}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.endswith(".part"):
                yield path.relative_to(self.root).as_posix()

    def local_path(self, key: str, cache_dir: Path) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"object not found: {key}")
        return path

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


class MinioStore:
    """Objects in a MinIO/S3 bucket under a main path."""

    def __init__(self, client: object, bucket: str, main_path: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.main_path = main_path.strip("/")

    def _name(self, key: str) -> str:
        key = clean_key(key)
        return f"{self.main_path}/{key}" if self.main_path else key

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):  # type: ignore[attr-defined]
            self.client.make_bucket(self.bucket)  # type: ignore[attr-defined]

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._name(key), io.BytesIO(data), len(data))  # type: ignore[attr-defined]

    def put_file(self, key: str, path: Path) -> None:
        self.client.fput_object(self.bucket, self._name(key), str(path))  # type: ignore[attr-defined]

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, self._name(key))  # type: ignore[attr-defined]
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise NotFoundError(f"object not found: {key}") from exc
            raise
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, self._name(key))  # type: ignore[attr-defined]
        except S3Error:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        name = self._name(prefix).rstrip("/") + "/"
        strip = len(self.main_path) + 1 if self.main_path else 0
        for obj in self.client.list_objects(self.bucket, prefix=name, recursive=True):  # type: ignore[attr-defined]
            yield obj.object_name[strip:]

    def local_path(self, key: str, cache_dir: Path) -> Path:
        target = cache_dir / clean_key(key)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(self.get_bytes(key))
            os.replace(tmp, target)
        return target

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"


def make_store(settings: Settings) -> ObjectStore:
    """The MinIO store when MINIO_HOST is set, else the local folder under the data home."""
    if not settings.minio_host:
        return LocalStore(settings.objects_dir)
    from minio import Minio

    client = Minio(
        settings.minio_host,
        access_key=settings.minio_access_key.get_secret_value() if settings.minio_access_key else None,
        secret_key=settings.minio_secret_key.get_secret_value() if settings.minio_secret_key else None,
        secure=settings.minio_secure,
        region=settings.minio_region,
    )
    store = MinioStore(client, settings.minio_bucket_name, settings.minio_main_path)
    store.ensure_bucket()
    return store
