"""Finding and calling the controller: address, credential and CA from flags, env or the data dir.

Every failure becomes a CliError with one line an operator can act on; gRPC errors are mapped
here so no command has to think about status codes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import typer

from controller.config import default_data_dir
from mssp.v1 import (
    accounts_pb2_grpc,
    admin_pb2_grpc,
    intel_pb2_grpc,
    operator_pb2_grpc,
    provisioning_pb2_grpc,
)

DEFAULT_TIMEOUT = 15.0

# The operator-authenticated services msspctl calls, by the name `call(..., service=)` takes.
STUBS: dict[str, Any] = {
    "OperatorService": operator_pb2_grpc.OperatorServiceStub,
    "ApiKeyService": accounts_pb2_grpc.ApiKeyServiceStub,
    "BillingService": accounts_pb2_grpc.BillingServiceStub,
    "IntelService": intel_pb2_grpc.IntelServiceStub,
    "AdminService": admin_pb2_grpc.AdminServiceStub,
    "ProvisioningService": provisioning_pb2_grpc.ProvisioningServiceStub,
}


class CliError(Exception):
    """A one-line message for stderr; main() prints it as `error: ...` and exits 1. `problems`:
    each mistake of a request that had several (printed as JSON too under `-o json`)."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def problems_of(exc: grpc.RpcError) -> tuple[str, ...]:
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "mssp-problems-bin":
            try:
                found = json.loads(value)
            except ValueError:
                return ()
            return tuple(str(p) for p in found) if isinstance(found, list) else ()
    return ()


@dataclass(frozen=True)
class Options:
    """Global flags as given on the command line (None = not given)."""

    data_dir: Path | None = None
    controller: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Target:
    address: str
    token: str
    token_source: str
    ca_pem: bytes
    timeout: float
    server_name: str | None = None


def resolve_data_dir(flag: Path | None) -> Path:
    if flag is not None:
        return flag
    env = os.environ.get("MSSP_DATA_DIR")
    return Path(env) if env else default_data_dir()


def resolve_timeout(flag: float | None) -> float:
    if flag is not None:
        value: float | str = flag
    else:
        value = os.environ.get("MSSP_TIMEOUT", "").strip() or DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise CliError(f"MSSP_TIMEOUT={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise CliError(f"timeout must be a positive number of seconds, got {value}")
    return seconds


def resolve_address(flag: str | None, data_dir: Path) -> str:
    address = flag or os.environ.get("MSSP_CONTROLLER", "").strip()
    if address:
        return address
    runtime = data_dir / "controller.json"
    try:
        info = json.loads(runtime.read_text())
    except FileNotFoundError:
        raise CliError(
            f"{runtime} not found: no controller has run with this data dir "
            "(start one with `msspctl server run`, or pass --controller HOST:PORT / set MSSP_CONTROLLER)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {runtime}: {_one_line(exc)} (pass --controller HOST:PORT)") from None
    grpc_address = info.get("grpc") if isinstance(info, dict) else None
    if not isinstance(grpc_address, str) or not grpc_address:
        raise CliError(f"{runtime} has no \"grpc\" address (pass --controller HOST:PORT)")
    return grpc_address


def resolve_token(data_dir: Path) -> tuple[str, str]:
    """The operator token and where it came from (named in 'credential rejected' errors)."""
    env = os.environ.get("MSSP_OPERATOR_TOKEN", "").strip()
    if env:
        return env, "MSSP_OPERATOR_TOKEN"
    named = os.environ.get("MSSP_OPERATOR_TOKEN_FILE", "").strip()
    path = Path(named) if named else data_dir / "operator.token"
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise CliError(
            f"operator token file {path} not found (the controller writes it on first start; "
            "use the controller's --data-dir or set MSSP_OPERATOR_TOKEN)"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read operator token file {path}: {_one_line(exc)}") from None
    if not token:
        raise CliError(f"operator token file {path} is empty (set MSSP_OPERATOR_TOKEN or restore the file)")
    return token, str(path)


def resolve_ca(data_dir: Path) -> bytes:
    env = os.environ.get("MSSP_CA_CERT", "").strip()
    path = Path(env) if env else data_dir / "pki" / "ca.crt"
    hint = "check MSSP_CA_CERT" if env else "copy the controller's pki/ca.crt and set MSSP_CA_CERT=PATH"
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"CA certificate {path} not found ({hint})") from None
    except OSError as exc:
        raise CliError(f"cannot read CA certificate {path}: {_one_line(exc)} ({hint})") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise CliError(f"CA certificate {path} is not a PEM certificate ({hint})")
    return pem


def resolve_target(opts: Options) -> Target:
    data_dir = resolve_data_dir(opts.data_dir)
    address = resolve_address(opts.controller, data_dir)
    token, source = resolve_token(data_dir)
    return Target(
        address=address,
        token=token,
        token_source=source,
        ca_pem=resolve_ca(data_dir),
        timeout=resolve_timeout(opts.timeout),
        server_name=os.environ.get("MSSP_TLS_SERVER_NAME", "").strip() or None,
    )


class OperatorClient:
    """Blocking OperatorService stub with the credential and a deadline on every call."""

    def __init__(self, target: Target, service: str = "OperatorService") -> None:
        self.target = target
        options: list[tuple[str, Any]] = []
        if target.server_name:
            options.append(("grpc.ssl_target_name_override", target.server_name))
        creds = grpc.ssl_channel_credentials(root_certificates=target.ca_pem)
        self._channel = grpc.secure_channel(target.address, creds, options=options)
        self._stub = STUBS[service](self._channel)
        self._metadata = (("authorization", f"Bearer {target.token}"),)

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=timeout or self.target.timeout
            )
        except grpc.RpcError as exc:
            raise CliError(describe_rpc_error(exc, self.target), problems_of(exc)) from None

    def stream(self, method: str, request: Any, *, timeout: float | None = None) -> Iterator[Any]:
        """A server-streaming call, read inside the channel's lifetime; errors mapped as call's."""
        try:
            yield from getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=timeout or self.target.timeout
            )
        except grpc.RpcError as exc:
            raise CliError(describe_rpc_error(exc, self.target), problems_of(exc)) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_rpc_error(exc: grpc.RpcError, target: Target) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = _one_line(exc.details() if hasattr(exc, "details") else "") or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"cannot reach the controller at {target.address}: {details} "
            "(is `msspctl server run` running?)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"the controller at {target.address} did not answer within {target.timeout:g}s "
            "(is it overloaded or behind a firewall? raise MSSP_TIMEOUT to wait longer)"
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"{details} (operator token from {target.token_source})"
    return details


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def call(ctx: typer.Context, method: str, request: Any, *, service: str = "OperatorService",
         timeout: float | None = None) -> Any:
    """One RPC with the global flags of this invocation; the channel lives only for the call.
    `timeout` is a floor for calls that take long by nature (a large import)."""
    opts = ctx.find_object(Options) or Options()
    with OperatorClient(resolve_target(opts), service) as client:
        return client.call(method, request, timeout=max(timeout or 0, client.target.timeout))


def stream(ctx: typer.Context, method: str, request: Any, *, service: str,
           timeout: float = 600.0) -> Iterator[Any]:
    opts = ctx.find_object(Options) or Options()
    with OperatorClient(resolve_target(opts), service) as client:
        yield from client.stream(method, request, timeout=max(timeout, client.target.timeout))


def controller_address(ctx: typer.Context) -> str:
    """The API address this invocation dials; also what a router's agent should enroll against."""
    opts = ctx.find_object(Options) or Options()
    return resolve_address(opts.controller, resolve_data_dir(opts.data_dir))
