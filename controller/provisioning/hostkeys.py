"""Router SSH host keys: trusted on first contact (accept-new), pinned in the store after it.

Each run gets a known_hosts file written from the store; ssh adds the keys of routers it meets for
the first time, and those are read back into the store when the run ends. A router that later shows
another key fails with the recorded fingerprint, never with a silent re-trust."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

CHANGED_MARKERS = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")


@dataclass(frozen=True)
class HostKey:
    endpoint: str  # "host" on port 22, "[host]:port" otherwise (as known_hosts writes it)
    key_type: str
    key_b64: str

    @property
    def fingerprint(self) -> str:
        """OpenSSH's SHA256 form, as `ssh-keygen -l` and ssh's own warnings print it."""
        digest = hashlib.sha256(base64.b64decode(self.key_b64)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def public_key(self) -> str:
        return f"{self.key_type} {self.key_b64}"

    def line(self) -> str:
        return f"{self.endpoint} {self.public_key}"


def parse_public_key(endpoint: str, text: str) -> HostKey:
    key_type, _, key_b64 = text.strip().partition(" ")
    return HostKey(endpoint, key_type, key_b64.split(" ")[0])


def read_known_hosts(path: Path) -> list[HostKey]:
    """Plain (not hashed: the runs write HashKnownHosts=no) entries; malformed lines are skipped."""
    found: list[HostKey] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return found
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 3 or raw.startswith(("#", "|", "@")):
            continue
        try:
            base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        for endpoint in parts[0].split(","):
            found.append(HostKey(endpoint, parts[1], parts[2]))
    return found


def write_known_hosts(path: Path, keys: list[HostKey]) -> None:
    path.write_text("".join(k.line() + "\n" for k in keys))


def newly_seen(path: Path, known: dict[str, HostKey]) -> dict[str, HostKey]:
    """Keys ssh added during the run, by endpoint (the first one an endpoint showed)."""
    fresh: dict[str, HostKey] = {}
    for key in read_known_hosts(path):
        if key.endpoint not in known and key.endpoint not in fresh:
            fresh[key.endpoint] = key
    return fresh


def is_key_change(message: str) -> bool:
    return any(m in message for m in CHANGED_MARKERS)
