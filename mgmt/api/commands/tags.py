"""Resource tags: createTags, deleteTags, listTags; the lists of tagged kinds show their tags and filter
by them (``tags[0].key=...&tags[0].value=...``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...services.tags import TYPES
from ..registry import Param, command
from .common import OWNER, PAGING, listing, success

if TYPE_CHECKING:
    from ..app import Context

KINDS = ", ".join(TYPES)
TAGS = Param("tags", "map", description="only those carrying these tags: tags[0].key=k&tags[0].value=v "
                                        "(every pair given)")


def tag_view(r: Any) -> dict[str, Any]:
    view = {"key": r.key, "value": r.value, "resourcetype": r.resource_type, "resourceid": r.resource_uuid,
            "account": r.account_name, "domainid": r.domain_uuid, "domain": r.domain_name,
            "customer": r.customer}
    return {k: v for k, v in view.items() if v is not None}


async def with_tags(ctx: Context, answer: dict[str, Any], key: str, rtype: str) -> dict[str, Any]:
    """Fill the ``tags`` of each item of a list answer with its resource's tags."""
    items = answer.get(key, [])
    found = await ctx.services.tags.of(rtype, [i["id"] for i in items]) if items else {}
    for item in items:
        item["tags"] = [tag_view(t) for t in found.get(item["id"], [])]
    return answer


@command(
    "createTags",
    f"Tags resources ({KINDS}): each gets every key/value pair given.",
    Param("resourcetype", required=True, description=KINDS),
    Param("resourceids", "list", required=True, description="comma-separated ids of the resources"),
    Param("tags", "map", required=True, description="tags[0].key=k&tags[0].value=v..."),
    Param("customer", description="a customer the tags are for (kept, shown)"),
    is_async=True,
    event="CREATE_TAGS",
)
async def create_tags(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    made = await ctx.services.tags.create(ctx.caller, args["resourcetype"], args["resourceids"], args["tags"],
                                          args.get("customer", ""))

    async def work() -> dict[str, Any]:
        return success(f"made {made} tag(s)")

    return {"jobid": await ctx.submit(work, description=f"tagged {len(args['resourceids'])} resource(s)")}


@command(
    "deleteTags",
    "Removes tags from resources: the pairs given (a key alone: whatever its value), or every tag.",
    Param("resourcetype", required=True, description=KINDS),
    Param("resourceids", "list", required=True, description="comma-separated ids of the resources"),
    Param("tags", "map", description="tags[0].key=k(&tags[0].value=v)... (none: every tag)"),
    is_async=True,
    event="DELETE_TAGS",
)
async def delete_tags(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    gone = await ctx.services.tags.delete(ctx.caller, args["resourcetype"], args["resourceids"],
                                          args.get("tags", []))

    async def work() -> dict[str, Any]:
        return success(f"removed {gone} tag(s)")

    return {"jobid": await ctx.submit(work, description=f"untagged {len(args['resourceids'])} resource(s)")}


@command(
    "listTags",
    "Lists tags: the caller's own (admins: every account's with listall=true).",
    Param("resourcetype", description=KINDS),
    Param("resourceid", description="one resource's tags"),
    Param("key", description="tags with this key"),
    Param("value", description="tags with this value"),
    Param("customer", description="tags for this customer"),
    *OWNER,
    *PAGING,
    response="tag",
)
async def list_tags(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    rows, total = await ctx.services.tags.matching(ctx.caller, args)
    return listing("tag", [tag_view(r) for r in rows], total)

