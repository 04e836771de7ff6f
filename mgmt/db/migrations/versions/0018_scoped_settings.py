"""scoped settings: values of a setting for one zone, cluster, storage pool, domain or account; zone
details; networks' external ids

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "configuration_scoped",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.String(4096), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configuration_scoped")),
        sa.UniqueConstraint("scope", "scope_id", "name", name=op.f("uq_configuration_scoped_scope")),
    )
    with op.batch_alter_table("zones") as batch:
        batch.add_column(sa.Column("details", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("external_id", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("networks") as batch:
        batch.drop_column("external_id")
    with op.batch_alter_table("zones") as batch:
        batch.drop_column("details")
    op.drop_table("configuration_scoped")
