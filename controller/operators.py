"""Who is acting: the operator an operator-API call was authenticated as.

The gRPC access interceptor (controller/grpc_api/access.py) sets it for the duration of a call;
`asyncio.to_thread` copies it into the thread a servicer's store work runs in, so services read it
without every signature growing a parameter. Outside a call (housekeeping, feeds on a schedule)
nobody acts and the names below fall back to what they were before operators had names.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
BOOTSTRAP = "bootstrap"  # the data dir's operator.token: always an admin, never a row


@dataclass(frozen=True)
class Actor:
    name: str
    role: str

    @property
    def bootstrap(self) -> bool:
        return self.name == BOOTSTRAP


BOOTSTRAP_ACTOR = Actor(BOOTSTRAP, ADMIN)
ACTING: ContextVar[Actor | None] = ContextVar("mssp_acting_operator", default=None)


def acting() -> Actor | None:
    return ACTING.get()


def acting_operator_name() -> str:
    """For records of who decided something: the operator's name, "operator" when none acts."""
    actor = ACTING.get()
    return actor.name if actor is not None else "operator"


def manual_ioc_source() -> str | None:
    """The source of an indicator added by hand: `operator:NAME` for a named operator; None (the
    historical "operator") for the bootstrap credential or no caller."""
    actor = ACTING.get()
    if actor is None or actor.bootstrap:
        return None
    return f"operator:{actor.name}"
