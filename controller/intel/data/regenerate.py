"""Rebuild the never-block data files in this directory from the installed pymispwarninglists.

Run from the repository root after upgrading pymispwarninglists, then review the diff:

    .venv/bin/python controller/intel/data/regenerate.py

The files are shipped data, not a cache: a refusal must not change because a package did.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
from collections.abc import Callable, Iterable
from pathlib import Path

from controller.domain.errors import InvalidInput
from controller.domain.ioc import parse_domain
from controller.intel.warninglists import (
    LIST_MARK,
    POPULAR_FILE,
    RESOLVERS_FILE,
    SUFFIXES_FILE,
    misp_list,
)

HERE = Path(__file__).resolve().parent
PACKAGE = "pymispwarninglists"
UPSTREAM_LICENCE = (
    "The upstream misp-warninglists README (github.com/MISP/misp-warninglists, not shipped in the "
    "package) says: MISP warning-lists are licensed under CC0 1.0 Universal (public domain dedication)."
)


def _licence_lines() -> list[str]:
    """What the installed package declares: its metadata and its LICENSE file's title and copyrights."""
    dist = importlib.metadata.distribution(PACKAGE)
    expression = dist.metadata.get("License-Expression") or dist.metadata.get("License") or "none declared"
    licence = dist.read_text("licenses/LICENSE") or dist.read_text("LICENSE") or ""
    lines = [line.strip() for line in licence.splitlines() if line.strip()]
    title = lines[0] if lines else "no LICENSE file"
    holders = "; ".join(line for line in lines if line.startswith("Copyright"))
    return [
        f"Licence: {PACKAGE} {dist.version} declares License-Expression {expression}.",
        f"Its LICENSE file: {title}; {holders or 'no copyright line'}.",
        "The bundled data/misp-warninglists directory carries no licence file of its own.",
        UPSTREAM_LICENCE,
    ]


def _canonical_ip(text: str) -> str | None:
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        return None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _canonical_domain(text: str) -> str | None:
    name = text.strip().strip(".")
    if "." not in name:
        return None  # a TLD: no domain IOC can equal it or be its parent
    try:
        return parse_domain(name)
    except InvalidInput:
        return None


def _write(
    filename: str,
    what: str,
    lists: Iterable[str],
    canonical: Callable[[str], str | None],
    notes: Iterable[str] = (),
) -> None:
    version = importlib.metadata.version(PACKAGE)
    entries: set[str] = set()
    header = [f"Never-block data for controller/intel/guard.py: {what}."]
    marks: list[str] = []
    dropped = 0
    for name in lists:
        data = misp_list(name)
        header.append(
            f"Source: MISP warning list {name} ({data['name']!r}, type {data['type']}, version "
            f"{data['version']}) as shipped in {PACKAGE} {version}."
        )
        marks.append(f"{LIST_MARK} {name} {data['version']}")
        for entry in data["list"]:
            value = canonical(entry)
            if value is None:
                dropped += 1
            else:
                entries.add(value)
    header += _licence_lines()
    header += list(notes)
    header.append(
        "Regenerate: .venv/bin/python controller/intel/data/regenerate.py (from the repository root)."
    )
    header.append(
        f"{len(entries)} entries, canonical form, sorted; {dropped} source entries dropped "
        "(not an address or a domain of two or more labels)."
    )
    lines = [f"# {line}" for line in header] + marks + sorted(entries)
    (HERE / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{filename}: {len(entries)} entries ({dropped} dropped)")


def main() -> None:
    _write(
        RESOLVERS_FILE,
        "public DNS resolvers, IPv4 and IPv6 (an IOC equal to one is refused; a network containing "
        "one is refused only for the few in major_resolvers.txt)",
        ("public-dns-v4", "public-dns-v6"),
        _canonical_ip,
    )
    _write(
        POPULAR_FILE,
        "popular domains (an IOC equal to one or a parent of one is refused)",
        ("tranco10k",),
        _canonical_domain,
        notes=[
            "Tranco (tranco-list.eu) ranks sites from third-party top lists; its terms were not checked.",
            "MISP ships it in alphabetical order, so its smallest list (10K) is taken whole, not by rank.",
        ],
    )
    _write(
        SUFFIXES_FILE,
        "public suffixes of two or more labels (an IOC equal to one or a parent of one is refused)",
        ("second-level-tlds",),
        _canonical_domain,
        notes=[
            "MISP builds it from Mozilla's Public Suffix List (publicsuffix.org), published under MPL 2.0.",
            "Single-label TLDs are left out.",
        ],
    )


if __name__ == "__main__":
    main()
