"""The one place that runs `nft`. Documents go in through stdin, never through argv or a shell.

Synchronous on purpose: the agent calls backends from a worker thread (asyncio.to_thread), and a
kernel transaction is one short-lived process anyway. An optional network namespace runs nft
through ``ip netns exec`` (tests and multi-namespace routers).

Reads are limited to ``list set <name>``: nft 1.0.6 filters its cache only for that command, while
``list counters``, ``list chain`` and ``-t list table`` fetch every element of every set first
(measured: ~30 s of kernel time with a 1M-element set).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from typing import Any

from gateway_agent.errors import AgentError
from gateway_agent.nft import FAMILY, TABLE

NETNS_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SET_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class NftError(AgentError):
    """nft refused a transaction or a read; nothing was changed by it."""


class NftRunner:
    def __init__(self, netns: str | None = None, *, binary: str = "nft", timeout: float = 600.0) -> None:
        if netns is not None and not NETNS_RE.fullmatch(netns):
            raise ValueError(f"invalid network namespace name {netns!r}")
        self.netns = netns
        self.binary = binary
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, self.binary, *args]

    def _run(self, args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(self.argv(*args), input=data, capture_output=True, timeout=self.timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"cannot run nft: {exc}") from exc

    def _transaction(self, args: list[str], data: bytes) -> None:
        proc = self._run(args, data)
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip()
            raise NftError(message[:2000] or f"nft exited with {proc.returncode}")

    def apply_json(self, doc: dict[str, Any], *, check_first: bool = True) -> None:
        """One transaction from a libnftables JSON document; `check_first` runs `nft -c` before."""
        data = json.dumps(doc, separators=(",", ":")).encode()
        if check_first:
            self._transaction(["-j", "-c", "-f", "-"], data)
        self._transaction(["-j", "-f", "-"], data)

    def apply_text(self, text: str, *, check_first: bool = False) -> None:
        """One transaction in nft syntax (big element lists; see native.to_native)."""
        data = text.encode()
        if check_first:
            self._transaction(["-c", "-f", "-"], data)
        self._transaction(["-f", "-"], data)

    def list_sets(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The sets (declaration and elements) among `names` that exist, in one nft process.

        `nft -j -i` runs each line as its own command (several `list` commands in one `-f` batch
        fail on nft 1.0.6) and prints one JSON document per line.
        """
        wanted = [n for n in names if _SET_NAME_RE.fullmatch(n)]
        if not wanted:
            return {}
        script = "".join(f"list set {FAMILY} {TABLE} {name}\n" for name in wanted).encode()
        proc = self._run(["-j", "-i"], script)
        out: dict[str, dict[str, Any]] = {}
        for line in proc.stdout.decode(errors="replace").splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for item in doc.get("nftables", []):
                body = item.get("set") if isinstance(item, dict) else None
                if isinstance(body, dict) and body.get("table") == TABLE and body.get("family") == FAMILY:
                    out[str(body.get("name"))] = body
        return out

    def delete_table(self) -> None:
        """Remove the agent's table if present (add-then-delete never fails on a missing table)."""
        table = {"family": FAMILY, "name": TABLE}
        self.apply_json({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]},
                        check_first=False)
