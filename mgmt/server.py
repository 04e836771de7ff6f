"""The management server process: database, inventory, agent manager, under one root nursery."""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import json
import logging
import os
import random
import shutil
import signal
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from . import bootstrap, settings
from .agents.manager import AgentManager
from .api.app import Api, serve_api
from .catalog import Catalog, CatalogChanged
from .cluster import members
from .cluster.balance import Balancer
from .cluster.forward import PeerLinks, PeerPort
from .cluster.peers import Peers
from .db import journal
from .db.database import Database, sqlite_url
from .ha.manager import HaManager, HaSettings
from .jobs import runner as jobs
from .metrics.collector import VmStatsCollector
from .orchestration.engine import OrchestrationSettings, Orchestrator
from .planner.deltas import InventoryChanged
from .planner.service import Placement
from .security.ca import CertificateError
from .security.trust import Trust
from .services import Services
from .services.accounts import ensure_admin
from .tasks import supervised

log = logging.getLogger("mgmt")


@dataclass
class ServerConfig:
    data_dir: str = "./data"
    db: str = ""  # empty: SQLite in the data directory
    agent_port: int = 8250
    api_port: int = 8080
    bind: str = ""  # empty: every address
    zone_config: str = ""
    api_cert: str = ""  # PEM certificate (chain) for HTTPS on the API port; empty: plain HTTP
    api_key: str = ""  # its PEM private key
    # Several servers (PostgreSQL): the port peers forward host commands to, and the address this server
    # is reached at by peers and agents (empty: the bind address when it names one, else the host name).
    peer_port: int = 9090
    advertise: str = ""


class StartupError(Exception):
    """The server cannot start: one line naming what (a path, the database) and why."""


def _check_api_tls(config: ServerConfig) -> None:
    if bool(config.api_cert) != bool(config.api_key):
        raise StartupError("api_cert and api_key go together (HTTPS for the API needs both)")
    if config.api_cert:
        import ssl

        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.api_cert, config.api_key)
        except (OSError, ssl.SSLError) as e:
            raise StartupError(f"API certificate {config.api_cert} / key {config.api_key}: {e}") from None


def server_id(data_dir: Path) -> int:
    """This server's id (msid), made once and kept in the data directory."""
    state = data_dir / "mgmt-state.json"
    if state.exists():
        return int(json.loads(state.read_text())["msid"])
    msid = random.SystemRandom().getrandbits(48)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"msid": msid}))
    os.replace(tmp, state)
    return msid


def advertised(config: ServerConfig) -> str:
    if config.advertise:
        return config.advertise
    if config.bind and config.bind not in ("0.0.0.0", "::"):
        return config.bind
    return socket.gethostname()


class _SqliteLock:
    """SQLite serves one management server: a lock file beside the database, held while the server
    runs (the kernel drops it when the process dies, however it dies)."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise StartupError(f"another management server runs on the SQLite database {db_path} (it holds "
                               f"{self.path}); SQLite serves one server: use PostgreSQL (--db "
                               f"postgresql://...) for several") from None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Prepared:
    db: Database
    msid: int
    values: dict[str, Any]
    lock: _SqliteLock | None
    version: str
    alone: bool


def prepare(config: ServerConfig) -> tuple[Database, int, dict[str, Any]]:
    """``prepare_server`` for tools and tests that prepare a database and do not run the server on it
    (the SQLite lock is let go at once)."""
    p = prepare_server(config)
    if p.lock is not None:
        p.lock.release()
    return p.db, p.msid, p.values


def prepare_server(config: ServerConfig) -> Prepared:
    """Blocking start-up work (run in a thread): migrate, seed settings, apply the zone file, register.
    Raises StartupError, in one line, when the data directory or the database cannot be used."""
    _check_api_tls(config)
    data_dir = Path(config.data_dir)
    try:
        return _prepare(config, data_dir)
    except OSError as e:
        where = e.filename or data_dir
        raise StartupError(f"data directory {data_dir.resolve()}: {where}: {e.strerror or e}") from None
    except sa.exc.OperationalError as e:
        cause = str(e.orig).splitlines()[0] if e.orig is not None else str(e).splitlines()[0]
        if config.db:
            shown = sa.engine.make_url(config.db).render_as_string(hide_password=True)
            raise StartupError(f"database {shown}: {cause}") from None
        raise StartupError(f"data directory {data_dir.resolve()}: the database {sqlite_url(data_dir)[10:]}: "
                           f"{cause} ({_free(data_dir)} free there)") from None


def _free(path: Path) -> str:
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unknown space"
    return f"{free / 2**20:.1f} MiB" if free >= 2**20 else f"{free} bytes"


def _prepare(config: ServerConfig, data_dir: Path) -> Prepared:
    data_dir.mkdir(parents=True, exist_ok=True)
    url = config.db or sqlite_url(data_dir)
    lock = None
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            lock = _SqliteLock(Path(path).resolve())
    try:
        db = Database(url)
        with db.engine.connect() as session:  # PostgreSQL: servers starting together take turns here
            if db.dialect == "postgresql":
                session.exec_driver_sql(f"SELECT pg_advisory_lock({STARTUP_LOCK})")
                session.commit()
            try:
                return _prepare_locked(config, data_dir, db, lock)
            finally:
                if db.dialect == "postgresql":
                    session.exec_driver_sql(f"SELECT pg_advisory_unlock({STARTUP_LOCK})")
                    session.commit()
    except BaseException:
        if lock is not None:
            lock.release()
        raise


STARTUP_LOCK = 0x43756D756C6F  # "Cumulo": the advisory lock servers starting on one database take turns on


def _prepare_locked(config: ServerConfig, data_dir: Path, db: Database, lock: _SqliteLock | None) -> Prepared:
    msid = server_id(data_dir)
    version = software_version()
    check_schema(db, msid, version)
    revision = db.migrate()
    with db.engine.begin() as conn:
        settings.seed(conn)
        if config.zone_config:
            counts = bootstrap.apply(conn, bootstrap.load(config.zone_config))
            log.info("zone file %s applied: %s", config.zone_config, counts)
            if db.dialect == "postgresql":  # running peers read their catalogs and indexes again
                body = journal.encode([CatalogChanged("zones"), InventoryChanged()])
                assert body is not None
                journal.append(conn, msid, body, datetime.now(UTC))
        values = settings.current(conn)
        threshold = int(str(values["cluster.heartbeat.threshold"])) / 1000
        peers = members.live_peers(conn, msid, threshold)
        alone = db.dialect != "postgresql" or not peers
        # Starting: peers neither give it agents nor forward to it until its ports are open (``started``)
        members.register(conn, msid, {"name": socket.gethostname(), "address": advertised(config),
                                      "agent_port": config.agent_port, "peer_port": 0, "version": version,
                                      "schema_revision": revision}, state="Starting")
        settled = members.settle(conn, msid, alone=alone)
        if settled["hosts"]:
            log.warning("%d hosts were still held by this server from a run that did not stop cleanly; "
                        "now Disconnected until their agents reconnect", settled["hosts"])
        if settled["ha_items"]:
            log.warning("%d HA items this server was working when it stopped are pending again",
                        settled["ha_items"])
        vms_settled = {k: v for k, v in settled.items() if k not in ("hosts", "jobs", "ha_items")}
        if settled["jobs"] or any(vms_settled.values()):
            log.warning("%d jobs of a run that did not stop cleanly were failed; VMs settled: %s",
                        settled["jobs"], vms_settled)
        for peer in peers:
            if peer.version != version:
                log.warning("management server %d runs version %s beside this one's %s: upgrade them all",
                            peer.msid, peer.version or "(unknown)", version)
    log.info("database %s at revision %s; management server id %d%s", db.dialect, revision, msid,
             f"; {len(peers)} peers up" if peers else "")
    return Prepared(db, msid, values, lock, version, alone)


def software_version() -> str:
    try:
        return importlib.metadata.version("cumulo")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def check_schema(db: Database, msid: int, version: str) -> None:
    """Refuse a database whose schema this server does not know (a newer server migrated it), and an
    upgrade of the schema under servers still running on the old one."""
    with db.engine.connect() as conn:
        current = db.revision(conn)
    if current is None:
        return  # a new database
    if not db.knows(current):
        raise StartupError(f"the database's schema is at revision {current}, which this server "
                           f"({version}, schema {db.head()}) does not know: a newer server upgraded it; "
                           f"run that version here too")
    if current == db.head():
        return
    with db.engine.connect() as conn:
        try:
            peers = members.live_peers(conn, msid, 15.0)
        except sa.exc.DBAPIError:  # a schema older than the columns read: nobody runs the new code yet
            conn.rollback()
            peers = []
    if peers and db.dialect == "postgresql":
        names = ", ".join(f"{p.msid} ({p.version or 'unknown version'})" for p in peers)
        raise StartupError(f"the schema needs an upgrade from revision {current} to {db.head()}, but "
                           f"management servers {names} still run on it: stop them first, then start the "
                           f"new version")


async def serve(config: ServerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> int:
    p = await trio.to_thread.run_sync(prepare_server, config)
    try:
        return await _serve(config, p, task_status)
    except* StartupError as group:  # (raised inside the server's nursery: one line, not a traceback)
        raise group.exceptions[0] from None
    finally:
        if p.lock is not None:
            p.lock.release()


async def _listen(nursery: trio.Nursery, what: str, port: int, serve_fn: Any, *args: Any) -> Any:
    """Start a listener; a port that cannot be had is a StartupError naming it."""
    try:
        return await nursery.start(serve_fn, port, *args)
    except OSError as e:
        raise StartupError(f"the {what} port {port}: {e.strerror or e}") from None


async def _serve(config: ServerConfig, p: Prepared, task_status: Any) -> int:
    db, msid, values = p.db, p.msid, p.values
    clustered = db.dialect == "postgresql"

    def make_trust() -> Trust:
        try:
            strict = bool(values["ca.plugin.root.auth.strictness"])
            days = int(values["ca.framework.cert.validity.period"])
            return Trust.prepare(db, Path(config.data_dir), strict=strict, validity_days=days,
                                 bind=config.bind, msid=msid, advertise=advertised(config))
        except OSError as e:
            raise StartupError(f"data directory {Path(config.data_dir).resolve()}: the CA: "
                               f"{e.filename or ''}: {e.strerror or e}") from None
        except CertificateError as e:
            raise StartupError(f"the CA: {e}") from None

    trust = await trio.to_thread.run_sync(make_trust)
    manager = AgentManager(db, msid, ping_interval=float(values["ping.interval"]),
                           ping_timeout=float(values["ping.timeout"]), trust=trust)
    peers: Peers | None = None
    links: PeerLinks | None = None
    port_for_peers: PeerPort | None = None
    balancer: Balancer | None = None
    if clustered:  # several servers may share this database: the journal, peers, balancing, forwarding
        db.journal_msid = msid
        peers = Peers(db, msid, values, p.version)
        try:
            balancer = Balancer(manager, msid, str(values["indirect.agent.lb.algorithm"]),
                                float(values["cluster.agent.rebalance.rate"]))
        except ValueError as e:
            raise StartupError(str(e)) from None
        assert trust.peer_server is not None and trust.peer_client is not None
        port_for_peers = PeerPort(manager, trust.ca, trust.peer_server)
        watching = peers
        links = PeerLinks(db, msid, trust.ca, trust.peer_client, lambda: watching.live)
        manager.forwarder = links.send
        peers.listeners.append(balancer.changed)
        peers.beat_listeners.append(balancer.beat)
        peers.gone_listeners.append(links.peer_gone)
        db.remote_listeners.append(links.journal)

        def revoked(jid: int, deltas: list[Any]) -> None:
            for guid in trust.revoked_by_peer(jid, deltas):
                link = manager.newest.get(guid)
                if link is not None:
                    link.close("its certificate was revoked")

        db.remote_listeners.append(revoked)
    placement = Placement(db, values)
    manager.status_listeners.append(placement.host_changed)
    runner = jobs.JobRunner(db, msid)
    catalog = Catalog(db)
    orchestrator = Orchestrator(db, manager, placement, OrchestrationSettings.from_values(values),
                                busy=lambda: [i for kind, i in runner.holding if kind == "VirtualMachine"],
                                catalog=catalog)
    manager.suspect_listeners.append(placement.host_suspect)
    ha = HaManager(db, msid, manager, orchestrator, runner, HaSettings.from_values(values))
    services = Services(db, msid, values, manager, placement, runner, orchestrator, trust, catalog, ha=ha)
    services.peers, services.peer_links, services.peer_port = peers, links, port_for_peers
    services.balancer = balancer
    collector = VmStatsCollector(db, manager, int(values.get("vm.stats.interval", 60000)) / 1000)
    services.stats_collector = collector
    fenced = False
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            if peers is not None:  # first: it notes where the change journal is before anything is read
                await nursery.start(peers.run)
            await nursery.start(placement.run)
            await nursery.start(runner.run)
            port = await _listen(nursery, "agent", config.agent_port, manager.serve, config.bind or None)
            peer_port = 0
            if port_for_peers is not None and links is not None and balancer is not None:
                peer_port = await _listen(nursery, "peer", config.peer_port, port_for_peers.serve,
                                          config.bind or None)
                await nursery.start(links.run)
                nursery.start_soon(supervised, "agent rebalancing", balancer.run)
            await db.run(members.started, msid, port, peer_port)
            if peers is not None:
                peers.ready.set()
            await nursery.start(orchestrator.run_background)
            await nursery.start(ha.run)
            nursery.start_soon(supervised, "VM statistics", collector.run)
            services.api = Api(services)
            addresses = await nursery.start(functools.partial(
                serve_api, services.api, config.bind or "0.0.0.0", config.api_port,
                certfile=config.api_cert, keyfile=config.api_key))
            services.api_url = f"{addresses[0]}/client/api"
            credentials = Path(config.data_dir) / "admin-credentials.json"
            if await db.run(ensure_admin, credentials, services.api_url):
                log.info("admin account created; its API keys are in %s", credentials)
            log.info("listening for agents on port %d, the API at %s%s", port, services.api_url,
                     f", peers on port {peer_port}" if peer_port else "")
            task_status.started(services)

            def stop() -> None:
                manager.stop()
                if port_for_peers is not None and links is not None:
                    port_for_peers.stop()
                    links.stop()
                nursery.cancel_scope.cancel()

            async def on_signal() -> None:
                async for signum in signals:
                    log.info("%s received: closing agent connections", signal.Signals(signum).name)
                    stop()
                    return

            async def on_fence() -> None:
                nonlocal fenced
                assert peers is not None
                await peers.fence.wait()
                fenced = True
                stop()

            nursery.start_soon(on_signal)
            if peers is not None:
                nursery.start_soon(on_fence)
    if not fenced:
        await trio.to_thread.run_sync(_stopped, db, msid)
    else:
        await trio.to_thread.run_sync(db.dispose)
    log.info("management server %d stopped%s", msid, " (declared down by a peer)" if fenced else "")
    return 1 if fenced else 0


def _stopped(db: Database, msid: int) -> None:
    with db.engine.begin() as conn:
        members.stopped(conn, msid)
    db.dispose()
