"""isolated networks: network offerings, a network's owner and VXLAN id, the zones' VXLAN ranges

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 16:40:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SHARED_OFFERING = "a1a4b1a0-6d0e-4a9c-8a36-5b0c0f0e5a11"  # the id listNetworks has always shown
ISOLATED_OFFERING = "7f0e2c9a-3b1d-4e55-9a6c-0d2f8e4b1c37"


def upgrade() -> None:
    offerings = op.create_table(
        "network_offerings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("display_text", sa.String(length=4096), nullable=False),
        sa.Column("guest_type", sa.String(length=32), nullable=False),
        sa.Column("isolation", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_offerings")),
        sa.UniqueConstraint("name", name=op.f("uq_network_offerings_name")),
        sa.UniqueConstraint("uuid", name=op.f("uq_network_offerings_uuid")),
    )
    stamp = datetime.now(UTC)
    op.bulk_insert(offerings, [
        {"uuid": SHARED_OFFERING, "name": "DefaultSharedNetworkOffering",
         "display_text": "Shared: every account deploys on it; the hosts' bridge or VLAN", "guest_type": "Shared",
         "isolation": "", "state": "Enabled", "created": stamp},
        {"uuid": ISOLATED_OFFERING, "name": "DefaultIsolatedNetworkOffering",
         "display_text": "Isolated: an account's own network, a VXLAN segment; addresses from the config drive",
         "guest_type": "Isolated", "isolation": "vxlan", "state": "Enabled", "created": stamp},
    ])
    with op.batch_alter_table("zones") as batch:
        batch.add_column(sa.Column("vni_start", sa.Integer(), nullable=False, server_default="5000"))
        batch.add_column(sa.Column("vni_end", sa.Integer(), nullable=False, server_default="5999"))
    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("network_offering_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("vni", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("update_count", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_foreign_key(op.f("fk_networks_network_offering_id_network_offerings"), "network_offerings",
                                 ["network_offering_id"], ["id"])
        batch.create_foreign_key(op.f("fk_networks_account_id_accounts"), "accounts", ["account_id"], ["id"])
        batch.create_unique_constraint("uq_networks_zone_id_vni", ["zone_id", "vni"])


def downgrade() -> None:
    with op.batch_alter_table("networks") as batch:
        batch.drop_constraint("uq_networks_zone_id_vni", type_="unique")
        batch.drop_constraint(op.f("fk_networks_account_id_accounts"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_networks_network_offering_id_network_offerings"), type_="foreignkey")
        batch.drop_column("update_count")
        batch.drop_column("vni")
        batch.drop_column("account_id")
        batch.drop_column("network_offering_id")
    with op.batch_alter_table("zones") as batch:
        batch.drop_column("vni_end")
        batch.drop_column("vni_start")
    op.drop_table("network_offerings")
