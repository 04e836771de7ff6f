"""projects: the projects and their members

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("display_text", sa.String(255), nullable=False, server_default=""),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="Active"),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], name=op.f("fk_projects_domain_id_domains")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_projects_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("uuid", name=op.f("uq_projects_uuid")),
        sa.UniqueConstraint("account_id", name=op.f("uq_projects_account_id")),
    )
    op.create_table(
        "project_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer()),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_project_accounts_project_id_projects")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_project_accounts_account_id_accounts")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_project_accounts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_accounts")),
    )
    op.create_index(op.f("ix_project_accounts_project_id"), "project_accounts", ["project_id"])
    op.create_index(op.f("ix_project_accounts_account_id"), "project_accounts", ["account_id"])


def downgrade() -> None:
    op.drop_table("project_accounts")
    op.drop_table("projects")
