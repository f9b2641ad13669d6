"""Key custody: `msspctl backup` / `msspctl restore`.

One encrypted archive holds what makes a controller *this* controller (CA, push-signing keys, NATS
operator/account keys, operator token, kept listener ports) plus a logical dump of its database, so a
lost host comes back without re-enrolling a single router. Layers, each its own module:
  crypto   passphrase -> scrypt key, AES-256-GCM in authenticated chunks (the file format)
  frames   the plaintext inside: a stream of (header, body) frames
  fileset  which data-dir files belong in a backup and how they are put back
  dbdump   a consistent, portable JSON-lines dump of every table and its load
  archive  backup() and restore(): the two operations the CLI calls
"""

from controller.backup.errors import BackupError

__all__ = ["BackupError"]
