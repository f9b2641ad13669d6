"""Broker-enforced NATS auth: the controller is the NATS operator and mints every JWT itself.

nats-server runs in operator mode and trusts only our operator key. The product lives in one account
("MSSP"); each gateway gets a user JWT whose publish/subscribe allow lists pin it to its own tenant
subjects, so tenant isolation is enforced by the broker, not by the agents' good manners. A gateway is
cut off at runtime by re-issuing the account JWT with the user's key under `revocations` and pushing it
through the system account.

JWT format (nats-io/jwt v2): header {"typ":"JWT","alg":"ed25519-nkey"}; base64url without padding;
`jti` is base32 (no padding) of SHA-512/256 over the standard claims with `jti` empty; the signature is
Ed25519 by the issuer nkey over "header.claims".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
from nats.aio.client import Client as NatsClient

from controller.domain.errors import BrokerUnavailable, InvalidInput
from controller.pki import CLIENT_VALIDITY
from mssp.common.channels import (
    ALLIANCE_CHANNEL,
    GLOBAL_CHANNEL,
    PUSH_PREFIX,
    TELEMETRY_PREFIX,
    channel_subject,
    tenant_channel,
)
from mssp.common.creds import creds_file_text
from mssp.common.files import write_private

ACCOUNT_NAME = "MSSP"
SYSTEM_ACCOUNT_NAME = "SYS"
OPERATOR_NAME = "mssp-operator"
CLAIMS_UPDATE_SUBJECT = "$SYS.REQ.CLAIMS.UPDATE"
MAX_PAYLOAD = 1024 * 1024
UPDATE_TIMEOUT = 5.0
NO_LIMIT = -1
# What a gateway connection may hold (the broker enforces subs and payload per connection; `data` is
# carried for brokers that honour it). The agent needs 4 subscriptions (global, tenant, alliance, the
# request inbox of its JetStream publishes); payload is its largest batch (collector MAX_BATCH_BYTES, 900 KiB)
# plus headers. Without these, 5,000 subscriptions turned one 64 KiB push into 66 MiB of deliveries.
GATEWAY_MAX_SUBS = 8
GATEWAY_MAX_PAYLOAD = 900 * 1024 + 8 * 1024
GATEWAY_MAX_DATA = 16 * 1024 * 1024
GATEWAY_JWT_LIFETIME = CLIENT_VALIDITY  # the gateway certificate's, until the agent renews both

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
SYNC_ALWAYS = "always"
_SYNC_INTERVAL = re.compile(r"always|[1-9][0-9]{0,8}(ms|s|m|h)")
_SEED_FILES = {
    "operator": ("operator.nk", nkeys.PREFIX_BYTE_OPERATOR),
    "account": ("account_mssp.nk", nkeys.PREFIX_BYTE_ACCOUNT),
    "system": ("account_sys.nk", nkeys.PREFIX_BYTE_ACCOUNT),
    "controller_user": ("user_controller.nk", nkeys.PREFIX_BYTE_USER),
    "system_user": ("user_system.nk", nkeys.PREFIX_BYTE_USER),
}


class ClaimsUpdateFailed(BrokerUnavailable):
    """The broker refused or did not acknowledge an account JWT update (a broker failure, not a
    domain error: UNAVAILABLE should it ever reach an RPC)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def encode_jwt(
    issuer: nkeys.KeyPair, *, subject: str, name: str, nats: dict[str, Any], expires_at: int | None = None,
    issued_at: int | None = None,
) -> str:
    """Sign a NATS v2 JWT the way nats-io/jwt does (see module docstring). With `issued_at` the same
    claims give the same JWT (Ed25519 signatures are deterministic)."""
    base: dict[str, Any] = {}
    if expires_at is not None:
        base["exp"] = int(expires_at)
    base["iat"] = int(time.time()) if issued_at is None else int(issued_at)
    base["iss"] = issuer.public_key.decode()
    base["name"] = name
    base["sub"] = subject
    # jti: hash of the standard claims as Go marshals them (field order exp, jti, iat, iss, name, sub).
    jti = base64.b32encode(hashlib.new("sha512_256", _compact(base)).digest()).rstrip(b"=").decode()
    claims = {"jti": jti, **base, "nats": nats}
    signing_input = f"{_b64(_compact(_HEADER))}.{_b64(_compact(claims))}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """Claims of a JWT without verifying it (for inspection and tests)."""
    try:
        part = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as exc:
        raise InvalidInput("not a NATS JWT") from exc


def new_user_seed() -> bytes:
    """A fresh NATS user nkey seed."""
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


def public_key_of(seed: bytes) -> str:
    return nkeys.from_seed(seed).public_key.decode()


def check_user_public_key(public_key: str) -> str:
    """A NATS user public key ("U..." with a valid checksum), or a one-line InvalidInput."""
    bad = InvalidInput(f"not a NATS user public key: {str(public_key)[:60]!r}")
    if not isinstance(public_key, str) or len(public_key) != 56 or not public_key.startswith("U"):
        raise bad
    try:
        raw = base64.b32decode(public_key)
    except ValueError as exc:
        raise bad from exc
    if raw[0] != nkeys.PREFIX_BYTE_USER or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise bad
    return public_key


def check_subject_token(value: str, what: str) -> str:
    """IDs become subject tokens: a '.', '*' or '>' in one would widen a permission."""
    if not isinstance(value, str) or not _SUBJECT_TOKEN.fullmatch(value):
        raise InvalidInput(f"{what} {value!r} cannot be used in a NATS subject")
    return value


def gateway_inbox_prefix(gateway_id: str) -> str:
    """The gateway's private reply-inbox prefix; the agent passes it as nats.connect(inbox_prefix=...)."""
    return f"_INBOX_{check_subject_token(gateway_id, 'gateway id')}"


def gateway_telemetry_subject(tenant_id: str, gateway_id: str) -> str:
    """The one subject a gateway publishes its telemetry batches to (the agent's batch_subject)."""
    tenant = check_subject_token(tenant_id, "tenant id")
    return f"{TELEMETRY_PREFIX}.{tenant}.{check_subject_token(gateway_id, 'gateway id')}.batch"


def _load_or_create_seed(path: Path, prefix: int) -> nkeys.KeyPair:
    if not path.exists():
        write_private(path, nkeys.encode_seed(os.urandom(32), prefix))
    seed = path.read_bytes().strip()
    try:
        got, _ = nkeys.decode_seed(seed)
        pair = nkeys.from_seed(seed)
    except (nkeys.NkeysError, ValueError) as exc:
        raise InvalidInput(f"{path}: not a NATS nkey seed") from exc
    if got != prefix:
        raise InvalidInput(f"{path}: nkey seed of the wrong kind")
    return pair


def _limits(*, jetstream: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {
        "subs": NO_LIMIT, "data": NO_LIMIT, "payload": NO_LIMIT,
        "imports": NO_LIMIT, "exports": NO_LIMIT, "wildcards": True, "conn": NO_LIMIT, "leaf": NO_LIMIT,
    }
    if jetstream:  # absent (0) JetStream limits mean JetStream is disabled for the account
        limits.update(mem_storage=NO_LIMIT, disk_storage=NO_LIMIT, streams=NO_LIMIT, consumer=NO_LIMIT)
    return limits


@dataclass(frozen=True)
class NatsIdentity:
    """The controller's NATS key material (seed files in one 0700 directory) and its JWT minting."""

    directory: Path
    operator: nkeys.KeyPair
    account: nkeys.KeyPair
    system: nkeys.KeyPair
    controller_user: nkeys.KeyPair
    system_user: nkeys.KeyPair

    @classmethod
    def load_or_create(cls, directory: Path) -> NatsIdentity:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        pairs = {
            role: _load_or_create_seed(directory / filename, prefix)
            for role, (filename, prefix) in _SEED_FILES.items()
        }
        return cls(directory=directory, **pairs)

    # -- public keys ---------------------------------------------------------------------------------

    @property
    def operator_public_key(self) -> str:
        return self.operator.public_key.decode()

    @property
    def account_public_key(self) -> str:
        return self.account.public_key.decode()

    @property
    def system_account_public_key(self) -> str:
        return self.system.public_key.decode()

    # -- JWTs ----------------------------------------------------------------------------------------

    def operator_jwt(self) -> str:
        nats = {"system_account": self.system_account_public_key, "type": "operator", "version": 2}
        return encode_jwt(self.operator, subject=self.operator_public_key, name=OPERATOR_NAME, nats=nats)

    def account_jwt(self, revocations: Mapping[str, int] | None = None) -> str:
        """The MSSP account; `revocations` maps user public key -> unix time (JWTs issued up to then die)."""
        nats: dict[str, Any] = {"limits": _limits(jetstream=True)}
        if revocations:
            nats["revocations"] = {check_user_public_key(k): int(v) for k, v in revocations.items()}
        nats.update(default_permissions={"pub": {}, "sub": {}}, type="account", version=2)
        return encode_jwt(self.operator, subject=self.account_public_key, name=ACCOUNT_NAME, nats=nats)

    def system_account_jwt(self) -> str:
        nats = {
            "limits": _limits(jetstream=False),
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        }
        return encode_jwt(
            self.operator, subject=self.system_account_public_key, name=SYSTEM_ACCOUNT_NAME, nats=nats
        )

    def mint_user_jwt(
        self,
        user_public_key: str,
        *,
        name: str,
        pub_allow: list[str],
        sub_allow: list[str],
        expires_at: int | None = None,
        issuer: nkeys.KeyPair | None = None,
        limits: tuple[int, int, int] = (NO_LIMIT, NO_LIMIT, NO_LIMIT),
        issued_at: int | None = None,
    ) -> str:
        """A user of the MSSP account (or of `issuer`'s account) limited to the given allow lists and
        `limits` (subscriptions, data bytes, payload bytes)."""
        nats = {
            "pub": {"allow": list(pub_allow)},
            "sub": {"allow": list(sub_allow)},
            "subs": limits[0],
            "data": limits[1],
            "payload": limits[2],
            "type": "user",
            "version": 2,
        }
        return encode_jwt(
            issuer or self.account,
            subject=check_user_public_key(user_public_key),
            name=name,
            nats=nats,
            expires_at=expires_at,
            issued_at=issued_at,
        )

    def gateway_user_jwt(
        self, user_public_key: str, tenant_id: str, gateway_id: str, *, expires_at: int | None = None,
        alliance: bool = False, issued_at: int | None = None,
    ) -> str:
        """What an enrolled gateway may do: read global + own-tenant pushes (and alliance pushes when
        its tenant shares), publish own telemetry.

        JetStream publishes are requests: the PubAck comes to the reply inbox, which is why the agent
        uses a private inbox prefix (see gateway_inbox_prefix) instead of the shared `_INBOX.>`.
        Telemetry goes to exactly one subject per gateway, which is what the stream's per-subject
        limit counts (see telemetry/consumer.py). Expires after GATEWAY_JWT_LIFETIME by default.
        """
        check_subject_token(tenant_id, "tenant id")
        inbox = gateway_inbox_prefix(gateway_id)
        if expires_at is None:
            expires_at = int(time.time() + GATEWAY_JWT_LIFETIME.total_seconds())
        return self.mint_user_jwt(
            user_public_key,
            name=f"gateway {gateway_id}",
            pub_allow=[gateway_telemetry_subject(tenant_id, gateway_id)],
            sub_allow=[
                channel_subject(GLOBAL_CHANNEL),
                channel_subject(tenant_channel(tenant_id)),
                *([channel_subject(ALLIANCE_CHANNEL)] if alliance else []),
                f"{inbox}.>",
            ],
            expires_at=expires_at,
            limits=(GATEWAY_MAX_SUBS, GATEWAY_MAX_DATA, GATEWAY_MAX_PAYLOAD),
            issued_at=issued_at,
        )

    def controller_user_jwt(self) -> str:
        return self.mint_user_jwt(
            self.controller_user.public_key.decode(),
            name="mssp-controller",
            # JetStream management and pull consumers: $JS.API requests, $JS.ACK acks, $JS.FC flow control.
            pub_allow=[f"{PUSH_PREFIX}.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"],
            sub_allow=["mssp.>", "_INBOX.>", "$JS.>"],
        )

    def controller_creds(self) -> str:
        return creds_file_text(self.controller_user_jwt(), bytes(self.controller_user.seed))

    def system_creds(self) -> str:
        """A SYS-account user, used to push account JWT updates to the broker."""
        jwt = self.mint_user_jwt(
            self.system_user.public_key.decode(),
            name="mssp-system",
            pub_allow=[">"],
            sub_allow=[">"],
            issuer=self.system,
        )
        return creds_file_text(jwt, bytes(self.system_user.seed))

    # -- server configuration ------------------------------------------------------------------------

    def server_config(
        self,
        *,
        host: str,
        port: int,
        store_dir: Path | None = None,
        resolver_dir: Path | None = None,
        revocations: Mapping[str, int] | None = None,
        tls_block: Sequence[str] = (),
        sync_interval: str | None = SYNC_ALWAYS,
    ) -> str:
        """nats.conf trusting only this operator (also printed by `msspctl nats config`).

        The full resolver stores account JWTs on disk and accepts signed updates at runtime; the
        preload seeds it, and is ignored for an account whose stored JWT is newer. `tls_block` comes
        from controller.nats.tls. `sync_interval` "always": JetStream fsyncs before it acks, so acked
        telemetry survives a crash of the broker's host (None: the server's 2-minute default).
        """
        if not 0 <= port <= 65535:
            raise InvalidInput(f"port {port} is out of range")
        if sync_interval is not None and not _SYNC_INTERVAL.fullmatch(sync_interval):
            raise InvalidInput(f"JetStream sync interval {sync_interval!r} is not 'always' or a duration")
        store_dir = store_dir or self.directory / "jetstream"
        resolver_dir = resolver_dir or self.directory / "jwt"
        q = json.dumps  # NATS conf accepts JSON-quoted strings
        return "\n".join([
            "# nats-server configuration generated by the MSSP controller (operator mode).",
            "# Only JWTs signed by this controller's operator key are accepted.",
            f"host: {q(host)}",
            f"port: {port}",
            f"max_payload: {MAX_PAYLOAD}",
            "",
            f"operator: {q(self.operator_jwt())}",
            f"system_account: {q(self.system_account_public_key)}",
            "",
            "resolver: {",
            "  type: full",
            f"  dir: {q(str(resolver_dir))}",
            "  allow_delete: false",
            '  interval: "2m"',
            "}",
            "resolver_preload: {",
            f"  # account {ACCOUNT_NAME}",
            f"  {self.account_public_key}: {q(self.account_jwt(revocations))}",
            f"  # account {SYSTEM_ACCOUNT_NAME}",
            f"  {self.system_account_public_key}: {q(self.system_account_jwt())}",
            "}",
            "",
            "jetstream: {",
            f"  store_dir: {q(str(store_dir))}",
            *([f"  sync_interval: {sync_interval}"] if sync_interval is not None else []),
            "}",
            "",
            *([*tls_block, ""] if tls_block else []),
        ])


async def push_account_update(nc_system: NatsClient, account_jwt: str) -> None:
    """Hand an updated account JWT to the broker (system account connection) and check its answer."""
    reply = await nc_system.request(CLAIMS_UPDATE_SUBJECT, account_jwt.encode(), timeout=UPDATE_TIMEOUT)
    try:
        body = json.loads(reply.data)
    except ValueError as exc:
        raise ClaimsUpdateFailed(f"unreadable claims update reply: {reply.data[:200]!r}") from exc
    error = body.get("error")
    data = body.get("data") or {}
    if error or data.get("code") != 200:
        detail = (error or {}).get("description") or data.get("message") or reply.data[:200]
        raise ClaimsUpdateFailed(f"broker refused the account update: {detail}")
