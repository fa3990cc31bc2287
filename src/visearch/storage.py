"""Object store: a local folder or MinIO/S3 (through the `minio` client), one interface.

Keys are POSIX paths relative to the store root (e.g. ``datasets/shoes/meta.csv``); on MinIO
they live under ``MINIO_MAIN_PATH`` in ``MINIO_BUCKET_NAME`` (the seed's layout). Datasets,
models and the images the service returns all go through this interface.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError, MaxRetryError

from visearch.errors import ConfigError, EngineNotConfiguredError, EngineUnavailableError, NotFoundError, VisearchError
from visearch.settings import Settings

# S3 error codes that mean "this object (or its bucket) is not there".
MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
TEMP_PREFIX, TEMP_SUFFIX = ".", ".part"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f]")
# A health probe must answer fast and say "down" rather than retry: the readiness check of the
# service calls it, and minio's own client retries a refused connection for ~6 s.
PROBE_TIMEOUT_SECONDS = 2.0


def clean_key(key: str) -> str:
    """Normalise a key and refuse anything that could escape the store root.

    ``PurePosixPath(key).parts`` with a split: every object read and write calls this (a sync
    of 1,000 images ~8,000 times), and the per-character scan and path object cost 0.2 ms per image.
    """
    if not isinstance(key, str) or CONTROL_CHARACTERS.search(key):
        raise VisearchError(f"invalid object key {key!r}")
    parts = [part for part in key.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or key.startswith(("/", "\\")) or ".." in parts:
        raise VisearchError(f"invalid object key {key!r}")
    return "/".join(parts)


def clean_prefix(prefix: str) -> str:
    """A folder-like prefix: ``""`` (everything) or a clean key."""
    return "" if prefix.strip("/") == "" else clean_key(prefix.strip("/"))


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _atomic_write(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a unique temp file in the target folder, then rename: readers never see half a file.

    ``write`` is called with the open binary temp file. A unique name (not ``<name>.part``) keeps
    two processes filling the same cache entry from clobbering each other; ``os.open`` with 0o666
    keeps the umask's permissions (``tempfile`` would make every object owner-only).
    """
    if not target.parent.is_dir():  # a stat: a mkdir of an existing folder cost ~1 ms per object here
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ObjectStore(Protocol):
    """What the library needs from an object store. Keys are POSIX paths; prefixes are folders."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``, replacing any object there."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; NotFoundError if there is none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def fingerprint(self, key: str) -> str:
        """A short text that changes whenever the object is written again (NotFoundError if none).

        One metadata read: how a reader that keeps a parsed object learns it changed, unread.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under the folder ``prefix`` (``""`` = all), recursively, sorted."""
        ...

    def local_path(self, key: str, cache_dir: Path) -> Path:
        """A local file holding the object: the file itself, or a copy cached under ``cache_dir``."""
        ...

    def uri(self, key: str) -> str:
        """The object's URI: ``file://`` for a local store, ``s3://`` for MinIO."""
        ...

    def ping(self) -> None:
        """Raise EngineUnavailableError unless the store answers."""
        ...


class LocalStore:
    """Objects as files under one folder; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._resolved: Path | None = None

    def _path(self, key: str) -> Path:
        return self.root / clean_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to the key's file atomically."""
        _atomic_write(self._path(key), lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> None:
        """Copy the file to the key's path atomically (nothing to do if it is that file already)."""
        target = self._path(key)
        if target.exists() and target.resolve() == path.resolve():
            return
        with path.open("rb") as source:
            _atomic_write(target, lambda out: shutil.copyfileobj(source, out))

    def get_bytes(self, key: str) -> bytes:
        """The key's file content; NotFoundError if there is none."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"object not found: {key}") from exc

    def exists(self, key: str) -> bool:
        """Whether the key's file exists."""
        return self._path(key).is_file()

    def fingerprint(self, key: str) -> str:
        """The file's inode, size and modification time: every write replaces the file (a new inode)."""
        try:
            found = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"object not found: {key}") from exc
        return f"{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error (same as S3)."""
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under the folder ``prefix`` (``""`` = all), recursively, sorted."""
        folder = clean_prefix(prefix)
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        keys = [
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not _is_temp(path.name)
        ]
        yield from sorted(keys)

    def local_path(self, key: str, cache_dir: Path) -> Path:
        """The file itself: a local store needs no cache."""
        path = self._path(key)
        if not path.is_file():
            raise NotFoundError(f"object not found: {key}")
        return path

    def uri(self, key: str) -> str:
        """The ``file://`` URI of the key's file (under the store's resolved root)."""
        if self._resolved is None:  # resolved once: a resolve per point cost 0.1 ms of a synced image
            self._resolved = self.root.resolve()
        return (self._resolved / clean_key(key)).as_uri()

    def ping(self) -> None:
        """Nothing to reach: a local folder cannot go down (an unreadable file fails where it is read)."""


class MinioStore:
    """Objects in a MinIO/S3 bucket under a main path (prefix)."""

    def __init__(self, client: Minio, bucket: str, main_path: str = "", *, probe: Minio | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.main_path = clean_prefix(main_path)
        self.probe = probe or client  # ping() uses it: a client with a short timeout and no retries

    def __repr__(self) -> str:  # never the credentials
        return f"MinioStore(bucket={self.bucket!r}, main_path={self.main_path!r})"

    def _name(self, key: str) -> str:
        key = clean_key(key)
        return f"{self.main_path}/{key}" if self.main_path else key

    def _key(self, name: str) -> str:
        return name[len(self.main_path) + 1 :] if self.main_path else name

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Map S3 and connection errors to visearch errors (no credentials in any message)."""
        try:
            yield
        except S3Error as exc:
            if exc.code in MISSING_CODES:
                raise NotFoundError(f"object not found: {key} (bucket {self.bucket})") from exc
            status = getattr(exc.response, "status", 0) or 0
            kind = EngineUnavailableError if status >= 500 else VisearchError  # 5xx: the server is failing
            raise kind(f"object store error on {key!r} in bucket {self.bucket}: {exc.code}") from exc
        except HTTPError as exc:
            raise EngineUnavailableError(f"object store unreachable (bucket {self.bucket}): {_reason(exc)}") from exc

    def ping(self) -> None:
        """Raise EngineUnavailableError unless the server answers and the bucket exists (one cheap request)."""
        with self._errors(""):
            found = self.probe.bucket_exists(self.bucket)
        if not found:
            raise EngineUnavailableError(f"object store bucket {self.bucket} does not exist")

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (in the client's region); safe if another process races.

        The existence check goes through the probe client: a server that is down fails here at
        once, before a step or the service starts any work.
        """
        with self._errors(""):
            try:
                if self.probe.bucket_exists(self.bucket):
                    return
                self.client.make_bucket(self.bucket)
            except ValueError as exc:  # the client checks S3's bucket naming rules
                raise ConfigError(f"invalid MINIO_BUCKET_NAME {self.bucket!r}: {exc}") from exc
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload ``data`` as the object ``key``."""
        with self._errors(key):
            self.client.put_object(self.bucket, self._name(key), io.BytesIO(data), len(data))

    def put_file(self, key: str, path: Path) -> None:
        """Upload the file at ``path`` as the object ``key``."""
        with self._errors(key):
            self.client.fput_object(self.bucket, self._name(key), str(path))

    def get_bytes(self, key: str) -> bytes:
        """Download the object's bytes; NotFoundError if there is none."""
        with self._errors(key):
            response = self.client.get_object(self.bucket, self._name(key))
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        """Whether the object exists (one metadata request)."""
        try:
            with self._errors(key):
                self.client.stat_object(self.bucket, self._name(key))
        except NotFoundError:
            return False
        return True

    def fingerprint(self, key: str) -> str:
        """The object's ETag and last-modified time (one metadata request)."""
        with self._errors(key):
            found = self.client.stat_object(self.bucket, self._name(key))
        return f"{found.etag}:{found.last_modified}"

    def delete(self, key: str) -> None:
        """Remove one object; a missing object is not an error (same as S3)."""
        with self._errors(key):
            self.client.remove_object(self.bucket, self._name(key))

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under the folder ``prefix`` (``""`` = all), recursively, sorted."""
        folder = clean_prefix(prefix)
        name = "/".join(part for part in (self.main_path, folder) if part)
        with self._errors(prefix):
            objects = self.client.list_objects(self.bucket, prefix=f"{name}/" if name else None, recursive=True)
            keys = [self._key(obj.object_name) for obj in objects if not obj.is_dir]
        yield from sorted(keys)

    def local_path(self, key: str, cache_dir: Path) -> Path:
        """A local copy under ``cache_dir``, downloaded once and fetched again when the object changed.

        The cache is namespaced by bucket and main path; beside each file a hidden ``.<name>.etag`` sidecar holds
        the object's ETag, so one HEAD request tells whether the copy is current (objects under one
        key can be replaced, e.g. ``prepare --force``; timestamps have only 1 s resolution).
        """
        name = self._name(key)
        target = cache_dir / "s3" / self.bucket / name
        sidecar = target.with_name(f".{target.name}.etag")  # hidden: never mistaken for an object
        with self._errors(key):
            try:
                etag = self.client.stat_object(self.bucket, name).etag
            except S3Error as exc:
                if exc.code in MISSING_CODES:
                    target.unlink(missing_ok=True)
                raise
        if etag and target.is_file() and sidecar.is_file() and sidecar.read_text() == etag:
            return target
        with self._errors(key):
            response = self.client.get_object(self.bucket, name)
            try:
                _atomic_write(target, lambda out: _copy_stream(response, out))
                fetched = response.headers.get("etag", "").replace('"', "")
            finally:
                response.close()
                response.release_conn()
        # File first, then its ETag: a crash in between leaves a mismatch, i.e. a re-download.
        _atomic_write(sidecar, lambda out: out.write(fetched.encode()))
        return target

    def uri(self, key: str) -> str:
        """The object's ``s3://<bucket>/<name>`` URI."""
        return f"s3://{self.bucket}/{self._name(key)}"


def _reason(exc: HTTPError) -> str:
    """The cause of a failed request in one line (urllib3 wraps it in "Max retries exceeded ...")."""
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    return f"{type(reason).__name__}: {reason}"


def _copy_stream(response: object, out: IO[bytes]) -> None:
    for chunk in response.stream(1024 * 1024):  # type: ignore[attr-defined]
        out.write(chunk)


def parse_endpoint(host: str, secure: bool) -> tuple[str, bool]:
    """``host:port`` for the minio client, and TLS on or off.

    Accepts the seed's bare ``host:port`` (TLS from MINIO_SECURE) or a URL, whose scheme wins:
    ``http://minio:9000`` is plain, ``https://s3.example.com`` is TLS.
    """
    if "://" not in host:
        return host.strip().rstrip("/"), secure
    parts = urlsplit(host.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ConfigError(f"MINIO_HOST must be host:port or http(s)://host:port, got {host!r}")
    return parts.netloc, parts.scheme == "https"


def make_minio_client(settings: Settings, *, timeout: float | None = None, retries: int | None = None) -> Minio:
    """A minio client from MINIO_* settings (TLS per MINIO_SECURE or the URL scheme; CA bundle from SSL_CERT_FILE).

    Bounded by ENGINE_CONNECT_TIMEOUT, ENGINE_READ_TIMEOUT and ENGINE_RETRIES (the client's own
    defaults are 5 minutes and 5 retries with backoff); ``timeout`` (seconds, connect and read) and
    ``retries`` replace them, e.g. for a health probe that must answer "down" quickly.
    """
    if not settings.minio_host:
        raise ConfigError("MINIO_HOST is not set")
    endpoint, secure = parse_endpoint(settings.minio_host, settings.minio_secure)
    access = settings.minio_access_key.get_secret_value() if settings.minio_access_key else None
    secret = settings.minio_secret_key.get_secret_value() if settings.minio_secret_key else None
    connect = timeout if timeout is not None else settings.engine_connect_timeout
    read = timeout if timeout is not None else settings.engine_read_timeout
    # The pool minio would build itself (same TLS checks, same CA bundle, same 5xx retries), with our
    # limits. Retries are immediate: after a timeout the wait already happened.
    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=retries if retries is not None else settings.engine_retries,
            backoff_factor=0,
            status_forcelist=[500, 502, 503, 504],
        ),
    )
    try:
        return Minio(
            endpoint,
            access_key=access,
            secret_key=secret,
            secure=secure,
            region=settings.minio_region or None,
            http_client=http_client,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid MINIO_HOST {settings.minio_host!r}: {exc}") from exc


def make_store(settings: Settings) -> ObjectStore:
    """The MinIO store when MINIO_HOST is set (bucket created if missing), else the local folder."""
    if not settings.minio_host:
        if settings.require_engines:
            raise EngineNotConfiguredError("MINIO_HOST")
        return LocalStore(settings.objects_dir)
    probe = make_minio_client(settings, timeout=PROBE_TIMEOUT_SECONDS, retries=0)
    store = MinioStore(make_minio_client(settings), settings.minio_bucket_name, settings.minio_main_path, probe=probe)
    store.ensure_bucket()
    return store
