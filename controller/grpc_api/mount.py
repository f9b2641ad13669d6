"""The operator services that need only the service layer, mounted on the operator API server in one
place (the composition root, controller/app.py, stays about wiring)."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from controller.ca_set import CaSet
from controller.grpc_api.admin import AdminServicer
from controller.grpc_api.apikeys import ApiKeyServicer
from controller.grpc_api.billing import BillingServicer
from controller.grpc_api.enrollment import enrollment_token
from controller.grpc_api.intel import IntelServicer
from controller.grpc_api.provisioning import ProvisioningServicer
from controller.provisioning.records import ProvisioningRecords
from controller.provisioning.service import Provisioner, Site
from controller.service import ControllerService
from mssp.v1 import accounts_pb2_grpc, admin_pb2_grpc, intel_pb2_grpc, provisioning_pb2_grpc

PLAYBOOKS_ENV = "MSSP_PLAYBOOKS_DIR"


def playbooks_dir() -> Path:
    """playbooks/ beside the controller package (a source or editable install), or MSSP_PLAYBOOKS_DIR."""
    configured = os.environ.get(PLAYBOOKS_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "playbooks"


def provisioner(service: ControllerService, ca: CaSet, data_dir: Path, enroll_address: str,
                operator_api: str) -> Provisioner:
    """The wait step of a run calls this controller back with msspctl and the data dir's credential."""
    msspctl = Path(sys.executable).parent / "msspctl"
    command = [str(msspctl), "--data-dir", str(data_dir), "--controller", operator_api]
    site = Site(data_dir=data_dir, playbooks=playbooks_dir(), enroll_address=enroll_address,
                msspctl=shlex.join(command))
    return Provisioner(service.gateways, ProvisioningRecords(service.db), site,
                       token=lambda secret: enrollment_token(secret, ca), ca_pin=lambda: ca.fingerprint)


def mount_operator_services(api: grpc.aio.Server, service: ControllerService, digest: bytes, *,
                            on_change: Callable[[], None], provisioning: Provisioner,
                            on_revoke: Callable[[str], Awaitable[None]]) -> None:
    accounts_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyServicer(service, digest), api)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(service, digest), api)
    accounts_pb2_grpc.add_BillingServiceServicer_to_server(BillingServicer(service, digest), api)
    intel_pb2_grpc.add_IntelServiceServicer_to_server(
        IntelServicer(service, digest, on_change=on_change), api)
    provisioning_pb2_grpc.add_ProvisioningServiceServicer_to_server(
        ProvisioningServicer(service, digest, provisioning, on_revoke), api)
