"""The controller's errors, one tree. Each edge maps them once (gRPC status in
controller/grpc_api/errors.py; HTTP status and CLI exit for the faces to come); every message is
one line, meant for the operator.

Two branches: a DomainError means the request or the current state forbids the change (asking
again changes nothing); Unavailable means something the controller depends on failed (asking
again later may work). A broker failure is never a domain error.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Base of every error the controller raises on purpose."""


class DomainError(ControllerError):
    """The request or the state it meets forbids it."""


class InvalidInput(DomainError):
    """`problems`: every mistake found, when there were several (a policy document); the message
    names them too, so a client that reads only the message misses nothing."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class Conflict(DomainError):
    """The request is valid but the current state forbids it (used token, revoked gateway)."""


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    """Authenticated, but the credential lacks what the request needs (an API key's scope)."""


class Unavailable(ControllerError):
    """Infrastructure failed (database, broker): nothing is wrong with the request; retry later."""


class BrokerUnavailable(Unavailable):
    """The message broker: not connected, a publish or flush that failed, an update not confirmed."""


class ListenError(ControllerError):
    """A listen address is taken or cannot be bound: the controller does not start (never shares)."""
