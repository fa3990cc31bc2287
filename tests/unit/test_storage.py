"""Object store: the same behaviour on a local folder and on S3 (a real moto S3 server on loopback).

The S3 server is moto's server mode, started by a fixture on a free 127.0.0.1 port and stopped at
teardown; the store talks to it through the real `minio` client, as it talks to MinIO in production.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.servers import ACCESS, SECRET, moto_server, raw_client, s3_settings, self_signed
from visearch.errors import ConfigError, NotFoundError, VisearchError
from visearch.storage import LocalStore, MinioStore, ObjectStore, make_minio_client, make_store, parse_endpoint

BAD_KEYS = ["", "/etc/passwd", "../outside", "a/../../b", "a/..", "..\\windows", "a\x00b", "\\abs"]


# --- one behavioural suite, two stores ----------------------------------------------------------
@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return make_store(s3_settings(endpoint, tmp_path / "home"))


def test_put_get_overwrite(any_store: ObjectStore) -> None:
    any_store.put_bytes("datasets/c/meta.csv", b"one")
    assert any_store.get_bytes("datasets/c/meta.csv") == b"one"
    any_store.put_bytes("datasets/c/meta.csv", b"two, longer")
    assert any_store.get_bytes("datasets/c/meta.csv") == b"two, longer"
    any_store.put_bytes("empty.bin", b"")
    assert any_store.get_bytes("empty.bin") == b""


def test_a_fingerprint_changes_with_every_write_even_of_the_same_size(any_store: ObjectStore) -> None:
    any_store.put_bytes("datasets/c/meta.csv", b"one")
    first = any_store.fingerprint("datasets/c/meta.csv")
    assert any_store.fingerprint("datasets/c/meta.csv") == first  # unchanged: the same mark
    any_store.put_bytes("datasets/c/meta.csv", b"two")  # same size, written again
    assert any_store.fingerprint("datasets/c/meta.csv") != first
    with pytest.raises(NotFoundError):
        any_store.fingerprint("datasets/c/none.csv")


def test_put_file_exists_delete(any_store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "trunk.pth"
    source.write_bytes(os.urandom(300_000))
    any_store.put_file("models/c/v1/trunk.pth", source)
    assert any_store.exists("models/c/v1/trunk.pth")
    assert any_store.get_bytes("models/c/v1/trunk.pth") == source.read_bytes()
    any_store.delete("models/c/v1/trunk.pth")
    assert not any_store.exists("models/c/v1/trunk.pth")
    any_store.delete("models/c/v1/trunk.pth")  # deleting a missing object is fine


def test_missing_objects(any_store: ObjectStore, tmp_path: Path) -> None:
    assert not any_store.exists("nope/x.png")
    assert not any_store.exists("nope")
    with pytest.raises(NotFoundError):
        any_store.get_bytes("nope/x.png")
    with pytest.raises(NotFoundError):
        any_store.local_path("nope/x.png", tmp_path / "cache")


def test_list_is_folder_scoped_recursive_sorted(any_store: ObjectStore) -> None:
    for key in [
        "datasets/b/images/z.png",
        "datasets/b/images/a/1.png",
        "datasets/b/meta.csv",
        "datasets/bb/meta.csv",
        "models/b/v1/meta.json",
    ]:
        any_store.put_bytes(key, b"x")
    assert list(any_store.list("datasets/b")) == [
        "datasets/b/images/a/1.png",
        "datasets/b/images/z.png",
        "datasets/b/meta.csv",
    ]
    assert list(any_store.list("datasets/b/")) == list(any_store.list("datasets/b"))
    assert list(any_store.list("datasets/b/images/a")) == ["datasets/b/images/a/1.png"]
    assert list(any_store.list("")) == sorted(
        [
            "datasets/b/images/z.png",
            "datasets/b/images/a/1.png",
            "datasets/b/meta.csv",
            "datasets/bb/meta.csv",
            "models/b/v1/meta.json",
        ]
    )
    assert list(any_store.list("datasets/missing")) == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_key_traversal_refused(any_store: ObjectStore, tmp_path: Path, key: str) -> None:
    calls = [
        lambda: any_store.put_bytes(key, b"x"),
        lambda: any_store.get_bytes(key),
        lambda: any_store.exists(key),
        lambda: any_store.delete(key),
        lambda: any_store.local_path(key, tmp_path / "cache"),
        lambda: any_store.uri(key),
    ]
    for call in calls:
        with pytest.raises(VisearchError, match="invalid object key"):
            call()
    assert not (tmp_path / "outside").exists()
    assert not any((tmp_path.parent).glob("outside*"))


def test_list_refuses_traversal(any_store: ObjectStore) -> None:
    with pytest.raises(VisearchError, match="invalid object key"):
        list(any_store.list("../"))


def test_local_path_caches_and_follows_changes(any_store: ObjectStore, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    any_store.put_bytes("datasets/c/images/a.png", b"first")
    path = any_store.local_path("datasets/c/images/a.png", cache)
    assert path.read_bytes() == b"first"
    assert any_store.local_path("datasets/c/images/a.png", cache) == path
    any_store.put_bytes("datasets/c/images/a.png", b"again")  # same size, same second
    assert any_store.local_path("datasets/c/images/a.png", cache).read_bytes() == b"again"


def test_uri_names_the_object(any_store: ObjectStore) -> None:
    uri = any_store.uri("datasets/c/images/a.png")
    if isinstance(any_store, LocalStore):
        assert uri.startswith("file://") and uri.endswith("/objects/datasets/c/images/a.png")
    else:
        assert isinstance(any_store, MinioStore)
        assert uri == f"s3://{any_store.bucket}/team/visearch/datasets/c/images/a.png"


# --- local specifics ----------------------------------------------------------------------------
def test_local_list_hides_partial_writes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/b.txt", b"x")
    (tmp_path / "a" / ".tmpabc.part").write_bytes(b"half")  # what an interrupted write leaves
    assert list(store.list("a")) == ["a/b.txt"]


def test_local_objects_keep_umask_permissions(tmp_path: Path) -> None:
    """Objects are readable by the group/others the umask allows (a shared data home), not owner-only."""
    old = os.umask(0o022)
    try:
        store = LocalStore(tmp_path)
        store.put_bytes("a/b.txt", b"x")
        source = tmp_path / "src.bin"
        source.write_bytes(b"y")
        store.put_file("a/c.bin", source)
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a" / "c.bin").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.txt", "c.bin"]  # no temp files left


def test_local_path_is_the_file_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put_bytes("m/x.bin", b"abc")
    assert store.local_path("m/x.bin", tmp_path / "cache") == tmp_path / "objects" / "m" / "x.bin"
    assert not (tmp_path / "cache").exists()


# --- S3 specifics -------------------------------------------------------------------------------
def test_make_store_creates_bucket_and_uses_main_path(s3_endpoint: str, tmp_path: Path) -> None:
    settings = s3_settings(s3_endpoint, tmp_path)
    client = raw_client(s3_endpoint)
    assert not client.bucket_exists(settings.minio_bucket_name)
    store = make_store(settings)
    assert client.bucket_exists(settings.minio_bucket_name)
    store.put_bytes("datasets/c/meta.csv", b"x")
    names = [o.object_name for o in client.list_objects(settings.minio_bucket_name, recursive=True)]
    assert names == ["team/visearch/datasets/c/meta.csv"]
    make_store(settings)  # the bucket exists now: no error, nothing lost
    assert store.get_bytes("datasets/c/meta.csv") == b"x"


def test_main_paths_isolate_stores_in_one_bucket(s3_endpoint: str, tmp_path: Path) -> None:
    shared = f"vs-shared-{uuid.uuid4().hex[:8]}"  # the session's S3 server outlives this test
    first = make_store(s3_settings(s3_endpoint, tmp_path, minio_bucket_name=shared, minio_main_path="one"))
    second = make_store(s3_settings(s3_endpoint, tmp_path, minio_bucket_name=shared, minio_main_path=""))
    first.put_bytes("k/a.txt", b"1")
    second.put_bytes("k/a.txt", b"2")
    assert first.get_bytes("k/a.txt") == b"1"
    assert list(first.list("")) == ["k/a.txt"]
    assert list(second.list("k")) == ["k/a.txt"]
    assert sorted(second.list("")) == ["k/a.txt", "one/k/a.txt"]


def test_cache_is_namespaced_by_bucket(s3_endpoint: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a = make_store(s3_settings(s3_endpoint, tmp_path))
    b = make_store(s3_settings(s3_endpoint, tmp_path))
    a.put_bytes("x.txt", b"from a")
    b.put_bytes("x.txt", b"from b")
    assert a.local_path("x.txt", cache).read_bytes() == b"from a"
    assert b.local_path("x.txt", cache).read_bytes() == b"from b"


def test_endpoint_url_scheme_sets_tls(s3_endpoint: str, tmp_path: Path) -> None:
    assert parse_endpoint("minio:9000", True) == ("minio:9000", True)
    assert parse_endpoint("http://minio:9000", True) == ("minio:9000", False)
    assert parse_endpoint("https://s3.example.com/", False) == ("s3.example.com", True)
    with pytest.raises(ConfigError):
        parse_endpoint("http://minio:9000/bucket", False)
    with pytest.raises(ConfigError):
        parse_endpoint("ftp://minio:9000", False)
    # MINIO_SECURE says TLS, the http:// scheme wins: this plain server answers.
    store = make_store(s3_settings(f"http://{s3_endpoint}", tmp_path, minio_secure=True))
    store.put_bytes("a", b"ok")
    assert store.get_bytes("a") == b"ok"


def test_bad_bucket_name_is_a_config_error(s3_endpoint: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MINIO_BUCKET_NAME"):
        make_store(s3_settings(s3_endpoint, tmp_path, minio_bucket_name="No_Such"))


def test_tls_on_refuses_a_plain_server_and_hides_secrets(s3_endpoint: str, tmp_path: Path) -> None:
    """MINIO_SECURE=true really means TLS: the handshake fails, the store says so and shows no secret."""
    settings = s3_settings(s3_endpoint, tmp_path, minio_secure=True)
    with pytest.raises(VisearchError, match="unreachable") as caught:
        make_store(settings)
    store = MinioStore(make_minio_client(settings), "bucket", "p")
    for text in (str(caught.value), repr(store), repr(settings)):
        assert SECRET not in text and ACCESS not in text


def test_tls_store_against_a_tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MINIO_SECURE=true against a TLS S3 server whose CA is given by SSL_CERT_FILE (as in a cluster)."""
    cert, key = self_signed(tmp_path)
    with moto_server(tmp_path, cert=cert, key=key) as endpoint:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        store = make_store(s3_settings(endpoint, tmp_path / "home", minio_secure=True))
        store.put_bytes("datasets/c/meta.csv", b"over tls")
        assert store.get_bytes("datasets/c/meta.csv") == b"over tls"
        assert store.local_path("datasets/c/meta.csv", tmp_path / "cache").read_bytes() == b"over tls"
