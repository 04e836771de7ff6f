"""Async jobs: a row per long operation, run by a bounded pool of tasks, one job at a time per VM.

``submit`` writes the job row (status 0, pending; owned by this server) and returns its id at once;
the job runs in the runner's nursery under a capacity limiter. It ends with status 1 and a JSON result,
or status 2 with CloudStack's error code and text (a ``CumuloError``'s own; any other exception is an
internal error, logged with its traceback, its text not shown to the user). Jobs on one instance (a
VM, a host) queue behind each other in the order they were submitted, as CloudStack's sync queues do:
a start sent while a stop runs waits its turn (and is checked against the VM's state when its turn
comes); only a queue already ``MAX_QUEUED`` long refuses another (``ResourceBusy``). A VM with jobs
running or queued is busy, which tells the power-report follower to leave it alone.

At start-up ``fail_orphans`` ends the jobs a crashed run of this server left pending, with the reason;
orchestration then reconciles their VMs.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from ..db.database import Database, inserted_id
from ..db.schema import async_jobs
from ..errors import CumuloError

log = logging.getLogger(__name__)

PENDING, SUCCEEDED, FAILED = 0, 1, 2
MAX_QUEUED = 100  # jobs waiting for one instance at most
SYNC_POLL = 0.1  # seconds between looks at another server's earlier job on the same instance


class ResourceBusy(CumuloError):
    """Another job is working on the resource."""

    error_code, cs_error_code = 530, 4250


@dataclass
class JobOwner:
    account_id: int = 1
    user_id: int = 1


def now() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    def __init__(self, db: Database, msid: int, *, concurrency: int = 64) -> None:
        self.db = db
        self.msid = msid
        self.limiter = trio.CapacityLimiter(concurrency)
        self.holding: dict[tuple[str, int], int] = {}  # (instance type, id) -> job id working on it
        self._queued: dict[tuple[str, int], deque[tuple[int, trio.Event]]] = {}  # waiting their turn
        self.done: dict[int, trio.Event] = {}  # the jobs running (or waiting their turn) here
        self.ended = {SUCCEEDED: 0, FAILED: 0}  # jobs ended here, by status (for metrics)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Host the jobs (until cancelled; the jobs are cancelled with it)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def busy(self, instance_type: str, instance_id: int) -> bool:
        return (instance_type, instance_id) in self.holding

    async def submit(
        self,
        command: str,
        work: Callable[[], Awaitable[Any]],
        *,
        owner: JobOwner | None = None,
        instance_type: str = "",
        instance_id: int = 0,
        job_uuid: str = "",
        on_insert: Callable[[Connection, int], None] | None = None,
        on_finish: Callable[[Connection, int, str | None], None] | None = None,
        prepare: Callable[[Connection], int] | None = None,
        on_ended: Callable[[int | None, dict[str, Any], datetime], None] | None = None,
    ) -> int:
        """Record the job (with ``job_uuid`` when given) and start it, or queue it behind the jobs on
        the same instance; its id. ``prepare(conn)``, when given, runs first in the transaction that
        records the job and makes its instance (a deploy's VM): it returns the instance id, and when
        it raises there is no job. ``on_insert(conn, job_id)`` runs in that transaction too,
        ``on_finish(conn, job_id, error)`` in the one that ends the job (``error``: None when it
        succeeded, else what to tell), so that what goes with a job (its audit events) costs no
        transaction of its own. ``on_ended(status, result, completed)`` is called once the job's end
        has committed, before anyone waiting for it wakes up (status None: writing it failed)."""
        if self._nursery is None:
            raise RuntimeError("the job runner is not running")
        key = (instance_type, instance_id)
        queue = self._queued.get(key)
        if instance_id and queue is not None and len(queue) >= MAX_QUEUED:
            raise ResourceBusy(f"{instance_type} {instance_id} has {len(queue)} jobs waiting; "
                               f"try again later")
        owner = owner or JobOwner()
        job_id, instance_id = await self.db.run(
            _insert, command, owner, instance_type, instance_id, self.msid, job_uuid or str(uuid.uuid4()),
            on_insert, prepare,
        )
        key = (instance_type, instance_id)
        turn: trio.Event | None = None
        if instance_id:
            if key in self.holding:  # (checked after the insert: another job may have taken it meanwhile)
                turn = trio.Event()
                self._queued.setdefault(key, deque()).append((job_id, turn))
            else:
                self.holding[key] = job_id
        self.done[job_id] = trio.Event()
        self._nursery.start_soon(self._run_job, job_id, command, work, key, turn, on_finish, on_ended)
        return job_id

    async def _run_job(
        self, job_id: int, command: str, work: Callable[[], Awaitable[Any]], key: tuple[str, int],
        turn: trio.Event | None, on_finish: Callable[[Connection, int, str | None], None] | None = None,
        on_ended: Callable[[int | None, dict[str, Any], datetime], None] | None = None,
    ) -> None:
        status, result = FAILED, {"errorcode": 530, "errortext": "the job did not finish"}
        error: str | None = "it did not finish"
        try:
            if turn is not None:
                await turn.wait()  # the jobs before it on this instance have ended
            if key[1] and self.db.journal_msid is not None:
                # Several servers: jobs another server took earlier on this instance go first too (that
                # server ends them, or its taker fails them when it dies).
                while await self.db.read(_earlier_elsewhere, job_id, key, self.msid):
                    await trio.sleep(SYNC_POLL)  # polling the database: the other server's job is there
            async with self.limiter:
                value = await work()
            status, result = SUCCEEDED, value if isinstance(value, dict) else {"result": value}
            error = None
        except CumuloError as e:
            status, result = FAILED, {"errorcode": e.error_code, "errortext": str(e)}
            error = str(e)
            log.info("job %d (%s) failed: %s", job_id, command, e, extra={"job_id": job_id})
        except Exception as e:
            result = {"errorcode": 530, "errortext": f"internal error in {command}"}
            log.exception("job %d (%s) crashed: %r", job_id, command, e, extra={"job_id": job_id})
        finally:
            with trio.CancelScope(shield=True):
                completed, written = now(), False
                try:
                    await self.db.run(_finish, job_id, status, result, on_finish, error, completed)
                    written = True
                finally:
                    self.ended[status] += 1
                    if on_ended is not None:
                        on_ended(status if written else None, result, completed)
                    self._next(key, job_id)
                    self.done.pop(job_id, trio.Event()).set()
                    if turn is not None and not turn.is_set():  # cancelled before its turn came
                        waiting = self._queued.get(key)
                        if waiting is not None:
                            waiting.remove((job_id, turn))
                            if not waiting:
                                del self._queued[key]

    def _next(self, key: tuple[str, int], job_id: int) -> None:
        """The job ``job_id`` on ``key`` ended: the next one waiting there takes its turn."""
        if self.holding.get(key) != job_id:
            return
        queue = self._queued.get(key)
        if queue:
            self.holding[key], turn = queue.popleft()
            if not queue:
                del self._queued[key]
            turn.set()
        else:
            del self.holding[key]

    async def wait(self, job_id: int) -> sa.Row[Any]:
        """Wait for the job to end; its row."""
        event = self.done.get(job_id)
        if event is not None:
            await event.wait()
        return await self.db.run(get, job_id)


def _earlier_elsewhere(conn: Connection, job_id: int, key: tuple[str, int], msid: int) -> bool:
    """Whether another server holds a pending job on the instance submitted before ``job_id``."""
    return conn.scalar(sa.select(async_jobs.c.id).where(
        async_jobs.c.instance_type == key[0], async_jobs.c.instance_id == key[1],
        async_jobs.c.status == PENDING, async_jobs.c.id < job_id,
        async_jobs.c.mgmt_server_id != msid).limit(1)) is not None


def _insert(
    conn: Connection,
    command: str,
    owner: JobOwner,
    instance_type: str,
    instance_id: int,
    msid: int,
    job_uuid: str,
    on_insert: Callable[[Connection, int], None] | None = None,
    prepare: Callable[[Connection], int] | None = None,
) -> tuple[int, int]:
    if prepare is not None:
        instance_id = prepare(conn)
    job_id = int(
        inserted_id(conn.execute(_INSERT, {
            "uuid": job_uuid,
            "user_id": owner.user_id,
            "account_id": owner.account_id,
            "command": command,
            "instance_type": instance_type or None,
            "instance_id": instance_id or None,
            "status": PENDING,
            "mgmt_server_id": msid,
            "created": now(),
        }))
    )
    if on_insert is not None:
        on_insert(conn, job_id)
    return job_id, instance_id


def _finish(conn: Connection, job_id: int, status: int, result: dict[str, Any],
            on_finish: Callable[[Connection, int, str | None], None] | None = None,
            error: str | None = None, completed: datetime | None = None) -> None:
    conn.execute(_FINISH, {
        "job": job_id,
        "status": status,
        "process_status": 0,
        "result_code": 0 if status == SUCCEEDED else result.get("errorcode", 530),
        "result": orjson.dumps(result, default=str).decode(),
        "completed": completed or now(),
    })
    if on_finish is not None:
        on_finish(conn, job_id, None if status == SUCCEEDED else error or "it did not finish")


# Built once (see services/events.py): values are passed at execution.
_INSERT = async_jobs.insert()
_FINISH = async_jobs.update().where(async_jobs.c.id == sa.bindparam("job"))


def get(conn: Connection, job_id: int) -> sa.Row[Any]:
    return conn.execute(sa.select(async_jobs).where(async_jobs.c.id == job_id)).one()


def fail_orphans(conn: Connection, msid: int, *, unowned: bool = True) -> list[sa.Row[Any]]:
    """End the jobs server ``msid`` left pending when it died (and, with ``unowned``, those of no
    server); the rows (with their instances)."""
    owner = async_jobs.c.mgmt_server_id == msid
    rows = list(
        conn.execute(
            sa.select(async_jobs).where(
                async_jobs.c.status == PENDING,
                sa.or_(owner, async_jobs.c.mgmt_server_id.is_(None)) if unowned else owner,
            )
        )
    )
    for row in rows:
        _finish(
            conn,
            row.id,
            FAILED,
            {
                "errorcode": 530,
                "errortext": "the management server stopped while this job ran; it did not finish",
            },
        )
    return rows
