"""guest data: SSH key pairs, registered user data, and what a VM's config drive carries

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_keypairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_ssh_keypairs_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keypairs")),
        sa.UniqueConstraint("uuid", name=op.f("uq_ssh_keypairs_uuid")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_ssh_keypairs_account_id")),
        sa.UniqueConstraint("account_id", "fingerprint", name=op.f("uq_ssh_keypairs_account_id_fingerprint")),
    )
    op.create_table(
        "user_data",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_data", sa.Text(), nullable=False),
        sa.Column("params", sa.String(length=4096), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_user_data_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_data")),
        sa.UniqueConstraint("uuid", name=op.f("uq_user_data_uuid")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_user_data_account_id")),
    )
    with op.batch_alter_table("vms") as batch:
        batch.add_column(sa.Column("user_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("user_data_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("keypairs", sa.String(length=1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("ssh_public_keys", sa.Text(), nullable=False, server_default=""))
        batch.create_foreign_key(op.f("fk_vms_user_data_id_user_data"), "user_data", ["user_data_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("vms") as batch:
        batch.drop_constraint(op.f("fk_vms_user_data_id_user_data"), type_="foreignkey")
        batch.drop_column("ssh_public_keys")
        batch.drop_column("keypairs")
        batch.drop_column("user_data_id")
        batch.drop_column("user_data")
    op.drop_table("user_data")
    op.drop_table("ssh_keypairs")
