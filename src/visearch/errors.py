"""The exception tree: every error visearch raises derives from :class:`VisearchError`.

Each class carries the HTTP status the service answers with (BentoML's idiom), so the mapping of
an error to a response is ``exc.status`` and the CLI prints ``error: <message>`` for any of them.
"""

from __future__ import annotations

from typing import ClassVar


class VisearchError(Exception):
    """Root of all visearch errors; the CLI prints its message on one line and exits non-zero."""

    # A request that names something that cannot exist (e.g. an invalid object key) is the caller's to fix.
    status: ClassVar[int] = 400


class ConfigError(VisearchError):
    """Settings or the category registry are invalid (the server cannot answer: 503)."""

    status = 503


class EngineNotConfiguredError(ConfigError):
    """An engine setting is missing where the embedded fallback is refused (VISEARCH_REQUIRE_ENGINES, Kubeflow pods)."""

    def __init__(self, setting: str) -> None:
        super().__init__(
            f"{setting} is not set, and this process must not fall back to an embedded engine "
            f"(VISEARCH_REQUIRE_ENGINES, or a Kubeflow pod): set {setting} (on a cluster: the visearch-config ConfigMap)"
        )


class UnknownCategoryError(VisearchError):
    """A category name that the registry does not hold."""

    status = 404


class DataError(VisearchError):
    """A dataset (meta CSV or its images) cannot be used."""


class RejectedFileError(DataError):
    """One source file (or box) that a dataset rule or a format check drops; the run goes on without it."""


class InvalidImageError(VisearchError):
    """Bytes that are not a usable image (corrupt, truncated, empty, too large)."""


class ImageTooLargeError(InvalidImageError):
    """An image over the byte or pixel limit (the service answers 413)."""

    status = 413


class InvalidQueryError(VisearchError):
    """A search request with bad parameters (k, minimum similarity, filter)."""


class NotFoundError(VisearchError):
    """A model, collection, point, object or step output that does not exist."""

    status = 404


class IndexBusyError(VisearchError):
    """An index version is being written by another process (two pipelines on one category)."""

    status = 503


class IndexIntegrityError(VisearchError):
    """A collection version or step output that does not hold what it should; the live alias is not moved."""

    status = 409


class EngineUnavailableError(VisearchError):
    """An engine (index server, object store, MLflow) cannot be reached now; the same call may work later.

    The service answers 503 and reports not ready; a pipeline step stops with the message.
    """

    status = 503


class TrackingError(VisearchError):
    """MLflow refused an operation or holds inconsistent state (e.g. a champion without files)."""

    status = 502


class TrackingAuthError(TrackingError):
    """The MLflow server refused visearch's credentials: none sent, wrong ones, or no permission (502)."""


class TrackingUnavailableError(TrackingError, EngineUnavailableError):
    """The MLflow tracking server does not answer."""

    status = 503


class PipelineFailedError(VisearchError):
    """A pipeline step failed (its log is printed above)."""

    status = 500


class UnauthorizedError(VisearchError):
    """A protected request without credentials (HTTP 401)."""

    status = 401


class ForbiddenError(VisearchError):
    """Credentials that do not match, or admin access switched off (HTTP 403)."""

    status = 403


class ConflictError(VisearchError):
    """A request that the index's current state forbids, e.g. deleting the live version (HTTP 409)."""

    status = 409


class InvalidRowError(VisearchError):
    """A catalogue row (class, label, caption columns) that the category refuses; the message names the field (422)."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnknownImageError(NotFoundError):
    """A catalogue write names an image id (or file) the category does not hold (404)."""


class DuplicateImageError(ConflictError):
    """An add names a file the category already holds with other bytes or another row: replace it instead (409)."""


class CatalogueBusyError(IndexBusyError):
    """Another process holds the category's write lock past the wait (503: retry)."""


class KfpError(VisearchError):
    """The Kubeflow Pipelines API refused a request or answered something that is not its API (502)."""

    status = 502


class KfpUnavailableError(KfpError, EngineUnavailableError):
    """The Kubeflow Pipelines API cannot be reached (503)."""

    status = 503


class KfpAuthError(KfpError):
    """The Kubeflow Pipelines API refused the credentials: none or a wrong token (401), no access (403); 502 here."""


class UnknownExperimentError(NotFoundError):
    """A Kubeflow Pipelines experiment that does not exist (404)."""
