"""Shared fixtures: modules under tests/support register here."""

pytest_plugins = [
    "tests.support.controller_proc",
    "tests.support.fleet",
    "tests.support.nats",
    "tests.support.postgres",
]
