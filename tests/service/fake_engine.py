"""An engine endpoint that hangs or answers late: a loopback socket server in front of a real one."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable

HANG = math.inf  # FakeEngine delay: accept the connection, read the request, never answer
Responder = Callable[[str, str], tuple[int, bytes, str]]  # (method, path) -> (status, body, content type)
MAX_HEAD = 64 * 1024


class FakeEngine:
    """An engine endpoint on a free 127.0.0.1 port that answers late or never, as a test says.

    Every request is read whole, then answered after ``delay`` seconds (``HANG``: never; the
    connection stays open and silent) by forwarding it to a real server (``upstream``, e.g. moto's
    S3, ``host:port``) or by ``respond``. ``only`` limits the delay to paths that contain it; other
    requests are answered at once. Change both at any time with ``set``: a request takes the rule
    in force when it has been read. One request per connection (answered with ``Connection:
    close``), so a client never reuses a connection that a hung request left behind.

    Bounded: a hung request ends when the server stops, and the server stops at ``stop()`` (the
    end of its ``with`` block) or ``lifetime`` seconds after it started, whichever comes first.
    """

    def __init__(self, *, upstream: str | None = None, respond: Responder | None = None, lifetime: float = 300) -> None:
        if (upstream is None) == (respond is None):
            raise ValueError("give an upstream or a responder")
        self.upstream = upstream
        self.respond = respond
        self.lifetime = lifetime
        self._rule: tuple[float, str | None] = (0.0, None)
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.requests: list[tuple[str, str, float]] = []  # (method, path, delay) of every request read
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def set(self, delay: float, only: str | None = None) -> None:
        """Answer requests (whose path contains ``only``, if given) after ``delay`` s; ``HANG``: never."""
        self._rule = (delay, only)

    def delayed(self) -> int:
        """How many requests got a delay (or hung) so far."""
        with self._lock:
            return sum(1 for _, _, delay in self.requests if delay > 0)

    def __enter__(self) -> FakeEngine:
        threading.Thread(target=self._serve, name=f"fake-engine-{self.port}", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        ends = time.monotonic() + self.lifetime
        with self._listener:
            while not self._stop.is_set() and time.monotonic() < ends:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        self._stop.set()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                head, body = read_request(conn)
            except (OSError, ValueError):
                return
            method, path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            delay, only = self._rule
            if only is not None and only not in path:
                delay = 0.0
            with self._lock:
                self.requests.append((method, path, delay))
            read_at = time.monotonic()
            if delay == HANG:
                self._stop.wait(self.lifetime)  # silent until the server stops
                return
            try:
                answer = self._answer(method, path, head, body)
                self._stop.wait(max(0.0, read_at + delay - time.monotonic()))
                if not self._stop.is_set():
                    conn.sendall(answer)
            except OSError:
                return

    def _answer(self, method: str, path: str, head: bytes, body: bytes) -> bytes:
        if self.respond is not None:
            status, content, content_type = self.respond(method, path)
            lines = [
                f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}",
                f"Content-Type: {content_type}",
                f"Content-Length: {len(content)}",
                "Connection: close",
            ]
            return "\r\n".join(lines).encode() + b"\r\n\r\n" + (b"" if method == "HEAD" else content)
        assert self.upstream is not None
        host, port = self.upstream.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as up:
            up.sendall(with_connection_close(head) + body)
            chunks = []
            while chunk := up.recv(65536):  # the upstream closes after its answer (Connection: close)
                chunks.append(chunk)
        response = b"".join(chunks)
        response_head, _, response_body = response.partition(b"\r\n\r\n")
        return with_connection_close(response_head) + response_body


def read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP request from ``conn``: its head (without the blank line) and its body (Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_HEAD:
            raise ValueError("no complete request head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        raise ValueError("chunked request bodies are not supported here")
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("request body cut short")
        body += chunk
    return head, body


def with_connection_close(head: bytes) -> bytes:
    """An HTTP head whose Connection header says close (one request per connection)."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"
