"""The management server process: database, inventory, agent manager, under one root nursery."""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from . import bootstrap, settings
from .agents import registry
from .agents.manager import AgentManager
from .api.app import Api, serve_api
from .catalog import Catalog
from .db.database import Database, sqlite_url
from .db.schema import management_servers
from .ha import work as ha_work
from .ha.manager import HaManager, HaSettings
from .jobs import runner as jobs
from .orchestration import reconcile
from .orchestration.engine import OrchestrationSettings, Orchestrator
from .planner.service import Placement
from .security.trust import Trust
from .services import Services
from .services.accounts import ensure_admin

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


def prepare(config: ServerConfig) -> tuple[Database, int, dict[str, Any]]:
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


def _prepare(config: ServerConfig, data_dir: Path) -> tuple[Database, int, dict[str, Any]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.db or sqlite_url(data_dir))
    revision = db.migrate()
    msid = server_id(data_dir)
    with db.engine.begin() as conn:
        settings.seed(conn)
        if config.zone_config:
            counts = bootstrap.apply(conn, bootstrap.load(config.zone_config))
            log.info("zone file %s applied: %s", config.zone_config, counts)
        now = sa.func.now()
        row = {"name": socket.gethostname(), "address": config.bind or "0.0.0.0",
               "agent_port": config.agent_port, "state": "Up", "last_heartbeat": now, "started": now}
        if conn.execute(management_servers.update().where(management_servers.c.msid == msid)
                        .values(**row)).rowcount == 0:
            conn.execute(management_servers.insert().values(msid=msid, **row))
        values = settings.current(conn)
        released = registry.release_hosts(conn, msid)
        if released:
            log.warning("%d hosts were still held by this server from a run that did not stop cleanly; "
                        "now Disconnected until their agents reconnect", released)
        orphans = jobs.fail_orphans(conn, msid)
        resumed = ha_work.release_after_restart(conn, msid)
        if resumed:
            log.warning("%d HA items this server was working when it stopped are pending again", resumed)
        deploys = {j.instance_id for j in orphans if j.command == "deployVirtualMachine" and j.instance_id}
        settled = reconcile.after_restart(conn, deploys)
        if orphans or any(settled.values()):
            log.warning("%d jobs of a run that did not stop cleanly were failed; VMs settled: %s",
                        len(orphans), settled)
    log.info("database %s at revision %s; management server id %d", db.dialect, revision, msid)
    return db, msid, values


async def serve(config: ServerConfig, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> int:
    db, msid, values = await trio.to_thread.run_sync(prepare, config)

    def make_trust() -> Trust:
        try:
            strict = bool(values["ca.plugin.root.auth.strictness"])
            days = int(values["ca.framework.cert.validity.period"])
            return Trust.prepare(db, Path(config.data_dir), strict=strict, validity_days=days,
                                 bind=config.bind)
        except OSError as e:
            raise StartupError(f"data directory {Path(config.data_dir).resolve()}: the CA: "
                               f"{e.filename or ''}: {e.strerror or e}") from None

    trust = await trio.to_thread.run_sync(make_trust)
    manager = AgentManager(db, msid, ping_interval=float(values["ping.interval"]),
                           ping_timeout=float(values["ping.timeout"]), trust=trust)
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
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(placement.run)
            await nursery.start(runner.run)
            port = await nursery.start(manager.serve, config.agent_port, config.bind or None)
            await nursery.start(orchestrator.run_background)
            await nursery.start(ha.run)
            services.api = Api(services)
            addresses = await nursery.start(functools.partial(
                serve_api, services.api, config.bind or "0.0.0.0", config.api_port,
                certfile=config.api_cert, keyfile=config.api_key))
            services.api_url = f"{addresses[0]}/client/api"
            credentials = Path(config.data_dir) / "admin-credentials.json"
            if await db.run(ensure_admin, credentials, services.api_url):
                log.info("admin account created; its API keys are in %s", credentials)
            log.info("listening for agents on port %d, the API at %s", port,
                     services.api_url)
            task_status.started(services)

            async def on_signal() -> None:
                async for signum in signals:
                    log.info("%s received: closing agent connections", signal.Signals(signum).name)
                    manager.stop()
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_signal)
    await trio.to_thread.run_sync(_stopped, db, msid)
    log.info("management server %d stopped", msid)
    return 0


def _stopped(db: Database, msid: int) -> None:
    with db.engine.begin() as conn:
        this = management_servers.c.msid == msid
        conn.execute(management_servers.update().where(this).values(state="Down"))
    db.dispose()
