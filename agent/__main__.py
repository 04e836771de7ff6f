"""``python -m agent run ...``: run one host agent (also the ``cumulo-agent`` console script)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from agent.process import tune_gc

from .config import AgentConfig, default_name, load, parse_servers, stable_guid
from .faults import FaultTable
from .resource import HostSetupError, Placement, ServerResource
from .shell import Agent, AgentSettings
from .tls import Credentials

log = logging.getLogger("agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Cumulo host agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="connect to a management server and serve this host")
    sub.add_parser("build-template", add_help=False,
                   help="build the tiny guest template from Debian packages (see --help after it)")
    run.add_argument("--config", help="TOML file with the same settings as the flags")
    run.add_argument("--mgmt", help="management servers, HOST:PORT[,HOST:PORT...] (default 127.0.0.1:8250)")
    run.add_argument("--resource", choices=["libvirt", "simulator"])
    run.add_argument("--libvirt-uri", help="libvirt connection URI (default qemu:///system)")
    run.add_argument("--pool", help="libvirt storage pool for primary storage (default cumulo-primary)")
    run.add_argument("--pool-path", help="directory for that pool, created when the pool does not exist")
    run.add_argument("--domain-type", choices=["kvm", "qemu", "test"],
                     help="libvirt domain type (default: kvm when a KVM guest boots here, else qemu)")
    run.add_argument("--probe-kernel", help="kernel to try KVM with (default: the newest /boot/vmlinuz-*)")
    run.add_argument("--console-dir", help="where guests' console logs go (default STATE_DIR/console)")
    run.add_argument("--migration-uri",
                     help="libvirt URI other hosts migrate VMs to here (default qemu+tcp://PRIVATE_IP/system)")
    run.add_argument("--guest-underlay", help="the device isolated (VXLAN) guest networks ride on; its "
                                              "address is --private-ip (default: none, no isolated networks)")
    run.add_argument("--guid", help="this host's id (default: made once, kept in the state directory)")
    run.add_argument("--name", help="this host's name (default: the hostname)")
    run.add_argument("--zone")
    run.add_argument("--pod")
    run.add_argument("--cluster")
    run.add_argument("--host-tags", help="comma-separated host tags")
    run.add_argument("--private-ip")
    run.add_argument("--state-dir", help="where the agent keeps its guid (default ./agent-state)")
    run.add_argument("--faults", help="simulator fault rules (TOML)")
    run.add_argument("--sim-storage", help="simulator: a directory standing for the shared pools, where "
                     "the host writes its heartbeat (shared by the simulated hosts; default: none)")
    run.add_argument("--token", help="registration token for this host's first certificate (from the "
                                     "operator: python -m mgmt agent-token, or createAgentRegistrationToken)")
    run.add_argument("--no-tls", dest="tls", action="store_const", const=False,
                     help="plain TCP (only a server with ca.plugin.root.auth.strictness=false admits it)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def make_resource(config: AgentConfig, faults: FaultTable) -> ServerResource:
    if config.resource == "libvirt":
        from .kvm import LibvirtResource

        return LibvirtResource(config.libvirt_uri, pool=config.pool, pool_path=config.pool_path,
                               domain_type=config.domain_type, console_dir=config.console_dir,
                               state_dir=config.state_dir, probe_kernel=config.probe_kernel,
                               migration_uri=config.migration_uri, guest_underlay=config.guest_underlay)
    if config.resource == "simulator":
        from .simulator import SimulatorResource

        return SimulatorResource(faults=faults, storage_root=config.sim_storage)
    raise ValueError(f"unknown resource {config.resource!r} (libvirt or simulator)")


def reload_faults(config: AgentConfig, faults: FaultTable) -> None:
    """SIGHUP: read the fault file again; a bad file keeps the rules in force."""
    if not config.faults:
        log.info("SIGHUP: no fault file to reload")
        return
    try:
        faults.replace_with(FaultTable.load(config.faults))
    except (OSError, ValueError) as e:
        log.error("fault rules not reloaded, the old ones stay: %s", e)
    else:
        log.info("fault rules reloaded from %s: %d rules", config.faults, len(faults.rules))


async def serve(config: AgentConfig) -> int:
    guid = stable_guid(config)
    placement = Placement(guid=guid, name=config.name or default_name(), zone=config.zone, pod=config.pod,
                          cluster=config.cluster, private_ip=config.private_ip,
                          host_tags=tuple(t for t in config.host_tags.split(",") if t))
    credentials = Credentials(Path(config.state_dir) / "tls") if config.tls else None
    if credentials is not None and not credentials.has_certificate and not config.token:
        log.error("this host has no certificate yet: give the registration token the operator made "
                  "(--token; python -m mgmt agent-token), or --no-tls for a permissive server")
        return 2
    settings = AgentSettings(mgmt=parse_servers(config.mgmt), placement=placement,
                             ping_retries=config.ping_retries, drain_seconds=config.drain_seconds,
                             credentials=credentials, token=config.token,
                             heartbeat_state=str(Path(config.state_dir) / "heartbeat.json"))
    faults = FaultTable.load(config.faults) if config.faults else FaultTable()
    resource = make_resource(config, faults)
    try:
        await resource.open()
    except HostSetupError as e:
        log.error("agent %s cannot serve this host: %s", placement.name, e)
        await resource.aclose()
        return 1
    agent = Agent(settings, resource)
    log.info("agent %s (guid %s) starting with the %s resource, servers %s", placement.name, guid,
             config.resource, config.mgmt)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)

            async def on_signal() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        reload_faults(config, faults)
                        continue
                    log.info("agent %s: %s received, draining", placement.name, signal.Signals(signum).name)
                    finished = await agent.drain()
                    if not finished:
                        log.warning("agent %s: drain deadline passed with %d commands in flight",
                                    placement.name, agent.in_flight)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_signal)
    await resource.aclose()
    log.info("agent %s stopped", placement.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-template"]:
        from .kvm.guest_template import main as build_template

        return build_template(argv[1:])
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        config = load(args.config, overrides)
        parse_servers(config.mgmt)
    except (OSError, ValueError) as e:
        print(f"python -m agent: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    tune_gc()
    return trio.run(serve, config)


if __name__ == "__main__":
    sys.exit(main())
