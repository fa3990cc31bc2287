"""The exception hierarchy: every error a user can cause derives from VisearchError."""


class VisearchError(Exception):
    """Root of all visearch errors; the CLI prints its message on one line and exits non-zero."""


class ConfigError(VisearchError):
    """Settings or the category registry are invalid."""


class UnknownCategoryError(VisearchError):
    """A category name that the registry does not hold."""


class DataError(VisearchError):
    """A dataset (meta CSV or its images) cannot be used."""


class InvalidImageError(VisearchError):
    """Bytes that are not a usable image (corrupt, truncated, empty, too large)."""


class ImageTooLargeError(InvalidImageError):
    """An image over the byte or pixel limit (the service answers 413)."""


class InvalidQueryError(VisearchError):
    """A search request with bad parameters (k, minimum similarity, filter)."""


class NotFoundError(VisearchError):
    """A model, collection, point or object that does not exist."""


class IndexBusyError(VisearchError):
    """An index version is being written by another process (two pipelines on one category)."""


class EngineUnavailableError(VisearchError):
    """An engine (index server, object store, MLflow) cannot be reached now; the same call may work later.

    The service answers 503 and reports not ready; a pipeline step stops with the message.
    """


class UnauthorizedError(VisearchError):
    """A protected request without credentials (HTTP 401)."""


class ForbiddenError(VisearchError):
    """Credentials that do not match, or admin access switched off (HTTP 403)."""


class ConflictError(VisearchError):
    """A request that the index's current state forbids, e.g. deleting the live version (HTTP 409)."""
