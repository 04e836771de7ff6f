"""Alembic environment: migrations run on the connection the server (or a test) hands over."""

from __future__ import annotations

from alembic import context

from mgmt.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through mgmt.db.database.Database.migrate(): it passes a connection")

# SQLite cannot ALTER most things in place: batch mode rebuilds tables for later migrations.
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
