"""an isolated network offering with security groups

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 17:25:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OFFERING = "9b1e4d2c-7a35-4f60-b8e1-2c5d0a9f3e74"


def upgrade() -> None:
    offerings = sa.table(
        "network_offerings", sa.column("uuid", sa.String), sa.column("name", sa.String),
        sa.column("display_text", sa.String), sa.column("guest_type", sa.String),
        sa.column("isolation", sa.String), sa.column("security_groups", sa.Boolean),
        sa.column("state", sa.String), sa.column("created", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(offerings, [{
        "uuid": OFFERING, "name": "DefaultIsolatedNetworkOfferingWithSGService",
        "display_text": "Isolated, with security groups: an account's own VXLAN segment, each VM's traffic "
                        "filtered on its host by its groups' rules",
        "guest_type": "Isolated", "isolation": "vxlan", "security_groups": True, "state": "Enabled",
        "created": datetime.now(UTC),
    }])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM network_offerings WHERE uuid = :u").bindparams(u=OFFERING))
