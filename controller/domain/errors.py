"""Domain errors. Adapters map them to transport codes (gRPC status, HTTP status, CLI exit)."""

from __future__ import annotations


class DomainError(Exception):
    """Base: the message is one line, meant for the operator."""


class InvalidInput(DomainError):
    pass


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class Conflict(DomainError):
    """The request is valid but the current state forbids it (used token, revoked gateway)."""


class Unauthenticated(DomainError):
    pass
