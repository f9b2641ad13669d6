"""status.json: what `mssp-agent status` and a person on the router read. The agent only writes it;
nothing reads it back, so it is never a source of truth."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

STATUS_FILE = "status.json"


def write_status_file(state_dir: Path, status: dict[str, object]) -> None:
    """Atomic replace with a per-thread temp name: two writes may overlap, neither leaves a torn file."""
    path = state_dir / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(status, indent=2))
    os.replace(tmp, path)
