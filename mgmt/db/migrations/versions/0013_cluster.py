"""several management servers: peers' ports and versions, shared login sessions, the change journal,
the cloud's CA in the database, jobs found by their instance (the sync queue across servers)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("management_servers") as batch:
        batch.add_column(sa.Column("peer_port", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("version", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("schema_revision", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("down_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("taken_over_by", sa.BigInteger(), nullable=True))
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(64), nullable=False),  # SHA-256 of the JSESSIONID
        sa.Column("key_hash", sa.String(64), nullable=False),  # SHA-256 of the session key
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_login_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index(op.f("ix_login_sessions_last_used"), "login_sessions", ["last_used"])
    op.create_table(
        "cluster_journal",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("msid", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_journal")),
    )
    op.create_index(op.f("ix_cluster_journal_created"), "cluster_journal", ["created"])
    op.create_index("ix_async_jobs_instance", "async_jobs", ["instance_type", "instance_id", "status"])
    op.create_table(
        "certificate_authority",
        sa.Column("id", sa.Integer(), nullable=False),  # always 1: the cloud has one CA
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_authority")),
    )


def downgrade() -> None:
    op.drop_table("certificate_authority")
    op.drop_index("ix_async_jobs_instance", table_name="async_jobs")
    op.drop_index(op.f("ix_cluster_journal_created"), table_name="cluster_journal")
    op.drop_table("cluster_journal")
    op.drop_index(op.f("ix_login_sessions_last_used"), table_name="login_sessions")
    op.drop_table("login_sessions")
    with op.batch_alter_table("management_servers") as batch:
        for column in ("taken_over_by", "down_since", "schema_revision", "version", "peer_port"):
            batch.drop_column(column)
