"""Shared fixtures: modules under tests/support register here."""

import os

pytest_plugins = [
    "tests.support.controller_proc",
    "tests.support.fleet",
    "tests.support.nats",
    "tests.support.postgres",
]

# Controllers started by tests skip the PDF warm-up (controller/api/server.py): half a second of CPU
# per start, paid by hundreds of starts; tests/test_tenant_api_server.py runs it once on purpose.
os.environ.setdefault("MSSP_API_WARM_REPORTS", "false")
