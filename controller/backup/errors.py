"""The one error a backup or restore raises: its message is for the operator, as is."""

from __future__ import annotations


class BackupError(Exception):
    """A refused or failed backup/restore; nothing was written (or what was written was undone)."""


DAMAGED = "wrong passphrase or damaged archive"
