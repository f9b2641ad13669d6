"""Alembic environment: runs on the engine the Database hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import controller.store.account_models
import controller.store.intel_models
import controller.store.models
import controller.store.operator_models
import controller.store.policy_models
import controller.store.provisioning_models
import controller.store.sighting_models
import controller.telemetry.models  # noqa: F401

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    context.run_migrations()
