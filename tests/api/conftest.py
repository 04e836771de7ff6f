"""A running cloud for API tests: the server with its API on a free port, four simulated hosts over real
TCP, and ``cs`` clients made from the admin credentials the server wrote."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from cs import CloudStack

from tests.mgmt.test_orchestration import Cloud, start_cloud


@dataclass
class ApiCloud:
    cloud: Cloud
    creds: dict[str, str]

    @property
    def url(self) -> str:
        return self.creds["url"]

    def client(self, method: str = "get", *, key: str = "", secret: str = "") -> CloudStack:
        return CloudStack(
            endpoint=self.url,
            key=key or self.creds["apikey"],
            secret=secret or self.creds["secretkey"],
            method=method,
            poll_interval=0.05,
            job_timeout=60,
            timeout=30,
        )

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking client call in a thread (the server runs in this trio loop)."""
        return await trio.to_thread.run_sync(fn)


async def start_api(nursery: trio.Nursery, tmp_path: Path, db: str = "", **settings: str) -> ApiCloud:
    cloud = await start_cloud(nursery, tmp_path, db, **{"ping.interval": "1", **settings})
    return ApiCloud(cloud, json.loads((tmp_path / "admin-credentials.json").read_text()))


@pytest.fixture
async def api(nursery: trio.Nursery, tmp_path: Path) -> ApiCloud:
    return await start_api(nursery, tmp_path)


@pytest.fixture
async def any_api(nursery: trio.Nursery, tmp_path: Path, db_url: str) -> ApiCloud:
    """The same, on SQLite and on PostgreSQL."""
    return await start_api(nursery, tmp_path, db_url)
