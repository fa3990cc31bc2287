"""The connection to MLflow: one bounded ``MlflowClient``, and MLflow's errors mapped to visearch's.

A server (http/https URI) is probed before any work, its requests are bounded by
ENGINE_READ_TIMEOUT and ENGINE_RETRIES, and a call it does not answer raises
TrackingUnavailableError, one it refuses a TrackingAuthError naming the credentials to set.
Client-side stores (sqlite, file, SQL databases) keep their artifacts under the data home.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3

from visearch.errors import EngineNotConfiguredError, TrackingAuthError, TrackingUnavailableError
from visearch.settings import Settings


def server_url(uri: str) -> str | None:
    """The http(s) URI of an MLflow server without credentials (for messages), or None for other stores."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_reachable(settings: Settings) -> None:
    """Raise TrackingUnavailableError unless the MLflow server at ``settings.tracking_uri`` answers.

    One request to ``/health``, no retry, within ENGINE_CONNECT_TIMEOUT + ENGINE_READ_TIMEOUT: a
    step that cannot track stops before any work. Any HTTP answer counts (a 401 or 404 is MLflow's
    to report); only no answer at all is "down". Other URIs (sqlite, file, databricks) are not
    servers this can reach, and are not checked.
    """
    shown = server_url(settings.tracking_uri)
    if shown is None:
        return
    timeout = urllib3.Timeout(connect=settings.engine_connect_timeout, read=settings.engine_read_timeout)
    try:
        urllib3.request("GET", f"{shown}/health", timeout=timeout, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise TrackingUnavailableError(
            f"MLflow tracking server {shown} is unreachable ({type(exc).__name__}: {exc}); "
            "start it or fix MLFLOW_TRACKING_URI"
        ) from exc


def bound_mlflow_requests(settings: Settings) -> None:
    """Make MLflow's HTTP client time out and retry as ENGINE_READ_TIMEOUT and ENGINE_RETRIES say.

    MLflow 3.17 has no per-client option: it reads these variables of its own on every request
    (defaults: 120 s and 7 retries with exponential backoff, minutes in all). Retries are immediate,
    as for the other engines: after a timeout the wait already happened.
    """
    # Written here, on opening a server client, never at import: MLflow's REST client reads
    # its bounds from the process environment only (no argument of MlflowClient carries them).
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(math.ceil(settings.engine_read_timeout))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.engine_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"


def send_credentials(settings: Settings) -> None:
    """Hand MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD to MLflow's client (it reads its env).

    Set from the environment they are there already; this carries the values of a ``.env`` file.
    """
    # MLflow's REST store takes credentials from the process environment only (its host-creds
    # lookup reads these variables on each request), so a value from .env must be put there.
    if settings.mlflow_tracking_username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_tracking_username
    if settings.mlflow_tracking_password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.mlflow_tracking_password.get_secret_value()


def refused(exc: BaseException, shown: str) -> TrackingAuthError | None:
    """A clear error for a server that answered 401 (no or wrong credentials) or 403 (no permission)."""
    status = getattr(exc, "get_http_status_code", lambda: None)()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401 and not user:
        return TrackingAuthError(
            f"MLflow tracking server {shown} requires authentication (HTTP 401): set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 401:
        return TrackingAuthError(
            f"MLflow tracking server {shown} refused the credentials of user {user!r} (HTTP 401): "
            "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if status == 403:
        return TrackingAuthError(
            f"MLflow tracking server {shown} denied user {user!r} this operation (HTTP 403): "
            "grant the user EDIT (or MANAGE) permission, or use an admin account"
        )
    return None


def unreachable(exc: BaseException) -> BaseException | None:
    """The transport error behind ``exc`` (no answer, a timeout, 5xx after retries), if that is what it is.

    MLflow wraps them in MlflowException ("API request to ... failed"); an error the server
    answered with (a RestException: unknown run, invalid parameter) is not one.
    """
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return current
        if isinstance(current, requests.exceptions.RetryError | urllib3.exceptions.HTTPError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ReachableClient:
    """An ``MlflowClient`` whose calls raise TrackingUnavailableError when the server does not answer.

    Not an MlflowException: callers that read "not found" from one (e.g. no champion yet) must
    not read it from a server that is down. A 401 or 403 becomes a TrackingAuthError that says
    which credentials to set.
    """

    def __init__(self, client: Any, shown: str) -> None:
        self._client = client
        self._shown = shown

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                cause = unreachable(exc)
                if cause is None:
                    denied = refused(exc, self._shown)
                    if denied is not None:
                        raise denied from exc
                    raise
                raise TrackingUnavailableError(
                    f"MLflow tracking server {self._shown} did not answer ({type(cause).__name__}); retry later"
                ) from exc

        return call


def open_client(settings: Settings) -> tuple[Any, str | None]:
    """An ``MlflowClient`` on ``settings.tracking_uri`` and the artifact root it needs (None: the server's).

    A server is checked first (TrackingUnavailableError within ENGINE_CONNECT_TIMEOUT +
    ENGINE_READ_TIMEOUT if it does not answer), so a step stops before any work; every later
    call is bounded by ENGINE_READ_TIMEOUT and ENGINE_RETRIES (see ``bound_mlflow_requests``).
    """
    from mlflow import MlflowClient

    if not settings.mlflow_tracking_uri and settings.require_engines:
        raise EngineNotConfiguredError("MLFLOW_TRACKING_URI")
    uri = settings.tracking_uri
    shown = server_url(uri)
    if shown is not None:
        check_reachable(settings)
        bound_mlflow_requests(settings)
        send_credentials(settings)
        return ReachableClient(MlflowClient(tracking_uri=uri, registry_uri=uri), shown), None
    # A client-side database has no artifact store of its own: MLflow would default to ./mlruns
    # in whatever directory the step happens to run in.
    local = uri.startswith(("sqlite:", "file:", "postgresql:", "mysql:")) or "://" not in uri
    root = (settings.home / "mlartifacts").as_uri() if local else None
    return MlflowClient(tracking_uri=uri, registry_uri=uri), root
