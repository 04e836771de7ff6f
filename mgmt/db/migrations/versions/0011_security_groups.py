"""security groups: groups, their rules, their VMs; a network offering with security groups

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SG_OFFERING = "3c6d7e1f-52a9-4b0e-8f14-6a2b9d0c7e58"


def upgrade() -> None:
    with op.batch_alter_table("network_offerings") as batch:
        batch.add_column(sa.Column("security_groups", sa.Boolean(), nullable=False, server_default=sa.false()))
    offerings = sa.table(
        "network_offerings", sa.column("uuid", sa.String), sa.column("name", sa.String),
        sa.column("display_text", sa.String), sa.column("guest_type", sa.String),
        sa.column("isolation", sa.String), sa.column("security_groups", sa.Boolean),
        sa.column("state", sa.String), sa.column("created", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(offerings, [{
        "uuid": SG_OFFERING, "name": "DefaultSharedNetworkOfferingWithSGService",
        "display_text": "Shared, with security groups: each VM's traffic filtered on its host by its groups' rules",
        "guest_type": "Shared", "isolation": "", "security_groups": True, "state": "Enabled",
        "created": datetime.now(UTC),
    }])
    op.create_table(
        "security_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=4096), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_security_groups_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_security_groups_uuid")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_security_groups_account_id")),
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=True),
        sa.Column("end_port", sa.Integer(), nullable=True),
        sa.Column("icmp_type", sa.Integer(), nullable=True),
        sa.Column("icmp_code", sa.Integer(), nullable=True),
        sa.Column("cidr", sa.String(length=64), nullable=True),
        sa.Column("source_group_id", sa.Integer(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"],
                                name=op.f("fk_security_group_rules_group_id_security_groups")),
        sa.ForeignKeyConstraint(["source_group_id"], ["security_groups.id"],
                                name=op.f("fk_security_group_rules_source_group_id_security_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_group_rules")),
        sa.UniqueConstraint("uuid", name=op.f("uq_security_group_rules_uuid")),
    )
    op.create_index("ix_security_group_rules_group", "security_group_rules", ["group_id"])
    op.create_table(
        "security_group_vms",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["security_groups.id"],
                                name=op.f("fk_security_group_vms_group_id_security_groups")),
        sa.ForeignKeyConstraint(["vm_id"], ["vms.id"], name=op.f("fk_security_group_vms_vm_id_vms")),
        sa.PrimaryKeyConstraint("group_id", "vm_id", name=op.f("pk_security_group_vms")),
    )


def downgrade() -> None:
    op.drop_table("security_group_vms")
    op.drop_index("ix_security_group_rules_group", table_name="security_group_rules")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
    op.execute(sa.text("DELETE FROM network_offerings WHERE uuid = :u").bindparams(u=SG_OFFERING))
    with op.batch_alter_table("network_offerings") as batch:
        batch.drop_column("security_groups")
