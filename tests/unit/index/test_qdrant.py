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

from tests.helpers import self_signed
from visearch.errors import ConfigError
from visearch.index.qdrant import make_client
from visearch.settings import Settings


def test_qdrant_url_needs_a_scheme(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        make_client(Settings(visearch_home=tmp_path, qdrant_url="qdrant:6333", _env_file=None))


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
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
