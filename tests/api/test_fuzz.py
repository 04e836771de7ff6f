"""Random parameters against every command, signed, over HTTP: the answer is always a CloudStack
response (200, or an error with CloudStack's shape and code), never an HTTP 500 or an internal error
(530 "internal error": an exception the handler did not expect)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mgmt.api.commands  # noqa: F401 - registers every command
from mgmt.api.registry import COMMANDS, Command, Param

from .conftest import ApiCloud
from .test_access import signed

CODES = {200, 401, 431, 530, 531, 532, 533, 534, 535, 536}
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def value(p: Param, known: list[str]) -> st.SearchStrategy[str]:
    """Valid-looking and invalid values for a parameter of this type."""
    junk = st.one_of(
        TEXT, st.sampled_from(["", "-1", "0", "null", "1e999", "%00", "../../etc/passwd", "'; --"])
    )
    by_type: dict[str, st.SearchStrategy[str]] = {
        "uuid": st.one_of(st.sampled_from(known), st.uuids().map(str)),
        "integer": st.integers(-(2**70), 2**70).map(str),
        "long": st.integers(-(2**70), 2**70).map(str),
        "boolean": st.sampled_from(["true", "false", "TRUE", "False", "yes"]),
        "list": st.lists(st.one_of(st.sampled_from(known), st.uuids().map(str), TEXT), max_size=3).map(
            ",".join
        ),
        "date": st.sampled_from(["2026-01-01T00:00:00+0000", "2026-13-01", "yesterday"]),
    }
    return st.one_of(by_type.get(p.type, TEXT), junk)


def params_for(cmd: Command, known: list[str]) -> st.SearchStrategy[dict[str, str]]:
    plain = [p for p in cmd.params if p.type != "map"]
    maps = [p for p in cmd.params if p.type == "map"]
    chosen = st.fixed_dictionaries({}, optional={p.name: value(p, known) for p in plain})
    if not maps:
        return chosen
    extra = st.dictionaries(
        st.sampled_from(
            [f"{m.name}[{i}].{k}" for m in maps for i in (0, 1) for k in ("key", "value", "networkid", "ip")]
        ),
        TEXT,
        max_size=3,
    )
    return st.tuples(chosen, extra).map(lambda pair: {**pair[0], **pair[1]})


# login and logout are answered before dispatch (tested in test_access); the rest are all fuzzed
FUZZED = sorted(name for name, c in COMMANDS.items() if c.name not in ("login", "logout"))


async def test_random_parameters_never_break_a_command(api: ApiCloud) -> None:
    cs = api.client()
    zone = (await api.call(lambda: cs.listZones()))["zone"][0]
    known = [zone["id"], (await api.call(lambda: cs.listHosts()))["host"][0]["id"], str(uuid.uuid4())]
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    key, secret = api.creds["apikey"], api.creds["secretkey"]

    def send(name: str, params: dict[str, str], post: bool) -> None:
        body = signed({"command": COMMANDS[name].name, **params}, key, secret)
        data = "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v)}" for k, v in body.items())
        url = api.url if post else f"{api.url}?{data}"
        req = urllib.request.Request(url, data=data.encode() if post else None)
        try:
            with urllib.request.urlopen(req, timeout=60) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as answer:
            status, raw = answer.code, answer.read()
        seen[(name, status)] += 1
        decoded = json.loads(raw)
        (top,) = decoded.values()
        if status not in CODES or (status == 530 and "internal error" in top.get("errortext", "")):
            failures.append(f"{name} {params!r}: HTTP {status} {raw[:300]!r}")
        elif status != 200:
            assert top["errorcode"] == status and isinstance(top["errortext"], str) and top["errortext"]

    @settings(max_examples=600, suppress_health_check=list(HealthCheck), deadline=None, database=None)
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(FUZZED))
        params = data.draw(params_for(COMMANDS[name], known))
        send(name, params, data.draw(st.booleans()))

    await api.call(fuzz)
    assert not failures, "\n".join(failures[:20])
    assert len({name for name, _ in seen}) > len(FUZZED) // 2  # most commands were reached
    assert any(status == 200 for _, status in seen) and any(status == 431 for _, status in seen)
