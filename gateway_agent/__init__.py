"""The router agent. Its version is the installed package's, so a rebuilt wheel with a new version
reports that version (provisioning waits for it) without a second place to edit."""

from importlib import metadata

try:
    __version__ = metadata.version("mssp-gateway")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.1.0"
