"""msspctl. gRPC's fork handlers are off for every process it starts (before grpc is imported): the
controller forks ansible-playbook through ansible-runner's pty, and gRPC's handlers restarting its
pollers in that child sometimes killed it before it could exec (the run failed with no exit code)."""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
