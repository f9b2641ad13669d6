"""The NATS credentials file format (`.creds`), written by the controller and by an enrolling agent."""

from __future__ import annotations


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
