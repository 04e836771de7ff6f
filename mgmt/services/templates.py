"""Templates: which a caller sees (by CloudStack's template filters), registering one from a URL or a
file on the management server (checked: only root admins may name local files or host paths), and
deleting one no VM uses. Also the OS types a template declares.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
import trio
from sqlalchemy.engine import Connection

from .. import limits
from ..db.database import inserted_id
from ..db.schema import accounts, domains, storage_pools, template_copies, templates, vms, zones
from ..errors import InvalidParameter, PermissionDenied, ResourceInUse
from .caller import Caller
from .crud import Filters, Row
from .queries import acting_for, fetch, find, keyword, matching, new_uuid, now, owner_filter, owns, sort_order
from .tags import tagged

if TYPE_CHECKING:
    from ..db.database import Database

FILTERS = ("featured", "self", "selfexecutable", "sharedexecutable", "executable", "community", "all")
FORMATS = ("QCOW2", "RAW", "VHD", "OVA", "ISO")
_OS_NAMESPACE = uuid.UUID("6f1c2a59-0d1e-4c55-9a63-6d0d9b3e2c11")
OS_TYPES = (
    ("Other Linux (64-bit)", "Other"),
    ("Debian GNU/Linux 12 (64-bit)", "Debian"),
    ("Debian GNU/Linux 11 (64-bit)", "Debian"),
    ("Ubuntu 24.04 LTS", "Ubuntu"),
    ("Ubuntu 22.04 LTS", "Ubuntu"),
    ("Rocky Linux 9", "CentOS"),
    ("Windows Server 2022 (64-bit)", "Windows"),
    ("Other (64-bit)", "Other"),
)


def os_type_id(description: str) -> str:
    return str(uuid.uuid5(_OS_NAMESPACE, description))


OS_BY_ID = {os_type_id(d): d for d, _ in OS_TYPES}


def os_type_ids() -> frozenset[str]:
    """The ids of the guest OS types listOsTypes shows."""
    return frozenset(OS_BY_ID)


@dataclass(frozen=True)
class TemplateSpec:
    """What registerTemplate names, parsed."""

    name: str
    url: str
    format: str
    hypervisor: str
    display_text: str = ""  # default: the name
    zone_uuid: str = ""  # empty: every zone
    os_type_uuid: str = ""
    public: bool = False
    featured: bool = False
    size: int = 0  # bytes, when the URL is not a file here
    details: list[dict[str, str]] = field(default_factory=list)  # details[i].key=value, as given
    account_name: str = ""  # (admins, with domain_uuid) register it for this account
    domain_uuid: str = ""
    project_uuid: str = ""  # register it for this project
    bits: int = 64
    checksum: str = ""  # "{ALGORITHM}hex" or an MD5 in hex; a file here is checked against it
    password_enabled: bool = False
    sshkey_enabled: bool = False
    extractable: bool = False
    dynamically_scalable: bool = False
    template_tag: str = ""
    template_type: str = "USER"
    direct_download: bool = False


def _query() -> sa.Select[Any]:
    # A template with no zone is in every zone: one item per zone, as CloudStack lists them.
    return (
        sa.select(
            templates,
            zones.c.uuid.label("zone_uuid"),
            zones.c.name.label("zone_name"),
            accounts.c.name.label("account_name"),
            domains.c.uuid.label("domain_uuid"),
            domains.c.name.label("domain_name"),
        )
        .join(zones, sa.or_(templates.c.zone_id.is_(None), templates.c.zone_id == zones.c.id))
        .outerjoin(accounts, accounts.c.id == sa.func.coalesce(templates.c.account_id, 1))
        .outerjoin(domains, domains.c.id == accounts.c.domain_id)
        .where(zones.c.removed.is_(None))
    )


def _visible(caller: Caller, flt: str, own: Any = None) -> list[Any]:
    """``own``: which templates are "self" (default: the caller's account's)."""
    if own is None:
        own = sa.func.coalesce(templates.c.account_id, 1) == caller.account_id
    ready = templates.c.state == "Ready"
    match flt:
        case "featured":
            return [templates.c.featured.is_(True), templates.c.public.is_(True)]
        case "self":
            return [own]
        case "selfexecutable":
            return [own, ready]
        case "sharedexecutable":
            return [ready, templates.c.public.is_(True), ~own]
        case "executable":
            return [ready, sa.or_(own, templates.c.public.is_(True))]
        case "community":
            return [templates.c.public.is_(True), templates.c.featured.is_(False)]
    if not caller.is_admin:  # "all"
        raise PermissionDenied("templatefilter=all is for admins; use executable")
    return []


def _list(conn: Connection, caller: Caller, args: Filters) -> tuple[list[Row], int]:
    where = [
        *([] if args.get("showremoved") and caller.is_admin else [templates.c.removed.is_(None)]),
        *_visible(caller, args["templatefilter"], sa.and_(*owner_filter(  # a project's are its own
            conn, caller, {"projectid": args["projectid"]}, sa.func.coalesce(templates.c.account_id, 1)))
            if "projectid" in args else None),
        *keyword(templates.c.name, args),
    ]
    if "account" in args or "domainid" in args:  # (an admin's: whose templates)
        where += owner_filter(conn, caller, args, sa.func.coalesce(templates.c.account_id, 1))
    where += matching(
        args,
        {
            "id": templates.c.uuid,
            "ids": templates.c.uuid,
            "name": templates.c.name,
            "zoneid": zones.c.uuid,
            "hypervisor": templates.c.hypervisor_type,
            "templatetype": templates.c.template_type,
        },
    )
    where += tagged(args, "Template", templates.c.uuid)
    if "storageid" in args:  # the templates copied to this pool
        where.append(templates.c.id.in_(
            sa.select(template_copies.c.template_id).join(storage_pools, storage_pools.c.id
                                                          == template_copies.c.pool_id)
            .where(storage_pools.c.uuid == args["storageid"])))
    if args.get("showunique"):  # one item per template, not one per zone
        other = zones.alias("other_zones")
        first_zone = sa.select(sa.func.min(other.c.id)).where(
            other.c.removed.is_(None),
            sa.or_(templates.c.zone_id.is_(None), other.c.id == templates.c.zone_id))
        where.append(zones.c.id == first_zone.scalar_subquery())
    return fetch(conn, _query().where(*where), (*sort_order(conn, templates), zones.c.id), args)


def _checked(url: str, checksum: str) -> None:
    """A file here matches its checksum (``{MD5}...``, ``{SHA-256}...``, ``{SHA-512}...`` or a bare MD5)."""
    if not checksum or not url.startswith("file://"):
        return
    algorithm, expected = "md5", checksum
    if checksum.startswith("{") and "}" in checksum:
        name, expected = checksum[1:].split("}", 1)
        algorithm = name.lower().replace("-", "")
    if algorithm not in ("md5", "sha1", "sha256", "sha512"):
        raise InvalidParameter(f"checksum algorithm {algorithm!r}: give MD5, SHA-1, SHA-256 or SHA-512")
    digest = hashlib.new(algorithm)
    with open(url[len("file://"):], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.strip().lower():
        raise InvalidParameter("the template file does not match its checksum")


def _source(url: str, *, local_files: bool) -> tuple[str, int]:
    """The template's URL as agents will fetch it, and its size when it is a file here. A path on the
    management server (file:///path or /path) is a root admin's to name: anyone else could learn which
    files exist there, or have hosts copy them."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return url, 0
    if not local_files:
        raise InvalidParameter(f"url {url[:128]!r}: give an http(s):// URL (files on the management server "
                               f"are for root admins)")
    path = parsed.path if parsed.scheme == "file" else url if not parsed.scheme else ""
    if not path.startswith("/"):
        raise InvalidParameter(f"url {url[:128]!r}: give http(s)://..., file:///path or an absolute path")
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise InvalidParameter(
            f"url {url[:128]!r}: the management server cannot read it ({e.strerror})"
        ) from None
    return f"file://{path}", size


BOOT_DETAILS = ("kernel", "initrd", "bootargs")
TEMPLATE_TYPES = ("USER", "BUILTIN", "PERHOST")


def _update(conn: Connection, caller: Caller, ident: str, values: dict[str, Any],
            details: dict[str, str] | None, cleanup_details: bool) -> list[Row]:
    row = _owned(conn, caller, ident)
    if "os_type" in values:
        os_type = OS_BY_ID.get(values["os_type"], "")
        if not os_type:
            raise InvalidParameter(f"unable to find OS type {values['os_type']} (see listOsTypes)")
        values["os_type"] = os_type
    if "format" in values:
        values["format"] = values["format"].upper()
        if values["format"] not in FORMATS:
            raise InvalidParameter(f"format must be one of {', '.join(FORMATS)}")
    if "template_type" in values and (values["template_type"] not in TEMPLATE_TYPES or not caller.is_admin):
        raise InvalidParameter("templatetype must be USER, BUILTIN or PERHOST (root admins)")
    if cleanup_details or details is not None:
        kept = {} if cleanup_details else orjson.loads(row.details or "{}")
        if details:
            if not caller.is_admin:
                raise InvalidParameter("kernel, initrd and bootargs details are for root admins")
            kept = boot_details([{**kept, **details}], row.hypervisor_type)
        values["details"] = orjson.dumps(kept).decode()
    if values:
        conn.execute(templates.update().where(templates.c.id == row.id).values(**values))
    return list(conn.execute(_query().where(templates.c.id == row.id).order_by(zones.c.id)))


def boot_details(entries: list[dict[str, str]], hypervisor: str) -> dict[str, str]:
    """The direct-boot details of a template: a kernel (and initrd, boot arguments) by absolute path."""
    merged: dict[str, str] = {}
    for entry in entries:
        merged.update(entry)
    unknown = sorted(set(merged) - set(BOOT_DETAILS))
    if unknown:
        raise InvalidParameter(
            f"unknown template details {', '.join(unknown)} (known: {', '.join(BOOT_DETAILS)})"
        )
    if merged and hypervisor != "KVM":
        raise InvalidParameter("kernel, initrd and bootargs details are for KVM templates")
    if ("initrd" in merged or "bootargs" in merged) and "kernel" not in merged:
        raise InvalidParameter("details initrd and bootargs need details kernel too")
    for key in ("kernel", "initrd"):
        if key in merged:
            path = urllib.parse.urlparse(merged[key]).path if merged[key].startswith("file:") else merged[key]
            if not path.startswith("/"):
                raise InvalidParameter(
                    f"details {key} must be an absolute path on the hosts, not {merged[key]!r}"
                )
            merged[key] = path
    if any(c in merged.get("bootargs", "") for c in "\n\r\0"):
        raise InvalidParameter("details bootargs must be one line")
    if len(merged.get("bootargs", "")) > 1024:
        raise InvalidParameter("details bootargs must be at most 1024 characters")
    return merged


def _register(conn: Connection, caller: Caller, spec: TemplateSpec, url: str, size: int,
              details: dict[str, str]) -> list[Row]:
    zone_id = find(conn, caller, zones, spec.zone_uuid, "zone").id if spec.zone_uuid else None
    os_type = OS_BY_ID.get(spec.os_type_uuid, "")
    if spec.os_type_uuid and not os_type:
        raise InvalidParameter(f"unable to find OS type {spec.os_type_uuid} (see listOsTypes)")
    if spec.featured and not caller.is_admin:
        raise PermissionDenied("only admins may feature a template")
    if spec.template_type not in TEMPLATE_TYPES or (spec.template_type != "USER" and not caller.is_admin):
        raise InvalidParameter("templatetype must be USER (admins: USER, BUILTIN or PERHOST)")
    if spec.bits not in (32, 64):
        raise InvalidParameter("bits must be 32 or 64")
    owner = acting_for(conn, caller, spec.account_name, spec.domain_uuid, spec.project_uuid)
    template_id = inserted_id(conn.execute(templates.insert().values(
        uuid=new_uuid(), name=spec.name, display_text=spec.display_text or spec.name,
        format=spec.format.upper(), hypervisor_type=spec.hypervisor, os_type=os_type, url=url,
        size_bytes=size, details=orjson.dumps(details).decode(), public=spec.public,
        featured=spec.featured, account_id=owner, zone_id=zone_id, state="Ready", created=now(),
        bits=spec.bits, checksum=spec.checksum, password_enabled=spec.password_enabled,
        sshkey_enabled=spec.sshkey_enabled, extractable=spec.extractable,
        dynamically_scalable=spec.dynamically_scalable, template_tag=spec.template_tag,
        template_type=spec.template_type, direct_download=spec.direct_download,
    )))
    limits.verify(conn, owner, (limits.T.TEMPLATE,))  # (a refusal rolls it back)
    return list(conn.execute(_query().where(templates.c.id == template_id).order_by(zones.c.id)))


def _owned(conn: Connection, caller: Caller, ident: str) -> Row:
    row = find(conn, caller, templates, ident, "template")
    if not caller.is_admin and (row.account_id is None or not owns(conn, caller, row.account_id)):
        raise PermissionDenied(f"unable to find or access template {ident}")
    return row


def _delete(conn: Connection, caller: Caller, ident: str, zone_uuid: str = "", forced: bool = False) -> str:
    row = _owned(conn, caller, ident)
    if zone_uuid:
        zone = find(conn, caller, zones, zone_uuid, "zone")
        if row.zone_id is None:
            raise InvalidParameter(f"template {row.name} is in every zone: it goes from all (omit zoneid)")
        if row.zone_id != zone.id:
            raise InvalidParameter(f"template {row.name} is not in zone {zone.name}")
    if not forced and conn.scalar(sa.select(vms.c.id).where(vms.c.template_id == row.id,
                                                            vms.c.removed.is_(None)).limit(1)):
        raise ResourceInUse(f"template {row.name} is used by VMs; expunge them first (or forced=true: they "
                            "keep it)")
    conn.execute(templates.update().where(templates.c.id == row.id).values(removed=now()))
    return str(row.name)


class Templates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def visible(self, caller: Caller, args: Filters) -> tuple[list[Row], int]:
        """The templates ``args["templatefilter"]`` shows the caller, one row per zone each is in."""
        if args["templatefilter"] not in FILTERS:
            raise InvalidParameter(f"templatefilter must be one of {', '.join(FILTERS)}")
        return await self.db.read(_list, caller, args)

    async def register(self, caller: Caller, spec: TemplateSpec) -> list[Row]:
        """Register a template; its rows (one per zone it is in)."""
        if spec.format.upper() not in FORMATS:
            raise InvalidParameter(f"format must be one of {', '.join(FORMATS)}")
        if spec.hypervisor not in ("KVM", "Simulator"):
            raise InvalidParameter("hypervisor must be KVM or Simulator")
        url, size = _source(spec.url, local_files=caller.is_admin)
        details = boot_details(spec.details, spec.hypervisor)
        if details and not caller.is_admin:
            raise InvalidParameter("kernel, initrd and bootargs details name files on the hosts: they are "
                                   "for root admins")
        if not size:
            size = spec.size
            if size < 0:
                raise InvalidParameter("size must not be negative")
        await trio.to_thread.run_sync(_checked, url, spec.checksum)
        return await self.db.run(_register, caller, spec, url, size, details)

    async def find_owned(self, caller: Caller, ident: str) -> Row:
        """A template the caller may change or delete."""
        return await self.db.read(_owned, caller, ident)

    async def size_of(self, caller: Caller, ident: str) -> int:
        """The size in bytes of a template the caller may use."""
        return int((await self.db.read(find, caller, templates, ident, "template")).size_bytes)

    async def delete(self, caller: Caller, ident: str, *, zone_uuid: str = "", forced: bool = False) -> str:
        """Delete a template no VM uses (``forced``: even one VMs use; they keep it); its name."""
        return await self.db.run(_delete, caller, ident, zone_uuid, forced)

    async def update(self, caller: Caller, ident: str, values: dict[str, Any],
                     details: dict[str, str] | None, cleanup_details: bool) -> list[Row]:
        """Change a template's names, flags, OS type, format or boot details; its rows."""
        return await self.db.run(_update, caller, ident, values, details, cleanup_details)
