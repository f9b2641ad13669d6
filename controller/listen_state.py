"""Listener ports kept in the data dir (listen.json), so a restart does not move the controller.

A listener configured with port 0 gets a free port on the first start; that port is recorded and
asked for again on every later start. Agents store the gateway endpoint at enrollment and cannot
learn a new one (and tokens name the API address), so a gRPC port taken at restart is an error
naming the file. The broker may move instead (EmbeddedNats `movable` picks a free port): agents
learn its URL from GetBrokers over the gateway API and follow it, so they stay connected.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from mssp.common.files import write_atomic

log = logging.getLogger(__name__)

LISTEN_FILE = "listen.json"
LISTENERS = ("grpc", "gateway", "nats", "api", "metrics")


class ListenState:
    """The ports of the last start, by listener name ("grpc", "gateway", "nats")."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LISTEN_FILE
        self.ports: dict[str, int] = {}
        self.kept: set[str] = set()  # listeners asked for a port from the file (not configured)

    def load(self) -> ListenState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return self
        except (OSError, ValueError) as exc:  # a damaged file only costs the stable ports
            log.warning("ignoring %s: %s", self.path, exc)
            return self
        if isinstance(data, dict):
            self.ports = {name: port for name, port in data.items()
                          if name in LISTENERS and isinstance(port, int) and 0 < port < 65536}
        return self

    def port(self, name: str, configured: int) -> int:
        """The port to bind: the configured one, else the one kept from the last start, else 0."""
        if configured or name not in self.ports:
            return configured
        self.kept.add(name)
        return self.ports[name]

    def what(self, name: str, description: str) -> str:
        """`description` of a listener for a bind error, saying where a kept port came from."""
        if name not in self.kept:
            return description
        return (f"{description}; port kept in {self.path} since the first start, so that enrolled "
                f"agents find the controller again: stop what holds it, or set {name}_listen")

    def record(self, name: str, port: int) -> None:
        self.ports[name] = port

    def save(self) -> None:
        if self.ports:
            write_atomic(self.path, (json.dumps(self.ports, indent=2, sort_keys=True) + "\n").encode(),
                         0o600)

