"""Domain errors that carry their HTTP meaning; the web layer renders them once."""


class CVError(Exception):
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(CVError):
    status = 400


class Forbidden(CVError):
    status = 403


class NotFound(CVError):
    status = 404


class Conflict(CVError):
    status = 409


class TooLarge(CVError):
    status = 413


class NotAnImage(CVError):
    status = 415


class NoModel(CVError):
    status = 503


class StorageError(CVError):
    """The disk refused a change (full, read-only); the message says whether anything changed."""

    status = 507
