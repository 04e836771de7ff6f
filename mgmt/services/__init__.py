"""The domain's services: what any front end (the CloudStack API today) calls.

One service per area owns its workflows and queries; a front end parses, authorizes, calls one method
and renders. ``Services`` is the running server's parts and the services built on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import infra, offerings  # noqa: F401 - their kinds and creates are declared on import
from .accounts import Accounts
from .affinity import AffinityGroups
from .alerts import Alerts
from .async_jobs import AsyncJobs
from .capacity import Capacity
from .crud import Resources
from .events import Events
from .guest_data import SshKeyPairs, UserData
from .hosts import Hosts
from .management_servers import ManagementServers
from .metrics import Metrics
from .networks import Networks
from .projects import Projects
from .security_groups import SecurityGroups
from .sessions import Sessions
from .settings import Settings
from .tags import Tags
from .templates import Templates
from .tenancy import Tenancy
from .vms import VirtualMachines
from .volumes import Volumes

SESSION_TIMEOUT = 1800.0  # seconds of inactivity after which a login session ends

if TYPE_CHECKING:
    from ..agents.manager import AgentManager
    from ..api.app import Api
    from ..catalog import Catalog
    from ..cluster.balance import Balancer
    from ..cluster.forward import PeerLinks, PeerPort
    from ..cluster.peers import Peers
    from ..db.database import Database
    from ..ha.manager import HaManager
    from ..jobs.runner import JobRunner
    from ..orchestration.engine import Orchestrator
    from ..planner.service import Placement
    from ..security.trust import Trust


@dataclass
class Services:
    """The running server's parts (for tests and the services) and the domain services on them."""

    db: Database
    msid: int
    values: dict[str, Any]
    agents: AgentManager
    placement: Placement
    jobs: JobRunner
    orchestrator: Orchestrator
    trust: Trust
    catalog: Catalog
    api_url: str = ""
    api: Api | None = None
    ha: HaManager | None = None
    peers: Peers | None = None  # several servers (PostgreSQL): the live management servers,
    peer_links: PeerLinks | None = None  # forwarding to them, what they forward here,
    peer_port: PeerPort | None = None
    balancer: Balancer | None = None  # and where agents go
    resources: Resources = field(init=False)
    hosts: Hosts = field(init=False)
    vms: VirtualMachines = field(init=False)
    templates: Templates = field(init=False)
    networks: Networks = field(init=False)
    volumes: Volumes = field(init=False)
    affinity: AffinityGroups = field(init=False)
    settings: Settings = field(init=False)
    async_jobs: AsyncJobs = field(init=False)
    accounts: Accounts = field(init=False)
    events: Events = field(init=False)
    alerts: Alerts = field(init=False)
    capacity: Capacity = field(init=False)
    keypairs: SshKeyPairs = field(init=False)
    user_data: UserData = field(init=False)
    security_groups: SecurityGroups = field(init=False)
    sessions: Sessions = field(init=False)
    management_servers: ManagementServers = field(init=False)
    tenancy: Tenancy = field(init=False)
    projects: Projects = field(init=False)
    metrics: Metrics = field(init=False)
    tags: Tags = field(init=False)
    stats_collector: Any = None  # the VM statistics collector (mgmt.metrics.collector), when it runs

    def __post_init__(self) -> None:
        self.resources = Resources(self.db, self.placement)
        self.hosts = Hosts(self.db, self.placement, self.orchestrator, self.agents)
        self.templates = Templates(self.db)
        self.networks = Networks(self.db)
        self.affinity = AffinityGroups(self.db)
        self.settings = Settings(self.db)
        self.async_jobs = AsyncJobs(self.db, self.jobs)
        self.accounts = Accounts(self.db)
        self.events = Events(self.db)
        self.alerts = Alerts(self.db)
        self.capacity = Capacity(self.db, self.values)
        self.keypairs = SshKeyPairs(self.db)
        self.user_data = UserData(self.db)
        self.security_groups = SecurityGroups(self.db)
        self.sessions = Sessions(self.db, SESSION_TIMEOUT)
        self.management_servers = ManagementServers(
            self.db, int(str(self.values.get("cluster.heartbeat.threshold", 15000))) / 1000)
        self.volumes = Volumes(self.db, self.orchestrator, self.jobs)
        self.vms = VirtualMachines(self.db, self.orchestrator, self.catalog, self.jobs)
        self.tenancy = Tenancy(self.db, self.vms, self.volumes, self.networks)
        self.projects = Projects(self.db, self.tenancy)
        self.metrics = Metrics(self.db)
        self.tags = Tags(self.db)
