"""Building the qdrant-client: the settings (scheme, host, port, API key, TLS) reach the wire.

A recording HTTP server on loopback stands in for a Qdrant server (it only answers the first calls).
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.e2e.servers import self_signed
from visearch.errors import ConfigError
from visearch.index.qdrant import make_client
from visearch.settings import Settings


def test_qdrant_url_needs_a_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        make_client(Settings(visearch_home=tmp_path, qdrant_url="qdrant:6333", _env_file=None))


def answer_json(handler: BaseHTTPRequestHandler, body: dict[str, object]) -> None:
    """Answer a recorded request 200 with ``body`` as JSON, as a Qdrant server does."""
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Recorder(BaseHTTPRequestHandler):
    """Answers the two REST calls a client makes first, and records them (path, api-key header).

    Not a Qdrant: it only shows what ``make_client`` puts on the wire (scheme, host, port, key).
    """

    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Recorder.seen.append((self.path, self.headers.get("api-key")))
        body: dict[str, object] = {"title": "qdrant", "version": "1.20.0"}
        if self.path.startswith("/collections"):
            body = {"result": {"collections": []}, "status": "ok", "time": 0.0}
        answer_json(self, body)

    def log_message(self, *args: object) -> None:
        pass


def serve(tls_cert: Path | None = None, tls_key: Path | None = None) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    if tls_cert and tls_key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def collections_call(client: QdrantClient) -> tuple[str, str | None]:
    Recorder.seen.clear()
    client.get_collections()
    return next(seen for seen in Recorder.seen if seen[0].startswith("/collections"))


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_server_settings_reach_the_wire(tmp_path: Path) -> None:
    server, port = serve()
    try:
        with_key = Settings(
            visearch_home=tmp_path, qdrant_url=f"http://127.0.0.1:{port}", qdrant_api_key="k-123", _env_file=None
        )
        assert collections_call(make_client(with_key)) == ("/collections", "k-123")
        seed_style = Settings(visearch_home=tmp_path, qdrant_host="127.0.0.1", qdrant_port=port, _env_file=None)
        assert collections_call(make_client(seed_style)) == ("/collections", None)
        assert not (tmp_path / "qdrant").exists()  # a server client never touches the embedded store
    finally:
        server.shutdown()


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_https_url_speaks_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    server, port = serve(cert, key)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the cluster's CA bundle, in production
        settings = Settings(
            visearch_home=tmp_path, qdrant_url=f"https://127.0.0.1:{port}", qdrant_api_key="k-tls", _env_file=None
        )
        assert collections_call(make_client(settings)) == ("/collections", "k-tls")
    finally:
        server.shutdown()


# --- collection layout on a server (docs/deploy.md, "8. Scale") ------------------------------------
class CreateRecorder(BaseHTTPRequestHandler):
    """Accepts what creating a collection sends (create, then the ``class`` payload index) and records each body.

    qdrant-client's ``:memory:`` drops ``shard_number`` and ``replication_factor`` (it holds one
    shard), so the request on the wire is where the layout shows.
    """

    bodies: dict[str, dict[str, object]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.answer({"title": "qdrant", "version": "1.20.0"})

    def do_PUT(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        CreateRecorder.bodies[self.path.split("?")[0]] = json.loads(self.rfile.read(length) or b"{}")
        done = {"operation_id": 0, "status": "completed"} if "/index" in self.path else True
        self.answer({"result": done, "status": "ok", "time": 0.0})

    def answer(self, body: dict[str, object]) -> None:
        answer_json(self, body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("configured", "sent"), [({"3", "2"}, (3, 2)), (set(), (None, None))])
def test_new_collections_ask_the_server_for_the_configured_shards_and_replicas(
    configured: set[str], sent: tuple[int | None, int | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QDRANT_SHARD_NUMBER / QDRANT_REPLICATION_FACTOR go into the create request; unset, the server's defaults hold."""
    from visearch.index.qdrant import QdrantBackend

    if configured:
        monkeypatch.setenv("QDRANT_SHARD_NUMBER", "3")
        monkeypatch.setenv("QDRANT_REPLICATION_FACTOR", "2")
    server = ThreadingHTTPServer(("127.0.0.1", 0), CreateRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    CreateRecorder.bodies = {}
    try:
        settings = Settings(
            visearch_home=tmp_path, qdrant_url=f"http://127.0.0.1:{server.server_address[1]}", _env_file=None
        )
        backend = QdrantBackend(
            make_client(settings),
            shard_number=settings.qdrant_shard_number,
            replication_factor=settings.qdrant_replication_factor,
        )
        backend.create_collection("shoes__v1", 4)
        backend.close()
    finally:
        server.shutdown()
    body = CreateRecorder.bodies["/collections/shoes__v1"]
    assert body["vectors"] == {"size": 4, "distance": "Cosine"}
    assert (body.get("shard_number"), body.get("replication_factor")) == sent
    assert "/collections/shoes__v1/index" in CreateRecorder.bodies  # the rest of the create is unchanged


def test_open_index_hands_the_layout_to_the_backend(tmp_path: Path) -> None:
    """The settings reach the backend ``open_index`` builds; a zero is refused where the settings are read."""
    from visearch.index import open_index

    settings = Settings(
        visearch_home=tmp_path,
        qdrant_url=":memory:",
        qdrant_shard_number=4,
        qdrant_replication_factor=2,
        _env_file=None,
    )
    index = open_index(settings)
    try:
        assert (index.backend.shard_number, index.backend.replication_factor) == (4, 2)  # type: ignore[attr-defined]
    finally:
        index.close()
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings(visearch_home=tmp_path, qdrant_shard_number=0, _env_file=None)


def test_a_qdrant_server_creates_the_configured_shards(tmp_path: Path) -> None:
    """On a real server (``QDRANT_URL``): the collection holds the shards asked for."""
    import os

    if not os.environ.get("QDRANT_URL"):
        pytest.skip("needs a Qdrant server: set QDRANT_URL (and QDRANT_API_KEY) to run it")
    settings = Settings(
        visearch_home=tmp_path,
        qdrant_url=os.environ["QDRANT_URL"],
        qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
        qdrant_shard_number=2,
        qdrant_replication_factor=1,
        _env_file=None,
    )
    from visearch.index import open_index

    index = open_index(settings)
    try:
        version = index.create(f"layout-{os.getpid()}", "m1", "d1", 4)
        try:
            params = index.backend.client.get_collection(version.name).config.params  # type: ignore[attr-defined]
            assert (params.shard_number, params.replication_factor) == (2, 1)
        finally:
            index.backend.delete_collection(version.name)
    finally:
        index.close()
