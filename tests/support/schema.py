"""Which tables an Alembic autogenerate diff touches: a migration test checks only its own."""

from __future__ import annotations


def tables_in(diff: object) -> list[str]:
    found: list[str] = []
    for part in diff if isinstance(diff, list) else [diff]:
        for item in part if isinstance(part, tuple) else [part]:
            name = getattr(item, "name", None) if not isinstance(item, str) else item
            table = getattr(item, "table", None)
            found += [n for n in (name, getattr(table, "name", None)) if isinstance(n, str)]
    return found
