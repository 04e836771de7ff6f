"""api fidelity: offering and volume disk tuning, custom offerings, VM details, groups and display flag,
template and zone attributes, pool details, VM statistics

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 21:30:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _disk_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("provisioning_type", sa.String(16), nullable=False, server_default="thin"),
        sa.Column("cache_mode", sa.String(16), nullable=False, server_default="none"),
        sa.Column("iotune", sa.Text(), nullable=False, server_default="{}"),
    ]


def upgrade() -> None:
    op.create_table(
        "instance_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_instance_groups_account_id_accounts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_groups")),
        sa.UniqueConstraint("uuid", name=op.f("uq_instance_groups_uuid")),
    )
    op.create_table(
        "vm_stats",
        sa.Column("vm_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("collected", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("cpu_time_ns", sa.BigInteger(), nullable=False),
        sa.Column("cpu_utilization", sa.Float(), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in (
            "memory_kbs", "memory_free_kbs", "memory_target_kbs", "disk_read_bytes", "disk_write_bytes",
            "disk_read_ios", "disk_write_ios", "net_rx_bytes", "net_tx_bytes")],
        sa.ForeignKeyConstraint(["vm_id"], ["vms.id"], name=op.f("fk_vm_stats_vm_id_vms")),
        sa.PrimaryKeyConstraint("vm_id", name=op.f("pk_vm_stats")),
    )
    op.create_table(
        "resource_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_uuid", sa.String(36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(255)),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_tags")),
        sa.UniqueConstraint("uuid", name=op.f("uq_resource_tags_uuid")),
        sa.UniqueConstraint("resource_type", "resource_uuid", "key", name="uq_resource_tags_resource"),
    )
    op.create_index("ix_resource_tags_lookup", "resource_tags", ["resource_type", "key", "value"])
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("timezone", sa.String(64)))
    with op.batch_alter_table("pods") as b:
        b.add_column(sa.Column("start_ip", sa.String(64)))
        b.add_column(sa.Column("end_ip", sa.String(64)))
    with op.batch_alter_table("hosts") as b:
        b.add_column(sa.Column("annotation", sa.String(4096)))
    with op.batch_alter_table("zones") as b:
        b.add_column(sa.Column("internal_dns1", sa.String(64)))
        b.add_column(sa.Column("internal_dns2", sa.String(64)))
        b.add_column(sa.Column("guest_cidr", sa.String(64)))
        b.add_column(sa.Column("local_storage", sa.Boolean(), nullable=False, server_default=sa.true()))
        b.add_column(sa.Column("security_groups", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("storage_pools") as b:
        b.add_column(sa.Column("details", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("templates") as b:
        b.add_column(sa.Column("bits", sa.Integer(), nullable=False, server_default="64"))
        b.add_column(sa.Column("checksum", sa.String(255), nullable=False, server_default=""))
        for name in ("password_enabled", "sshkey_enabled", "extractable", "dynamically_scalable"):
            b.add_column(sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("template_tag", sa.String(255), nullable=False, server_default=""))
        b.add_column(sa.Column("template_type", sa.String(32), nullable=False, server_default="USER"))
        b.add_column(sa.Column("direct_download", sa.Boolean(), nullable=False, server_default=sa.false()))

    def dedication() -> list[sa.Column[object]]:
        return [sa.Column("domain_ids", sa.Text(), nullable=False, server_default=""),
                sa.Column("zone_ids", sa.Text(), nullable=False, server_default="")]

    with op.batch_alter_table("service_offerings") as b:
        for name in ("min_cpus", "max_cpus", "min_memory_mb", "max_memory_mb", "root_disk_gb"):
            b.add_column(sa.Column(name, sa.Integer()))
        b.add_column(sa.Column("deployment_planner", sa.String(64), nullable=False, server_default=""))
        b.add_column(sa.Column("limit_cpu_use", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("is_volatile", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("network_rate", sa.Integer()))
        for column in _disk_columns():
            b.add_column(column)
        b.add_column(sa.Column("storage_type", sa.String(16), nullable=False, server_default="shared"))
        b.add_column(sa.Column("details", sa.Text(), nullable=False, server_default="{}"))
        for column in dedication():
            b.add_column(column)
    with op.batch_alter_table("disk_offerings") as b:
        b.add_column(sa.Column("size_strict", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("display", sa.Boolean(), nullable=False, server_default=sa.true()))
        for column in _disk_columns():
            b.add_column(column)
        b.add_column(sa.Column("storage_type", sa.String(16), nullable=False, server_default="shared"))
        b.add_column(sa.Column("details", sa.Text(), nullable=False, server_default="{}"))
        for column in dedication():
            b.add_column(column)
    with op.batch_alter_table("volumes") as b:
        for column in _disk_columns():
            b.add_column(column)
        b.add_column(sa.Column("display", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("vms") as b:
        for name in ("cpus", "cpu_speed_mhz", "memory_mb"):
            b.add_column(sa.Column(name, sa.Integer()))
        b.add_column(sa.Column("group_id", sa.Integer()))
        b.add_column(sa.Column("user_id", sa.Integer()))
        b.add_column(sa.Column("display", sa.Boolean(), nullable=False, server_default=sa.true()))
        b.add_column(sa.Column("details", sa.Text(), nullable=False, server_default="{}"))
        b.create_foreign_key(op.f("fk_vms_group_id_instance_groups"), "instance_groups", ["group_id"], ["id"])
    # CloudStack's "Custom" disk offering, there from the start: the volume gives the size
    offerings = sa.table("disk_offerings", sa.column("uuid", sa.String), sa.column("name", sa.String),
                         sa.column("display_text", sa.String), sa.column("size_gb", sa.Integer),
                         sa.column("tags", sa.String), sa.column("created", sa.DateTime(timezone=True)))
    op.bulk_insert(offerings, [{"uuid": str(uuid.uuid4()), "name": "Custom", "display_text": "Custom Disk",
                                "size_gb": 0, "tags": "", "created": datetime.now(UTC)}])


def downgrade() -> None:
    op.execute("DELETE FROM disk_offerings WHERE name = 'Custom' AND size_gb = 0")
    with op.batch_alter_table("vms") as b:
        b.drop_constraint(op.f("fk_vms_group_id_instance_groups"), type_="foreignkey")
        for name in ("cpus", "cpu_speed_mhz", "memory_mb", "group_id", "user_id", "display", "details"):
            b.drop_column(name)
    with op.batch_alter_table("volumes") as b:
        for name in ("provisioning_type", "cache_mode", "iotune", "display"):
            b.drop_column(name)
    with op.batch_alter_table("disk_offerings") as b:
        for name in ("size_strict", "display", "provisioning_type", "cache_mode", "iotune", "storage_type",
                     "details", "domain_ids", "zone_ids"):
            b.drop_column(name)

    def dedication() -> list[sa.Column[object]]:
        return [sa.Column("domain_ids", sa.Text(), nullable=False, server_default=""),
                sa.Column("zone_ids", sa.Text(), nullable=False, server_default="")]

    with op.batch_alter_table("service_offerings") as b:
        for name in ("min_cpus", "max_cpus", "min_memory_mb", "max_memory_mb", "root_disk_gb",
                     "deployment_planner", "limit_cpu_use", "is_volatile", "network_rate", "provisioning_type",
                     "cache_mode", "iotune", "storage_type", "details", "domain_ids", "zone_ids"):
            b.drop_column(name)
    with op.batch_alter_table("templates") as b:
        for name in ("bits", "checksum", "password_enabled", "sshkey_enabled", "extractable",
                     "dynamically_scalable", "template_tag", "template_type", "direct_download"):
            b.drop_column(name)
    with op.batch_alter_table("storage_pools") as b:
        b.drop_column("details")
    with op.batch_alter_table("zones") as b:
        for name in ("internal_dns1", "internal_dns2", "guest_cidr", "local_storage", "security_groups"):
            b.drop_column(name)
    with op.batch_alter_table("hosts") as b:
        b.drop_column("annotation")
    with op.batch_alter_table("users") as b:
        b.drop_column("timezone")
    with op.batch_alter_table("pods") as b:
        b.drop_column("start_ip")
        b.drop_column("end_ip")
    op.drop_index("ix_resource_tags_lookup", table_name="resource_tags")
    op.drop_table("resource_tags")
    op.drop_table("vm_stats")
    op.drop_table("instance_groups")
