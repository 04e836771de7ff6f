"""The management server's tables (SQLAlchemy Core). Migrations in ``migrations/`` create and change them.

Conventions: integer primary keys inside, a ``uuid`` column for every id the API shows; ``created`` and
``removed`` timestamps (a removed row stays, for the audit trail); rows whose state moves through a
transition table carry ``update_count``, bumped by every conditional UPDATE.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy import true as sa_true  # (named so: ``true`` reads like the Python constant)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _uuid() -> Column[str]:
    return Column("uuid", String(36), nullable=False, unique=True)


def _times() -> list[Column[object]]:
    return [Column("created", DateTime(timezone=True), nullable=False),
            Column("removed", DateTime(timezone=True))]


management_servers = Table(
    "management_servers", metadata, _id(),
    Column("msid", BigInteger, nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("address", String(255), nullable=False),
    Column("agent_port", Integer, nullable=False),
    Column("state", String(32), nullable=False),  # Up, Down
    Column("last_heartbeat", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("peer_port", Integer, nullable=False, server_default="0"),  # 0: takes no forwarded commands
    Column("version", String(64), nullable=False, server_default=""),  # the software's
    Column("schema_revision", String(32), nullable=False, server_default=""),  # the newest it knows
    Column("down_since", DateTime(timezone=True)),
    Column("taken_over_by", BigInteger),  # the peer that settled its jobs and hosts after it died
)

# Resource limits of accounts and domains that differ from the defaults (settings max.account.* and
# max.domain.*); counts are read from the resources themselves (mgmt/limits.py).
resource_limits = Table(
    "resource_limits", metadata, _id(),
    Column("owner_type", String(16), nullable=False),  # account, domain
    Column("owner_id", Integer, nullable=False),
    Column("type", Integer, nullable=False),  # CloudStack's resource type number
    Column("max", BigInteger, nullable=False),  # -1: no limit
    UniqueConstraint("owner_type", "owner_id", "type"),
)

# Login sessions, shared by every management server (a client may move to another one): only hashes of
# the JSESSIONID and the session key are kept.
login_sessions = Table(
    "login_sessions", metadata,
    Column("id", String(64), primary_key=True),
    Column("key_hash", String(64), nullable=False),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("last_used", DateTime(timezone=True), nullable=False, index=True),
)

# What each server's committed transactions changed that other servers keep in memory (capacity,
# the catalog, API keys, revoked certificates): written in the same transaction, read by the peers.
cluster_journal = Table(
    "cluster_journal", metadata, _id(),
    Column("msid", BigInteger, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False, index=True),
    Column("body", LargeBinary, nullable=False),
)

# The cloud's CA, so that every management server issues and checks the same certificates.
certificate_authority = Table(
    "certificate_authority", metadata, _id(),
    Column("cert_pem", Text, nullable=False),
    Column("key_pem", Text, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

zones = Table(
    "zones", metadata, _id(), _uuid(),
    Column("sort_key", Integer, nullable=False, server_default="0"),  # lists: by it (sortkey.algorithm)
    Column("name", String(255), nullable=False, unique=True),
    Column("network_type", String(32), nullable=False, default="Advanced"),
    Column("dns1", String(64)), Column("dns2", String(64)),
    Column("allocation_state", String(32), nullable=False, default="Enabled"),
    # VXLAN ids isolated networks of the zone take while implemented (CloudStack's physical network
    # "vnet" range), inclusive
    Column("vni_start", Integer, nullable=False, default=5000, server_default="5000"),
    Column("vni_end", Integer, nullable=False, default=5999, server_default="5999"),
    Column("internal_dns1", String(64)), Column("internal_dns2", String(64)),  # (system VMs': kept, shown)
    Column("guest_cidr", String(64)),  # CloudStack's guestcidraddress (shown)
    Column("local_storage", Boolean, nullable=False, default=True, server_default=sa_true()),
    Column("details", Text, nullable=False, server_default="{}"),  # an operator's key/values (updateZone)
    Column("security_groups", Boolean, nullable=False, default=False, server_default=false()),
    *_times(),
)

pods = Table(
    "pods", metadata, _id(), _uuid(),
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("gateway", String(64)), Column("netmask", String(64)),
    Column("start_ip", String(64)), Column("end_ip", String(64)),  # its management range (kept, shown)
    Column("allocation_state", String(32), nullable=False, default="Enabled"),
    *_times(),
    UniqueConstraint("zone_id", "name"),
)

clusters = Table(
    "clusters", metadata, _id(), _uuid(),
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("pod_id", ForeignKey("pods.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("hypervisor_type", String(32), nullable=False),
    Column("allocation_state", String(32), nullable=False, default="Enabled"),
    Column("cpu_overcommit", Float),  # cluster overrides of the cloud-wide factors; NULL = inherit
    Column("mem_overcommit", Float),
    *_times(),
    UniqueConstraint("zone_id", "name"),
)

hosts = Table(
    "hosts", metadata, _id(), _uuid(),
    Column("guid", String(255), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("type", String(32), nullable=False, default="Routing"),
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("pod_id", ForeignKey("pods.id"), nullable=False),
    Column("cluster_id", ForeignKey("clusters.id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("resource_state", String(32), nullable=False, default="Enabled"),
    Column("update_count", BigInteger, nullable=False, default=0),
    Column("hypervisor_type", String(32), nullable=False),
    Column("hypervisor_version", String(64), nullable=False, default=""),
    Column("private_ip", String(64), nullable=False, default=""),
    Column("private_mac", String(32), nullable=False, default=""),
    Column("host_tags", String(1024), nullable=False, default=""),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("mgmt_server_id", BigInteger),  # msid of the server its agent is connected to
    Column("last_ping", DateTime(timezone=True)),  # written at state changes only, not per ping
    Column("status_changed", DateTime(timezone=True)),
    # when a neighbour confirmed it fenced (after it went Down; cleared when it comes back Up)
    Column("fenced", DateTime(timezone=True)),
    Column("annotation", String(4096)),  # an admin's note (updateHost annotation)
    *_times(),
)

host_capacity = Table(
    "host_capacity", metadata,
    Column("host_id", ForeignKey("hosts.id"), primary_key=True),
    Column("cpu_cores", Integer, nullable=False),
    Column("cpu_mhz_total", BigInteger, nullable=False),
    Column("cpu_mhz_used", BigInteger, nullable=False, default=0),
    Column("cpu_mhz_reserved", BigInteger, nullable=False, default=0),
    Column("cores_used", Integer, nullable=False, default=0),
    Column("memory_total", BigInteger, nullable=False),
    Column("memory_used", BigInteger, nullable=False, default=0),
    Column("memory_reserved", BigInteger, nullable=False, default=0),
    Column("update_count", BigInteger, nullable=False, default=0),
)

storage_pools = Table(
    "storage_pools", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("pod_id", ForeignKey("pods.id")),
    Column("cluster_id", ForeignKey("clusters.id")),
    Column("host_id", ForeignKey("hosts.id")),  # set for host-local pools
    Column("scope", String(16), nullable=False),  # HOST, CLUSTER, ZONE
    Column("pool_type", String(32), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("tags", String(1024), nullable=False, default=""),
    Column("status", String(32), nullable=False, default="Up"),
    Column("capacity_bytes", BigInteger, nullable=False),
    Column("used_bytes", BigInteger, nullable=False, default=0),
    Column("reserved_bytes", BigInteger, nullable=False, default=0),
    Column("update_count", BigInteger, nullable=False, default=0),
    Column("details", Text, nullable=False, default="{}", server_default="{}"),  # JSON, as given at creation
    *_times(),
)

templates = Table(
    "templates", metadata, _id(), _uuid(),
    Column("sort_key", Integer, nullable=False, server_default="0"),  # lists: by it (sortkey.algorithm)
    Column("name", String(255), nullable=False),
    Column("display_text", String(4096), nullable=False, default=""),
    Column("format", String(16), nullable=False),
    Column("hypervisor_type", String(32), nullable=False),
    Column("os_type", String(255), nullable=False, default=""),
    Column("url", String(2048), nullable=False),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    # JSON object: a KVM template's direct-boot "kernel", "initrd" and "bootargs" (registerTemplate details)
    Column("details", Text, nullable=False, server_default="{}"),
    Column("public", Boolean, nullable=False, default=True),
    Column("featured", Boolean, nullable=False, default=False),
    Column("account_id", Integer),
    Column("zone_id", ForeignKey("zones.id")),  # NULL: every zone
    Column("state", String(32), nullable=False, default="Ready"),
    Column("bits", Integer, nullable=False, default=64, server_default="64"),
    Column("checksum", String(255), nullable=False, default="", server_default=""),
    Column("password_enabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("sshkey_enabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("extractable", Boolean, nullable=False, default=False, server_default=false()),
    Column("dynamically_scalable", Boolean, nullable=False, default=False, server_default=false()),
    Column("template_tag", String(255), nullable=False, default="", server_default=""),
    Column("template_type", String(32), nullable=False, default="USER", server_default="USER"),
    Column("direct_download", Boolean, nullable=False, default=False, server_default=false()),
    *_times(),
)

template_copies = Table(
    "template_copies", metadata,
    Column("template_id", ForeignKey("templates.id"), primary_key=True),
    Column("pool_id", ForeignKey("storage_pools.id"), primary_key=True),
    Column("install_path", String(1024), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("state", String(32), nullable=False),  # Downloading, Ready
)

service_offerings = Table(
    "service_offerings", metadata, _id(), _uuid(),
    Column("sort_key", Integer, nullable=False, server_default="0"),  # lists: by it (sortkey.algorithm)
    Column("name", String(255), nullable=False),
    Column("display_text", String(4096), nullable=False, default=""),
    Column("cpus", Integer, nullable=False),
    Column("cpu_speed_mhz", Integer, nullable=False),
    Column("memory_mb", Integer, nullable=False),
    Column("host_tags", String(1024), nullable=False, default=""),
    Column("ha_enabled", Boolean, nullable=False, default=False),
    # A custom offering has cpus, cpu_speed_mhz or memory_mb 0: the deploy gives them (within the bounds)
    Column("min_cpus", Integer), Column("max_cpus", Integer),
    Column("min_memory_mb", Integer), Column("max_memory_mb", Integer),
    Column("root_disk_gb", Integer),  # the root disk's size (NULL: the template's)
    Column("deployment_planner", String(64), nullable=False, default="", server_default=""),
    Column("limit_cpu_use", Boolean, nullable=False, default=False, server_default=false()),
    Column("is_volatile", Boolean, nullable=False, default=False, server_default=false()),
    Column("network_rate", Integer),  # Mb/s of each NIC (NULL: unlimited)
    # How its disks are made and driven: qcow2 preallocation (thin: none, sparse: metadata, fat: full),
    # the disk cache mode, and libvirt's <iotune> limits (JSON: element name -> value)
    Column("provisioning_type", String(16), nullable=False, default="thin", server_default="thin"),
    Column("cache_mode", String(16), nullable=False, default="none", server_default="none"),
    Column("iotune", Text, nullable=False, default="{}", server_default="{}"),
    Column("storage_type", String(16), nullable=False, default="shared", server_default="shared"),
    Column("details", Text, nullable=False, default="{}", server_default="{}"),  # JSON, as given
    # dedicated to these domains (and their subdomains) and zones: ",uuid,uuid," ("": public)
    Column("domain_ids", Text, nullable=False, default="", server_default=""),
    Column("zone_ids", Text, nullable=False, default="", server_default=""),
    *_times(),
)

disk_offerings = Table(
    "disk_offerings", metadata, _id(), _uuid(),
    Column("sort_key", Integer, nullable=False, server_default="0"),  # lists: by it (sortkey.algorithm)
    Column("name", String(255), nullable=False),
    Column("display_text", String(4096), nullable=False, default=""),
    Column("size_gb", Integer, nullable=False),  # 0: custom, the volume gives its size
    Column("tags", String(1024), nullable=False, default=""),
    Column("size_strict", Boolean, nullable=False, default=False, server_default=false()),
    Column("display", Boolean, nullable=False, default=True, server_default=sa_true()),
    # How its disks are made and driven: qcow2 preallocation (thin: none, sparse: metadata, fat: full),
    # the disk cache mode, and libvirt's <iotune> limits (JSON: element name -> value)
    Column("provisioning_type", String(16), nullable=False, default="thin", server_default="thin"),
    Column("cache_mode", String(16), nullable=False, default="none", server_default="none"),
    Column("iotune", Text, nullable=False, default="{}", server_default="{}"),
    Column("storage_type", String(16), nullable=False, default="shared", server_default="shared"),
    Column("details", Text, nullable=False, default="{}", server_default="{}"),  # JSON, as given
    # dedicated to these domains (and their subdomains) and zones: ",uuid,uuid," ("": public)
    Column("domain_ids", Text, nullable=False, default="", server_default=""),
    Column("zone_ids", Text, nullable=False, default="", server_default=""),
    *_times(),
)

# What kinds of guest network can be made: Shared (an admin's, every account deploys on it, on the
# host's bridge or VLAN) or Isolated (an account's own, a VXLAN segment of its own while implemented)
network_offerings = Table(
    "network_offerings", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False, unique=True),
    Column("display_text", String(4096), nullable=False, default=""),
    Column("guest_type", String(32), nullable=False),  # Shared, Isolated
    Column("isolation", String(16), nullable=False, default=""),  # "", vxlan
    Column("security_groups", Boolean, nullable=False, default=False, server_default=false()),
    Column("state", String(16), nullable=False, default="Enabled"),
    *_times(),
)

networks = Table(
    "networks", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("guest_type", String(32), nullable=False, default="Shared"),
    Column("cidr", String(64), nullable=False),
    Column("gateway", String(64), nullable=False),
    Column("netmask", String(64), nullable=False),
    Column("dns1", String(64)), Column("dns2", String(64)),
    Column("vlan", String(64), nullable=False, default="untagged"),
    Column("bridge", String(64), nullable=False, default=""),
    Column("external_id", String(255)),  # an id in another system, as its creator gave it
    # Shared: Setup. Isolated: Allocated, Implemented (a VM of it runs: it holds a VNI), Shutdown
    Column("state", String(32), nullable=False, default="Setup"),
    Column("network_offering_id", ForeignKey("network_offerings.id")),  # NULL: the shared offering
    Column("account_id", ForeignKey("accounts.id")),  # an isolated network's owner
    Column("vni", Integer),  # the VXLAN id while implemented
    # +1 whenever a VM starts on it: a shutdown that read an older count (it saw no VM) changes nothing
    Column("update_count", BigInteger, nullable=False, default=0, server_default="0"),
    *_times(),
    UniqueConstraint("zone_id", "name"),
    UniqueConstraint("zone_id", "vni", name="uq_networks_zone_id_vni"),
)

ip_ranges = Table(
    "ip_ranges", metadata, _id(),
    Column("network_id", ForeignKey("networks.id"), nullable=False),
    Column("start_ip", String(64), nullable=False),
    Column("end_ip", String(64), nullable=False),
)

# CloudStack's instance groups: an account's named sets of VMs (deployVirtualMachine group=...)
instance_groups = Table(
    "instance_groups", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    *_times(),
)

vms = Table(
    "vms", metadata, _id(), _uuid(),
    Column("instance_name", String(255), nullable=False, unique=True),
    Column("display_name", String(255), nullable=False),
    Column("name", String(255)),  # the guest's host name the user chose (NULL: the instance name)
    Column("state", String(32), nullable=False),
    Column("update_count", BigInteger, nullable=False, default=0),
    Column("power_state", String(32), nullable=False, default="PowerUnknown"),
    Column("power_state_updated", DateTime(timezone=True)),
    Column("state_changed", DateTime(timezone=True)),  # power reports older than this say nothing
    Column("zone_id", ForeignKey("zones.id"), nullable=False),
    Column("host_id", ForeignKey("hosts.id")),
    Column("last_host_id", ForeignKey("hosts.id")),
    Column("service_offering_id", ForeignKey("service_offerings.id"), nullable=False),
    Column("template_id", ForeignKey("templates.id"), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("ha_enabled", Boolean, nullable=False, default=False),
    # What the guest learns from its config drive: user data (Base64, as given; NULL: none), the
    # registered user data it came from, and the public keys of its key pairs (copied at deploy or
    # reset, as CloudStack does: deleting a key pair later does not change a VM)
    Column("user_data", Text),
    Column("user_data_id", ForeignKey("user_data.id")),
    Column("keypairs", String(1024), nullable=False, default=""),  # the key pairs' names, comma-separated
    Column("ssh_public_keys", Text, nullable=False, default=""),  # one per line
    # A custom offering's values for this VM (NULL: the offering's own)
    Column("cpus", Integer), Column("cpu_speed_mhz", Integer), Column("memory_mb", Integer),
    Column("group_id", ForeignKey("instance_groups.id")),
    Column("user_id", Integer),  # the user who deployed it (NULL: before this was recorded)
    Column("display", Boolean, nullable=False, default=True, server_default=sa_true()),
    Column("details", Text, nullable=False, default="{}", server_default="{}"),  # JSON, as given
    *_times(),
    Index("ix_vms_host_state", "host_id", "state"),
    Index("ix_vms_account", "account_id"),
)

# Security groups: an account's named sets of rules. A VM on a network whose offering has security groups
# is in at least one (its account's "default" when the deploy names none); a rule lets traffic in
# (ingress) or out (egress) by protocol, ports or ICMP type and code, from or to a CIDR or the members of
# another group. Hosts turn them into nftables rules on the VM's bridge port.
security_groups = Table(
    "security_groups", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("description", String(4096), nullable=False, default=""),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account_id", "name"),
)

security_group_rules = Table(
    "security_group_rules", metadata, _id(), _uuid(),
    Column("group_id", ForeignKey("security_groups.id"), nullable=False),
    Column("direction", String(8), nullable=False),  # ingress, egress
    Column("protocol", String(8), nullable=False),  # tcp, udp, icmp, all
    Column("start_port", Integer), Column("end_port", Integer),
    Column("icmp_type", Integer), Column("icmp_code", Integer),
    Column("cidr", String(64)),  # one of cidr and source_group_id
    Column("source_group_id", ForeignKey("security_groups.id")),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_security_group_rules_group", "group_id"),
)

security_group_vms = Table(
    "security_group_vms", metadata,
    Column("group_id", ForeignKey("security_groups.id"), primary_key=True),
    Column("vm_id", ForeignKey("vms.id"), primary_key=True),
)

# SSH key pairs an account registered (or had made: the private key is shown once and not kept)
ssh_keypairs = Table(
    "ssh_keypairs", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("public_key", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),  # MD5 of the key blob, colon-separated hex
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account_id", "name"),
    UniqueConstraint("account_id", "fingerprint", name="uq_ssh_keypairs_account_id_fingerprint"),
)

# User data registered by name (CloudStack 4.18's registerUserData), for deploys to name by id
user_data = Table(
    "user_data", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("user_data", Text, nullable=False),  # Base64, as registered
    Column("params", String(4096), nullable=False, default=""),  # declared variables, comma-separated
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account_id", "name"),
)

nics = Table(
    "nics", metadata, _id(), _uuid(),
    Column("vm_id", ForeignKey("vms.id"), nullable=False),
    Column("network_id", ForeignKey("networks.id"), nullable=False),
    Column("device_id", Integer, nullable=False),
    Column("ip_address", String(64)),
    Column("mac_address", String(32), nullable=False),
    Column("is_default", Boolean, nullable=False),
    Column("state", String(32), nullable=False),  # Allocated, Reserved, Released
    # NULL addresses (released) do not collide; two live NICs never share an IP or a MAC
    UniqueConstraint("network_id", "ip_address"),
    UniqueConstraint("mac_address"),
)

volumes = Table(
    "volumes", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("vm_id", ForeignKey("vms.id")),
    Column("pool_id", ForeignKey("storage_pools.id")),
    Column("zone_id", ForeignKey("zones.id")),  # set for volumes made on their own (createVolume)
    Column("type", String(16), nullable=False),  # ROOT, DATADISK
    Column("state", String(32), nullable=False),
    Column("update_count", BigInteger, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False),
    Column("path", String(1024), nullable=False, default=""),
    Column("device_id", Integer),
    Column("template_id", ForeignKey("templates.id")),
    Column("disk_offering_id", ForeignKey("disk_offerings.id")),
    Column("account_id", Integer, nullable=False),
    # copied from its offering when it is made (as key pairs are to a VM: a later change does not move it)
    Column("provisioning_type", String(16), nullable=False, default="thin", server_default="thin"),
    Column("cache_mode", String(16), nullable=False, default="none", server_default="none"),
    Column("iotune", Text, nullable=False, default="{}", server_default="{}"),
    Column("display", Boolean, nullable=False, default=True, server_default=sa_true()),
    *_times(),
)

affinity_groups = Table(
    "affinity_groups", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("type", String(32), nullable=False),  # "host anti-affinity", "host affinity"
    Column("description", String(4096), nullable=False, default=""),
    Column("account_id", Integer, nullable=False),
    *_times(),
    UniqueConstraint("account_id", "name"),
)

affinity_group_vms = Table(
    "affinity_group_vms", metadata,
    Column("group_id", ForeignKey("affinity_groups.id"), primary_key=True),
    Column("vm_id", ForeignKey("vms.id"), primary_key=True),
)

# What each VM holds: compute on a host (Allocated while it runs or starts; Held for a while after it
# stops, on its last host) and space on a pool (until its volumes are expunged). The host and pool
# capacity columns are always the sums of these rows: reserve and release change both in one transaction.
capacity_reservations = Table(
    "capacity_reservations", metadata,
    Column("vm_id", ForeignKey("vms.id"), primary_key=True),
    Column("host_id", ForeignKey("hosts.id")),
    Column("migrating_to", ForeignKey("hosts.id")),  # a migration's destination, also counted in its used
    Column("state", String(16)),  # Allocated (counted in *_used), Held (in *_reserved), NULL: no compute
    Column("held_until", DateTime(timezone=True)),
    Column("cpu_mhz", BigInteger, nullable=False, default=0),
    Column("cores", Integer, nullable=False, default=0),
    Column("memory_bytes", BigInteger, nullable=False, default=0),
    Column("pool_id", ForeignKey("storage_pools.id")),
    Column("disk_bytes", BigInteger, nullable=False, default=0),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_capacity_reservations_host", "host_id", "state"),
)

domains = Table(
    "domains", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("path", String(1024), nullable=False, unique=True),  # "/" for ROOT
    Column("parent_id", ForeignKey("domains.id")),
    *_times(),
)

accounts = Table(
    "accounts", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("domain_id", ForeignKey("domains.id"), nullable=False),
    Column("type", Integer, nullable=False),  # CloudStack's account type: 0 user, 1 root admin
    Column("state", String(32), nullable=False, default="enabled"),
    *_times(),
    UniqueConstraint("domain_id", "name"),
)

users = Table(
    "users", metadata, _id(), _uuid(),
    Column("account_id", ForeignKey("accounts.id"), nullable=False),
    Column("username", String(255), nullable=False, unique=True),
    Column("password", String(255), nullable=False, default=""),  # a PBKDF2 hash (mgmt/services/passwords.py)
    Column("email", String(255), nullable=False, server_default=""),
    Column("first_name", String(255), nullable=False, server_default=""),
    Column("last_name", String(255), nullable=False, server_default=""),
    Column("api_key", String(255), unique=True),
    Column("secret_key", String(255)),
    Column("state", String(32), nullable=False, default="enabled"),
    Column("timezone", String(64)),  # the user's time zone (an IANA name), as it gave it
    *_times(),
)

# Projects: a project owns its resources through an account of its own (type 5, no users); the accounts
# (or single users of them) that are its members act on them, its admins manage it.
projects = Table(
    "projects", metadata, _id(), _uuid(),
    Column("name", String(255), nullable=False),
    Column("display_text", String(255), nullable=False, server_default=""),
    Column("domain_id", ForeignKey("domains.id"), nullable=False),
    Column("account_id", ForeignKey("accounts.id"), nullable=False, unique=True),  # the project's account
    Column("state", String(16), nullable=False, server_default="Active"),  # Active, Suspended
    *_times(),
)

project_accounts = Table(
    "project_accounts", metadata, _id(),
    Column("project_id", ForeignKey("projects.id"), nullable=False, index=True),
    Column("account_id", ForeignKey("accounts.id"), nullable=False, index=True),  # the member account
    Column("user_id", ForeignKey("users.id")),  # a single user of it (addUserToProject); NULL: all its users
    Column("role", String(16), nullable=False),  # Admin, Regular
    Column("created", DateTime(timezone=True), nullable=False),
)

async_jobs = Table(
    "async_jobs", metadata, _id(), _uuid(),
    Column("user_id", Integer, nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("command", String(255), nullable=False),
    Column("instance_type", String(64)),
    Column("instance_id", Integer),
    Column("status", Integer, nullable=False, default=0),  # 0 pending, 1 succeeded, 2 failed
    Column("process_status", Integer, nullable=False, default=0),
    Column("result_code", Integer, nullable=False, default=0),
    Column("result", Text),  # JSON
    Column("mgmt_server_id", BigInteger),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("completed", DateTime(timezone=True)),
    Index("ix_async_jobs_status", "status"),
    Index("ix_async_jobs_instance", "instance_type", "instance_id", "status"),
)

# The audit trail: who did what to which resource, and how it ended.
events = Table(
    "events", metadata, _id(), _uuid(),
    Column("type", String(64), nullable=False),  # CloudStack's event types: VM.CREATE, VOLUME.ATTACH...
    Column("state", String(32), nullable=False),  # Scheduled, Completed, Error
    Column("level", String(16), nullable=False),  # INFO, ERROR
    Column("description", String(4096), nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("resource_type", String(64), nullable=False, server_default=""),
    Column("resource_uuid", String(36)),
    Column("job_id", Integer),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_events_account_created", "account_id", "created"),
)

configuration = Table(
    "configuration", metadata,
    Column("name", String(255), primary_key=True),
    Column("value", String(4096)),  # NULL: the default applies
    Column("default_value", String(4096)),
    Column("category", String(64), nullable=False),
    Column("description", String(1024), nullable=False),
    Column("scope", String(32), nullable=False, default="Global"),
)


# Settings given a value for one zone, cluster, storage pool, domain or account (updateConfiguration
# zoneid=...), for the settings of that scope (``Setting.scope``); a cluster's CPU and memory
# overprovisioning factors are its own columns instead (clusters.cpu_overcommit, mem_overcommit).
configuration_scoped = Table(
    "configuration_scoped", metadata, _id(),
    Column("scope", String(16), nullable=False),  # Zone, Cluster, StoragePool, Domain, Account
    Column("scope_id", Integer, nullable=False),
    Column("name", String(255), nullable=False),
    Column("value", String(4096), nullable=False),
    UniqueConstraint("scope", "scope_id", "name"),
)

# Registration tokens an operator made for agents to get their first certificate (only a hash is kept).
agent_tokens = Table(
    "agent_tokens", metadata, _id(),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the secret, hex
    Column("uses_left", Integer, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)

# Every host certificate the cloud's CA issued: a connection whose certificate is revoked is refused.
host_certificates = Table(
    "host_certificates", metadata, _id(),
    Column("serial", String(64), nullable=False, unique=True),  # hex
    Column("guid", String(255), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True)),
    Index("ix_host_certificates_guid", "guid"),
)

# HA work: one item per VM of a host that went Down (restart it elsewhere, or mark it Stopped), or per HA
# VM powered off behind the server's back; worked until done or out of attempts, across restarts.
ha_work = Table(
    "ha_work", metadata, _id(),
    Column("vm_id", ForeignKey("vms.id"), nullable=False),
    Column("host_id", Integer),  # the host it ran on, to fence first; NULL: no fencing needed
    Column("kind", String(16), nullable=False),  # Restart or Stop
    Column("reason", String(255), nullable=False),
    Column("state", String(16), nullable=False),  # Pending, Running, Done, Failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", DateTime(timezone=True), nullable=False),
    Column("msid", BigInteger),  # the server working it now
    Column("last_error", String(1024), nullable=False, default=""),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_ha_work_state_next", "state", "next_attempt"),
    Index("ix_ha_work_vm", "vm_id"),
)

# Alerts for operators (listAlerts): hosts down, HA that failed, capacity past its thresholds.
alerts = Table(
    "alerts", metadata, _id(), _uuid(),
    Column("type", Integer, nullable=False),  # CloudStack's alert type numbers
    Column("name", String(64), nullable=False),
    Column("description", String(1024), nullable=False),
    Column("zone_id", Integer),
    Column("pod_id", Integer),
    Column("cluster_id", Integer),
    Column("archived", Boolean, nullable=False, default=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Index("ix_alerts_created", "created"),
)

# The latest statistics of each VM, from its host (GetVmStatsCommand, every vm.stats.interval): one row
# a VM, replaced at each collection, so the table stays as large as the cloud. Counters are cumulative
# since the guest started; the utilisation is from the last two samples.
vm_stats = Table(
    "vm_stats", metadata,
    Column("vm_id", ForeignKey("vms.id"), primary_key=True),
    Column("host_id", Integer, nullable=False),
    Column("collected", DateTime(timezone=True), nullable=False),
    Column("vcpus", Integer, nullable=False),
    Column("cpu_time_ns", BigInteger, nullable=False),
    Column("cpu_utilization", Float, nullable=False),  # percent of its vCPUs, since the sample before
    Column("memory_kbs", BigInteger, nullable=False),
    Column("memory_free_kbs", BigInteger, nullable=False),
    Column("memory_target_kbs", BigInteger, nullable=False),
    Column("disk_read_bytes", BigInteger, nullable=False),
    Column("disk_write_bytes", BigInteger, nullable=False),
    Column("disk_read_ios", BigInteger, nullable=False),
    Column("disk_write_ios", BigInteger, nullable=False),
    Column("net_rx_bytes", BigInteger, nullable=False),
    Column("net_tx_bytes", BigInteger, nullable=False),
)

# CloudStack's resource tags: key/value pairs on an account's resources (createTags), which lists filter
# by (tags[0].key=...&tags[0].value=...) and show
resource_tags = Table(
    "resource_tags", metadata, _id(), _uuid(),
    Column("key", String(255), nullable=False),
    Column("value", String(255), nullable=False),
    Column("resource_type", String(32), nullable=False),  # UserVm, Volume, Template, Network...
    Column("resource_uuid", String(36), nullable=False),
    Column("account_id", Integer, nullable=False),
    Column("customer", String(255)),
    Column("created", DateTime(timezone=True), nullable=False),
    UniqueConstraint("resource_type", "resource_uuid", "key", name="uq_resource_tags_resource"),
    Index("ix_resource_tags_lookup", "resource_type", "key", "value"),
)
