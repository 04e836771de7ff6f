"""A management server that deploys one VM as soon as a host is Up: run as a process by
``test_processes.py``, which kills it mid-deploy (``python -m tests.mgmt.crash_server DATA PORT ZONE [job]``;
with ``job`` the deploy runs as the API runs it, in a deployVirtualMachine job)."""

from __future__ import annotations

import sys

import sqlalchemy as sa
import trio

from mgmt import logs
from mgmt.db.schema import networks, service_offerings, templates, zones
from mgmt.orchestration.vms import DeploySpec
from mgmt.server import ServerConfig, Services, serve


async def main(data_dir: str, port: int, zone_file: str, as_job: bool = False) -> None:
    async with trio.open_nursery() as nursery:
        services: Services = await nursery.start(serve, ServerConfig(
            data_dir=data_dir, agent_port=port, api_port=0, bind="127.0.0.1", zone_config=zone_file))
        while "Up" not in services.agents.status.values() or not services.placement.planner.index.n:
            await trio.sleep(0.05)
        with services.db.engine.connect() as conn:
            ids = [conn.scalar(sa.select(t.c.id)) for t in (zones, service_offerings, templates, networks)]
        print("deploying", flush=True)
        spec = DeploySpec(ids[0], ids[1], ids[2], (ids[3],))
        if as_job:
            vm_id = await services.orchestrator.deploy(spec, start=False)
            job = await services.jobs.submit("deployVirtualMachine",
                                             lambda: services.orchestrator.first_start(vm_id),
                                             instance_type="VirtualMachine", instance_id=vm_id)
            await services.jobs.done[job].wait()
        else:
            await services.orchestrator.deploy(spec)
        print("deployed", flush=True)


if __name__ == "__main__":
    logs.configure("INFO")
    trio.run(main, sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:] == ["job"])
