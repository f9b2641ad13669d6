"""Which routers a run reaches and how: hosts.csv rows, SSH addresses, jump hosts, install prefixes.

A bad file is refused whole, naming its line, before anything runs: half a bulk run against a
customer's routers is worse than none."""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass

from controller.domain.errors import InvalidInput
from controller.domain.names import show, validate_gateway_name
from mssp.common.names import valid_domain

REQUIRED = ("name", "host")
OPTIONAL = ("port", "user", "prefix")
DEFAULT_USER = "root"
DEFAULT_PREFIX = "/opt/mssp-agent"
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.IGNORECASE)
_PREFIX = re.compile(r"/[A-Za-z0-9._/-]{0,254}")
MAX_HOSTS = 5000


@dataclass(frozen=True)
class Target:
    """One router to reach: the gateway it is, and its SSH address."""

    name: str
    host: str
    port: int = 22
    user: str = DEFAULT_USER
    prefix: str = DEFAULT_PREFIX

    @property
    def endpoint(self) -> str:
        """How known_hosts names it: bare host on port 22, else [host]:port."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def check_host(value: str) -> str:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if valid_domain(value.lower()):
        return value.lower()
    raise InvalidInput(f"host {show(value)} is not an IP address or a host name")


def check_port(value: str | int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"port {show(value)} is not a number") from None
    if not 0 < port < 65536:
        raise InvalidInput(f"port {port} is outside 1-65535")
    return port


def check_user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise InvalidInput(f"user {show(value)} is not a valid login name")
    return value


def check_prefix(value: str) -> str:
    """An absolute path without '..': the role removes it whole on decommission."""
    parts = value.split("/")
    system = ("", "/usr", "/etc", "/var", "/opt", "/home", "/root", "/tmp")
    if not _PREFIX.fullmatch(value) or ".." in parts or value.rstrip("/") in system:
        raise InvalidInput(f"prefix {show(value)} must be an absolute path of its own (not a system "
                           "directory, no '..')")
    return value.rstrip("/")


def check_private_key(key: bytes) -> None:
    if b"PRIVATE KEY-----" not in key:
        raise InvalidInput("the SSH key is not a private key in OpenSSH or PEM format")


def target(name: str, host: str, port: str | int = 22, user: str = DEFAULT_USER,
           prefix: str = DEFAULT_PREFIX) -> Target:
    return Target(validate_gateway_name(name), check_host(host), check_port(port), check_user(user),
                  check_prefix(prefix))


@dataclass(frozen=True)
class Jump:
    """A bastion the SSH connection goes through (routers usually sit behind NAT)."""

    user: str
    host: str
    port: int = 22

    @property
    def endpoint(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_jump(text: str) -> Jump | None:
    """USER@HOST[:PORT]; an IPv6 host in brackets. Empty: no jump host."""
    if not text:
        return None
    user, at, rest = text.rpartition("@")
    if not at or not user:
        raise InvalidInput(f"jump host {show(text)} must be USER@HOST[:PORT]")
    host, port = rest, "22"
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else "22"
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    return Jump(check_user(user), check_host(host), check_port(port))


def parse_hosts_csv(text: str) -> list[Target]:
    """Rows of name, host[, port, user, prefix] under a header; every mistake names its line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    found: list[Target] = []
    names: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            missing = [c for c in REQUIRED if c not in header]
            unknown = [c for c in header if c not in (*REQUIRED, *OPTIONAL)]
            if missing:
                raise InvalidInput(f"line {line}: the header has no {missing[0]!r} column (columns: name, "
                                   "host, and optionally port, user, prefix)")
            if unknown:
                raise InvalidInput(f"line {line}: unknown column {show(unknown[0])} (columns: name, host, "
                                   "port, user, prefix)")
            continue
        if len(row) != len(header):
            raise InvalidInput(f"line {line}: {len(row)} fields, the header has {len(header)}")
        cells = {k: v.strip() for k, v in zip(header, row, strict=True) if v.strip()}
        try:
            t = target(cells.get("name", ""), cells.get("host", ""), cells.get("port", 22),
                       cells.get("user", DEFAULT_USER), cells.get("prefix", DEFAULT_PREFIX))
        except InvalidInput as exc:
            raise InvalidInput(f"line {line}: {exc}") from None
        if t.name in names:
            raise InvalidInput(f"line {line}: gateway name {t.name!r} is already on line {names[t.name]}")
        if (t.host, t.port) in endpoints:
            raise InvalidInput(f"line {line}: {t.host}:{t.port} is already on line "
                               f"{endpoints[(t.host, t.port)]}")
        names[t.name], endpoints[(t.host, t.port)] = line, line
        found.append(t)
        if len(found) > MAX_HOSTS:
            raise InvalidInput(f"more than {MAX_HOSTS} hosts in one file: split it")
    if header is None:
        raise InvalidInput("the file is empty: give a header (name,host,port,user) and one row per router")
    if not found:
        raise InvalidInput("the file has a header but no routers")
    return found
