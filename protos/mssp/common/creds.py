"""The NATS credentials file format (`.creds`), written by the controller and by an enrolling agent."""

from __future__ import annotations

import base64
import json


def creds_file_text(user_jwt: str, seed: bytes) -> str:
    """The standard .creds format read by nats-py's `user_credentials=` and the nats CLI."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def parse_creds_file(text: str) -> tuple[str, bytes]:
    """(user JWT, seed) of a `.creds` file; ValueError when it does not hold both."""
    blocks: dict[str, str] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("-----BEGIN ") and i + 1 < len(lines):
            blocks[line.strip("-").removeprefix("BEGIN ").strip()] = lines[i + 1].strip()
    jwt, seed = blocks.get("NATS USER JWT", ""), blocks.get("USER NKEY SEED", "")
    if not jwt or not seed:
        raise ValueError("not a NATS credentials file (no JWT or no seed)")
    return jwt, seed.encode()


def jwt_subject(user_jwt: str) -> str:
    """The `sub` claim of a JWT, unverified (the caller knows where it came from); ValueError else."""
    parts = user_jwt.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a JWT: {exc}") from exc
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str):
        raise ValueError("the JWT names no subject")
    return sub
