"""``python -m mgmt local`` (what ``make run`` starts): the management server on the embedded defaults with a
simulated zone in the same process, ready for ``cs``.

The zone comes from ``docs/examples/zone.toml`` (one zone, two pods, four clusters, primary storage, a
template, two service offerings, a disk offering and a shared guest network); ``HOSTS`` simulated hosts
of varied sizes (16 by default) connect to the agent port over real TCP, spread over the four
clusters. The environment chooses ``API_PORT`` (8080), ``AGENT_PORT`` (8250), ``DATA_DIR`` (./data),
``HOSTS`` (16) and ``BIND`` (127.0.0.1). The hosts keep their ids across runs, so a second run finds
the same cloud; a simulated host forgets its VMs when it stops, so VMs that were running come back
Stopped (the power report says they are off). Ctrl-C (or SIGTERM) stops the server and the hosts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import trio

from agent.fleet import SIZES, FleetPlan, placement
from agent.shell import Agent, AgentSettings
from agent.simulator import SimulatorResource
from agent.tls import Credentials
from mgmt.process import tune_gc

from . import logs
from .server import ServerConfig, StartupError, serve
from .services import Services
from .settings import SettingError

ZONE_FILE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "zone.toml"


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name}={raw!r}: give a number from {low} to {high}")
    return int(raw)


def config_from(env: Mapping[str, str]) -> tuple[ServerConfig, int]:
    """The server's configuration and the number of simulated hosts, from the environment."""
    hosts = _int(env, "HOSTS", 16, 1, 5000)
    config = ServerConfig(
        data_dir=env.get("DATA_DIR") or "./data",
        agent_port=_int(env, "AGENT_PORT", 8250, 0, 65535),
        api_port=_int(env, "API_PORT", 8080, 0, 65535),
        bind=env.get("BIND", "127.0.0.1"),
        zone_config=str(ZONE_FILE),
    )
    return config, hosts


def write_cs_config(data_dir: Path, url: str, creds: Mapping[str, str]) -> Path:
    """``cloudstack.ini`` for the ``cs`` command line (mode 0600: it holds the admin's secret key)."""
    path = data_dir / "cloudstack.ini"
    text = f"[cloudstack]\nendpoint = {url}\nkey = {creds['apikey']}\nsecret = {creds['secretkey']}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


async def host_credentials(services: Services, guids: list[str], base: Path) -> dict[str, Credentials]:
    """The simulated hosts' certificates, from the server's CA (kept in DATA_DIR/hosts/<guid> and used
    again on the next run, unless revoked or due for renewal): they connect with TLS like real hosts."""
    found = {g: Credentials(base / g) for g in guids}
    trust = services.trust
    missing = [g for g, c in found.items()
               if not c.has_certificate or not _still_good(c, trust.ca.pem, trust.revoked)]
    for guid, (key, issued) in (await trust.issue_many(missing)).items():
        found[guid] = Credentials.store(base / guid, key, issued.pem, trust.ca.pem)
    return found


def _still_good(creds: Credentials, ca_pem: str, revoked: set[str]) -> bool:
    from cryptography import x509

    if creds.ca_pem() != ca_pem:
        return False
    cert = x509.load_pem_x509_certificate((creds.directory / "cert.pem").read_bytes())
    due = creds.renew_at()
    return format(cert.serial_number, "x") not in revoked and due is not None and due > datetime.now(UTC)


async def run_local(config: ServerConfig, hosts: int, *, out: object = sys.stdout) -> int:
    served = trio.Event()

    async def server(task_status: trio.TaskStatus[Services] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await serve(config, task_status=task_status)
        finally:
            served.set()

    async with trio.open_nursery() as nursery:
        services: Services = await nursery.start(server)
        plan = FleetPlan(mgmt=f"127.0.0.1:{services.agents.port}", hosts=hosts)
        credentials = await host_credentials(services, [placement(plan, i).guid for i in range(hosts)],
                                             Path(config.data_dir) / "hosts")
        agents = []
        for i in range(hosts):
            where = placement(plan, i)
            settings = AgentSettings(
                mgmt=[("127.0.0.1", services.agents.port)], placement=where, drain_seconds=5,
                credentials=credentials[where.guid],
            )
            # the shared pools as one real directory every simulated host mounts: heartbeats go there
            agent = Agent(settings, SimulatorResource(SIZES[i % len(SIZES)], pool_path=f"/sim/{i}",
                                                      storage_root=str(Path(config.data_dir) / "shared")))
            agents.append(agent)
        agent_scope = trio.CancelScope()

        async def run_agents() -> None:
            with agent_scope:
                async with trio.open_nursery() as inner:
                    for agent in agents:
                        inner.start_soon(agent.run)

        nursery.start_soon(run_agents)
        with trio.move_on_after(60):  # hosts that are not Up by then are reported as such
            async with trio.open_nursery() as waiting:

                async def unless_stopped() -> None:
                    await served.wait()  # Ctrl-C before every host was Up
                    waiting.cancel_scope.cancel()

                waiting.start_soon(unless_stopped)
                for agent in agents:
                    await agent.up.wait()
                waiting.cancel_scope.cancel()
        if served.is_set():
            agent_scope.cancel()
            return 0
        up = sum(a.status == "up" for a in agents)
        data_dir = Path(config.data_dir)
        creds = json.loads((data_dir / "admin-credentials.json").read_text())
        ini = write_cs_config(data_dir, services.api_url, creds)
        venv_cs = Path(sys.executable).parent / "cs"
        cs = os.path.relpath(venv_cs) if venv_cs.exists() else "cs"
        print(
            f"\nCumulo is running: {up} of {hosts} simulated hosts Up in zone1.\n"
            f"  API:          {services.api_url}\n"
            f"  credentials:  {data_dir / 'admin-credentials.json'} (API keys, admin password; mode 0600)\n"
            f"  cs config:    {ini}\n"
            f"  try:          CLOUDSTACK_CONFIG={ini} {cs} listVirtualMachines listall=true\n"
            f"  walkthrough:  docs/quickstart.md\n"
            f"Ctrl-C stops it; running it again keeps the data.\n",
            file=out,  # type: ignore[call-overload]
            flush=True,
        )
        await served.wait()  # serve() returns when SIGINT or SIGTERM arrives; the simulated hosts stop too
        agent_scope.cancel()
    return 0


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        config, hosts = config_from(os.environ if env is None else env)
    except ValueError as e:
        print(f"python -m mgmt local: {e}", file=sys.stderr)
        return 2
    logs.configure("INFO")
    status = 1
    try:
        tune_gc()
        status = trio.run(run_local, config, hosts)
    except* OSError as group:
        print(
            f"python -m mgmt local: {group.exceptions[0]} (is something else on API_PORT "
            f"{config.api_port} or AGENT_PORT {config.agent_port}? set them to free ports)",
            file=sys.stderr,
        )
    except* (SettingError, StartupError) as group:
        print(f"python -m mgmt local: {group.exceptions[0]}", file=sys.stderr)
        status = 2
    return status
