"""What a gateway was sent but does not enforce, and how it tells the controller.

The compiler skips a value it cannot enforce (and a rule whose match would widen without it)
rather than failing the whole ruleset; the backend also refuses to sinkhole a name its
controller lives under. Each of these is a `Refusal`; the status report carries them so
`msspctl fleet status` shows the gateway as not converged, with the reason, instead of a
gateway that looks in step while it silently enforces less than it was told.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mssp.v1 import common_pb2

MAX_REPORTED = 50  # refusals sent per report (the total is sent too): a bad feed must not bloat it
_MAX_TEXT = 256


@dataclass(frozen=True, order=True)
class Refusal:
    kind: str  # "rule", "category" or "ioc": where the value came from
    value: str  # the refused value (a rule's name when the whole rule is skipped)
    reason: str

    def __str__(self) -> str:
        shown = repr(self.value)
        return f"{self.kind} {shown[:77] + '...' if len(shown) > 80 else shown}: {self.reason}"

    def to_proto(self) -> common_pb2.Refusal:
        return common_pb2.Refusal(kind=self.kind[:_MAX_TEXT], value=self.value[:_MAX_TEXT],
                                  reason=self.reason[:_MAX_TEXT])


class RefusalBook:
    """The refusals of what is in force: replaced by a full apply, patched per IOC by a delta.

    `current` is an immutable snapshot, replaced whole, so the event loop can read it while a
    worker thread applies.
    """

    def __init__(self) -> None:
        self._policy: tuple[Refusal, ...] = ()
        self._iocs: dict[str, Refusal] = {}
        self.current: tuple[Refusal, ...] = ()

    def replace(self, refusals: Iterable[Refusal]) -> None:
        policy = []
        self._iocs = {}
        for r in refusals:
            if r.kind == "ioc":
                self._iocs[r.value] = r
            else:
                policy.append(r)
        self._policy = tuple(policy)
        self._refresh()

    def update_iocs(self, touched: Iterable[str], refusals: Iterable[Refusal]) -> None:
        """A delta: the IOC values it touched lose their old refusal; `refusals` are the new ones."""
        for value in touched:
            self._iocs.pop(value, None)
        for r in refusals:
            self._iocs[r.value] = r
        self._refresh()

    def _refresh(self) -> None:
        self.current = (*self._policy, *sorted(self._iocs.values()))


def report_fields(refusals: tuple[Refusal, ...]) -> dict[str, object]:
    """The StatusReport fields for `refusals`: the first MAX_REPORTED of them and their total."""
    return {"refusals": [r.to_proto() for r in refusals[:MAX_REPORTED]], "refusals_total": len(refusals)}
