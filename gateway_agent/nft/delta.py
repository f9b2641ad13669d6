"""An IOC push as one small nft transaction: element adds and deletes, never a rebuild."""

from __future__ import annotations

from dataclasses import dataclass

from gateway_agent.nft.compile import cidr_set_commands
from gateway_agent.nft.config import NftConfig, marker_for
from gateway_agent.nft.expr import Json, delete_elements, elements, ioc_elem, marker_element
from gateway_agent.nft.iocs import DNS, effective_expiry, place_ioc
from gateway_agent.nft.names import MARKER_KEY, MARKER_SET, parse_cidr_set
from gateway_agent.refusals import Refusal
from gateway_agent.state import DesiredState, StateChange


@dataclass
class Delta:
    """An IOC delta as one JSON transaction, plus what else it touches."""

    doc: Json
    new_cidr_sets: set[str]
    domains: dict[str, int | None]  # domain -> expires_at_ms, None = no longer sinkholed
    rejected: list[Refusal]


def compile_delta(state: DesiredState, change: StateChange, config: NftConfig, now_ms: int,
                  cidr_sets: set[str]) -> Delta:
    """Element adds/deletes for the IOCs a push touched, with the marker, in one transaction.

    Each touched element is added (a no-op when present), deleted, then added again with its
    merged expiry if still live: so removing an element the kernel already expired, or that
    another channel still holds, never fails the transaction.
    """
    rejected: list[Refusal] = []
    commands: list[Json] = []
    new_sets: set[str] = set()
    domains: dict[str, int | None] = {}
    keys = sorted({(i.type, i.value) for i in (*change.added, *change.removed)})
    per_set: dict[str, list[tuple[str, int | None]]] = {}
    for key in keys:
        placed = place_ioc(key[0], key[1], config)
        if isinstance(placed, str):
            rejected.append(Refusal("ioc", key[1], placed))
            continue
        set_name, text = placed
        exp = effective_expiry(state, key, now_ms)
        if set_name == DNS:
            domains[text] = exp
            continue
        per_set.setdefault(set_name, []).append((text, exp))
    for set_name in sorted(per_set):
        if parse_cidr_set(set_name) is not None and set_name not in cidr_sets:
            new_set, new_rule = cidr_set_commands(set_name)
            commands += [new_set, new_rule]
            new_sets.add(set_name)
    for set_name, items in sorted(per_set.items()):
        texts = [t for t, _ in items]
        commands.append(elements(set_name, list(texts)))
        commands.append(delete_elements(set_name, list(texts)))
        live = [ioc_elem(t, exp, now_ms) for t, exp in items if exp is not None]
        if live:
            commands.append(elements(set_name, live))
    marker = marker_for(state, config)
    commands += [
        elements(MARKER_SET, [MARKER_KEY]),
        delete_elements(MARKER_SET, [MARKER_KEY]),
        marker_element(marker),
    ]
    return Delta({"nftables": commands}, new_sets, domains, rejected)
