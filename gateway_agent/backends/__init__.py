"""Enforcement backends; `make_backend` is the one place a backend is chosen by its name."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from gateway_agent.backends.base import BackendError, EnforcementBackend

BACKENDS = ("recording", "nft")


def nft_available() -> bool:
    """True where the nft backend can run: Linux, root, `nft` on PATH (the CLI's default then)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("nft") is not None


def make_backend(kind: str, state_dir: Path) -> EnforcementBackend:
    """The backend `kind` for the agent whose state dir is `state_dir`; BackendError if unusable."""
    if kind == "recording":
        from gateway_agent.backends.recording import RecordingBackend

        return RecordingBackend(state_dir / "recording")
    if kind == "nft":
        # Imported on demand: only a Linux router with nftables needs it.
        from gateway_agent.backends.nft import make_nft_backend

        try:
            return make_nft_backend(state_dir)
        except ValueError as exc:
            raise BackendError(f"nft backend: {exc}") from exc
    raise BackendError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}")
