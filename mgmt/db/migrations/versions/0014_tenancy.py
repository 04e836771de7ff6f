"""tenancy: resource limits of accounts and domains; VMs found by their account

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_type", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("max", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_limits")),
        sa.UniqueConstraint("owner_type", "owner_id", "type",
                            name=op.f("uq_resource_limits_owner_type")),
    )


    op.create_index("ix_vms_account", "vms", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_vms_account", table_name="vms")
    op.drop_table("resource_limits")
