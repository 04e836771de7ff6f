"""The cloud's runtime settings: CloudStack's names and defaults, kept in the ``configuration`` table.

``seed`` inserts the settings a database lacks (after each migration) and never overwrites a value an
admin changed. Values are strings in the table; ``SETTINGS`` says how each is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .db.schema import configuration


def boolean(raw: str) -> bool:
    """CloudStack's booleans: true or false (any case)."""
    text = str(raw).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(raw)
    return text == "true"


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    kind: Callable[[str], object]
    category: str
    description: str
    scope: str = "Global"  # CloudStack's: Global, or the one kind of thing it may also be set for
    parent: str = ""  # the setting that turns this one's feature on
    dynamic: bool = False  # read where it is used, so a change applies at once (else at restart)

    @property
    def group(self) -> tuple[str, str]:
        """(group, subgroup): CloudStack's grouping of settings for people to find them."""
        for prefix, found in _GROUPS:
            if self.name.startswith(prefix):
                return found
        return ("Miscellaneous", "Others")


# CloudStack's default resource limits of an account (a domain's are twice these): name, default, what.
_LIMITS = (("user.vms", 20, "VMs"), ("public.ips", 20, "public IPs"), ("volumes", 20, "volumes"),
           ("snapshots", 20, "snapshots"), ("templates", 20, "templates"), ("projects", 20, "projects"),
           ("networks", 20, "networks"), ("vpcs", 20, "VPCs"), ("cpus", 40, "vCPUs"),
           ("memory", 40960, "MiB of memory"), ("primary.storage", 200, "GiB of primary storage"),
           ("secondary.storage", 400, "GiB of secondary storage"))

SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("ping.interval", "10", int, "Advanced",
            "Seconds between an agent's pings; a host silent for 1.5 of them leaves placement."),
    Setting("ping.timeout", "2.5", float, "Advanced",
            "Multiple of ping.interval after which a silent host is investigated."),
    *[Setting(f"max.{owner}.{name}", str(default * factor), int, f"{owner.title()} Defaults",
              f"The default maximum number of {what} {article} may have (-1: no limit; updateResourceLimit "
              f"sets one account's or domain's own).")
      for owner, factor, article in (("account", 1, "an account"), ("domain", 2, "a domain"))
      for name, default, what in _LIMITS],
    Setting("sortkey.algorithm", "false", boolean, "Advanced",
            "How zones, offerings and templates are listed by their sort keys (updateZone, updateTemplate, "
            "update*Offering sortkey): true ascending, false descending; equal keys in the order made."),
    Setting("allow.user.create.projects", "true", boolean, "Project Defaults",
            "Whether users (not only admins) may create projects."),
    Setting("password.policy.minimum.length", "0", int, "Advanced",
            "Minimum length of a user's password (0: any length)."),
    Setting("password.policy.minimum.special.characters", "0", int, "Advanced",
            "Minimum number of characters that are neither letters nor digits in a user's password."),
    Setting("password.policy.minimum.uppercase.letters", "0", int, "Advanced",
            "Minimum number of uppercase letters [A-Z] in a user's password."),
    Setting("password.policy.minimum.lowercase.letters", "0", int, "Advanced",
            "Minimum number of lowercase letters [a-z] in a user's password."),
    Setting("password.policy.minimum.digits", "0", int, "Advanced",
            "Minimum number of digits [0-9] in a user's password."),
    Setting("password.policy.allowPasswordToContainUsername", "true", boolean, "Advanced",
            "Whether a user's password may contain their user name."),
    Setting("password.policy.regex", ".+", str, "Advanced",
            "A regular expression a user's password must match."),
    Setting("cluster.heartbeat.interval", "1500", int, "Management Server",
            "Milliseconds between a management server's heartbeats in the database."),
    Setting("cluster.heartbeat.threshold", "15000", int, "Management Server",
            "Milliseconds without a heartbeat after which the other management servers declare a server "
            "down, settle its jobs and take its hosts over."),
    Setting("indirect.agent.lb.algorithm", "roundrobin", str, "Advanced",
            "How agents are spread over the management servers: static (the same order for every host), "
            "roundrobin (each host starts at a different server) or shuffle (a random order per host)."),
    Setting("cluster.agent.rebalance.rate", "20", int, "Management Server",
            "Agents per second a management server asks to move to a server that joined (0: none move); "
            "gentle, so that a server joining causes no reconnect storm."),
    Setting("vm.allocation.algorithm", "random", str, "Advanced",
            "How hosts are chosen: random, firstfit, userdispersing, firstfitleastconsumed, "
            "userconcentratedpod_random, userconcentratedpod_firstfit."),
    Setting("host.capacityType.to.order.clusters", "CPU", str, "Advanced",
            "What orders clusters for placement: CPU, RAM or COMBINED."),
    Setting("host.capacityType.to.order.clusters.cputomemoryweight", "0.5", float, "Advanced",
            "With COMBINED ordering, the weight of CPU against memory."),
    Setting("planner.filters", "", str, "Advanced",
            "Comma-separated host filters the planner applies, in its fixed order; empty: all of them "
            "(scope, avoid, affinity, status, hypervisor, tags, cpu_cores, cpu, memory, cluster_threshold)."),
    Setting("cpu.overprovisioning.factor", "1", float, "Advanced", "CPU over-commit factor."),
    Setting("mem.overprovisioning.factor", "1", float, "Advanced", "Memory over-commit factor."),
    Setting("storage.overprovisioning.factor", "2", float, "Storage", "Over-commit of thin primary storage."),
    Setting("cluster.cpu.allocated.capacity.disablethreshold", "0.85", float, "Alert",
            "Allocated CPU fraction past which a cluster takes no new VMs."),
    Setting("cluster.memory.allocated.capacity.disablethreshold", "0.85", float, "Alert",
            "Allocated memory fraction past which a cluster takes no new VMs."),
    Setting("pool.storage.capacity.disablethreshold", "0.85", float, "Alert",
            "Used fraction past which a storage pool takes no new volumes."),
    Setting("start.retry", "10", int, "Advanced", "Attempts to start a VM on another host after a failure."),
    Setting("expunge.delay", "86400", int, "Advanced", "Seconds a destroyed VM waits before it is expunged."),
    Setting("expunge.interval", "86400", int, "Advanced", "Seconds between runs of the expunge task."),
    Setting("network.gc.interval", "600", int, "Advanced",
            "Seconds between shutdowns of isolated networks no running VM uses (their VXLAN ids go back)."),
    Setting("capacity.skipcounting.hours", "3600", int, "Advanced",
            "Seconds a stopped VM keeps its reservation on its last host."),
    Setting("wait", "1800", int, "Advanced", "Default seconds to wait for an agent's answer."),
    Setting("ha.heartbeat.interval", "2", float, "Advanced",
            "Seconds between a host's heartbeat writes on its shared primary storage pools."),
    Setting("ha.heartbeat.window", "6", float, "Advanced",
            "Seconds a neighbour watches a host's heartbeat before calling it dead, a fence waits to "
            "confirm, and a host cut off from both server and storage waits before stopping its guests."),
    Setting("ha.investigate.interval", "10", float, "Advanced",
            "Seconds between investigations of a host in Alert that has no connection."),
    Setting("ha.restart.attempts", "5", int, "Advanced",
            "Attempts at one HA item (fence, then restart or stop) before it fails with an alert."),
    Setting("ha.restart.backoff", "5", float, "Advanced",
            "Seconds before an HA item is tried again, doubled after each failed attempt."),
    Setting("ha.workers", "8", int, "Advanced", "HA items worked at once."),
    Setting("cluster.cpu.allocated.capacity.notificationthreshold", "0.75", float, "Alert",
            "Allocated CPU fraction of a zone past which an alert is raised."),
    Setting("cluster.memory.allocated.capacity.notificationthreshold", "0.75", float, "Alert",
            "Allocated memory fraction of a zone past which an alert is raised."),
    Setting("pool.storage.allocated.capacity.notificationthreshold", "0.75", float, "Alert",
            "Allocated primary storage fraction of a zone past which an alert is raised."),
    Setting("vm.stats.interval", "60000", int, "Advanced",
            "Milliseconds between collections of VM statistics from the hosts (0: none; applies at once)."),
    Setting("prometheus.exporter.enable", "true", boolean, "Advanced",
            "Serve the cloud's and the server's figures at /metrics on the API port, in Prometheus' text "
            "format (restart to apply)."),
    Setting("prometheus.exporter.allowed.ips", "127.0.0.1,::1", str, "Advanced",
            "Comma-separated addresses or networks (CIDR) that may read /metrics; others get 403."),
    Setting("api.throttling.enabled", "false", boolean, "Advanced",
            "Limit API calls per user (api.throttling.max per api.throttling.interval; 429 past it)."),
    Setting("api.throttling.interval", "1", int, "Advanced", "Seconds of the API throttling window."),
    Setting("api.throttling.max", "25", int, "Advanced", "API calls a user may make in one window."),
    Setting("incorrect.login.attempts.allowed", "5", int, "Advanced",
            "Failed logins in a row after which a user is refused for five minutes."),
    Setting("ca.plugin.root.auth.strictness", "true", boolean, "Advanced",
            "Agents must connect with TLS and a certificate from the cloud's CA (false: agents without "
            "TLS are admitted too, and logged)."),
    Setting("ca.framework.cert.validity.period", "365", int, "Advanced",
            "Days a host certificate issued by the cloud's CA is valid; agents renew at two thirds."),
    Setting("allow.user.expunge.recover.vm", "false", boolean, "Advanced",
            "Whether users (not only admins) may expunge their destroyed VMs and recover them."),
]}

# The settings that may also be set for one zone, cluster, storage pool, domain or account (CloudStack's
# scopes), each read there by what uses it; and the settings that turn others' features on.
_SCOPES = {
    "cpu.overprovisioning.factor": "Cluster",  # (the cluster's cpu_overcommit: the planner's index)
    "mem.overprovisioning.factor": "Cluster",
    "storage.overprovisioning.factor": "StoragePool",  # (the planner's pool index)
    "pool.storage.capacity.disablethreshold": "Zone",
    "allow.user.expunge.recover.vm": "Account",
    **{name: "Domain" for name in list(SETTINGS) if name.startswith("password.policy.")},  # (new passwords)
}
_PARENTS = {"prometheus.exporter.allowed.ips": "prometheus.exporter.enable",
            "api.throttling.interval": "api.throttling.enabled",
            "api.throttling.max": "api.throttling.enabled"}
# read at each use (the others when the server starts; a scoped value, where its scope is used, at once)
_DYNAMIC = {"vm.stats.interval", "prometheus.exporter.enable", "prometheus.exporter.allowed.ips",
            "sortkey.algorithm", "allow.user.create.projects", "allow.user.expunge.recover.vm",
            *(name for name in SETTINGS if name.startswith("password.policy."))}
SETTINGS.update({name: replace(SETTINGS[name], scope=_SCOPES.get(name, "Global"),
                               parent=_PARENTS.get(name, ""), dynamic=name in _DYNAMIC)
                 for name in set(_SCOPES) | set(_PARENTS) | _DYNAMIC})
SCOPES = ("Zone", "Cluster", "StoragePool", "Domain", "Account")

# CloudStack's setting groups: (name, description, precedence, its subgroups by precedence); and the
# (group, subgroup) of each setting, by the first name prefix that matches.
GROUPS = (
    ("Access", "Users, accounts, projects, passwords and the API", 1,
     ("Account", "Project", "Password Policy", "API", "Security")),
    ("Compute", "VMs, hosts, clusters, placement and high availability", 2,
     ("Allocation", "Capacity", "High Availability", "Virtual Machine", "Host")),
    ("Storage", "Primary storage", 3, ("Primary Storage",)),
    ("Network", "Guest networks", 4, ("Network",)),
    ("Management Server", "The management servers and their agents", 5, ("Cluster", "Agent", "Metrics")),
    ("Miscellaneous", "Everything else", 999, ("Others",)),
)
_GROUPS = (
    ("max.", ("Access", "Account")), ("allow.user.", ("Access", "Project")),
    ("password.policy.", ("Access", "Password Policy")), ("incorrect.login", ("Access", "Security")),
    ("api.", ("Access", "API")), ("ca.", ("Access", "Security")),
    ("vm.allocation", ("Compute", "Allocation")), ("host.capacityType", ("Compute", "Allocation")),
    ("planner.", ("Compute", "Allocation")), ("cpu.", ("Compute", "Capacity")),
    ("mem.", ("Compute", "Capacity")),
    ("cluster.cpu", ("Compute", "Capacity")), ("cluster.memory", ("Compute", "Capacity")),
    ("ha.", ("Compute", "High Availability")), ("start.", ("Compute", "Virtual Machine")),
    ("expunge.", ("Compute", "Virtual Machine")), ("vm.", ("Compute", "Virtual Machine")),
    ("sortkey.", ("Miscellaneous", "Others")), ("capacity.", ("Compute", "Capacity")),
    ("storage.", ("Storage", "Primary Storage")), ("pool.", ("Storage", "Primary Storage")),
    ("network.", ("Network", "Network")), ("cluster.", ("Management Server", "Cluster")),
    ("indirect.", ("Management Server", "Agent")), ("ping.", ("Management Server", "Agent")),
    ("wait", ("Management Server", "Agent")), ("prometheus.", ("Management Server", "Metrics")),
)


def seed(conn: Connection) -> int:
    """Insert the settings missing from the table; returns how many were added."""
    present = dict(conn.execute(sa.select(configuration.c.name, configuration.c.scope)).all())
    missing = [s for name, s in SETTINGS.items() if name not in present]
    if missing:
        conn.execute(configuration.insert(), [
            {"name": s.name, "value": None, "default_value": s.default, "category": s.category,
             "description": s.description, "scope": s.scope} for s in missing])
    for name, scope in present.items():  # (a setting that became scoped in a newer version)
        if name in SETTINGS and SETTINGS[name].scope != scope:
            conn.execute(configuration.update().where(configuration.c.name == name)
                         .values(scope=SETTINGS[name].scope))
    return len(missing)


def current(conn: Connection) -> dict[str, object]:
    """Every known setting's value (the admin's, else the default), parsed to its kind."""
    rows = conn.execute(sa.select(configuration.c.name, configuration.c.value, configuration.c.default_value))
    values = {name: value if value is not None else default for name, value, default in rows}
    parsed: dict[str, object] = {}
    for name, s in SETTINGS.items():
        raw = values.get(name, s.default)
        try:
            parsed[name] = s.kind(raw)
        except ValueError:
            raise SettingError(f"setting {name} = {raw!r} in the configuration table is not "
                               f"{KIND_NAMES.get(s.kind, 'a value of its kind')}") from None
    return parsed


KIND_NAMES: dict[object, str] = {int: "an integer", float: "a number", boolean: "true or false"}


class SettingError(ValueError):
    """A value in the configuration table that its setting cannot take."""


def prefixed(conn: Connection, prefix: str) -> dict[str, object]:
    """The current values of the settings whose names start with ``prefix`` (read now: an admin's
    change applies at once)."""
    rows = conn.execute(sa.select(configuration.c.name, configuration.c.value, configuration.c.default_value)
                        .where(configuration.c.name.startswith(prefix, autoescape=True)))
    parsed: dict[str, object] = {}
    for name, value, default in rows:
        s = SETTINGS.get(name)
        if s is None:
            continue
        try:
            parsed[name] = s.kind(value if value is not None else default)
        except ValueError:
            parsed[name] = s.kind(s.default)
    return parsed
