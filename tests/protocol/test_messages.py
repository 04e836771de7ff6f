"""Messages: every registered type survives the wire; bad shapes become values with reasons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.body import decode_answers, decode_commands, encode_body, inflate
from protocol.errors import MessageError, RemoteProtocolError
from protocol.examples import ping, start
from protocol.messages import (
    ANSWERS,
    COMMANDS,
    Answer,
    Command,
    MalformedCommand,
    PingRoutingCommand,
    PowerState,
    StartAnswer,
    StartCommand,
    UnknownAnswer,
    UnknownCommand,
    UnsupportedAnswer,
    decode_struct,
)
from protocol.messages.base import _make_struct_decoder

from .strategies import answers, commands


def test_the_required_message_types_are_registered() -> None:
    for name in ["StartupRoutingCommand", "StartupStorageCommand", "ReadyCommand", "PingRoutingCommand",
                 "CheckHealthCommand", "CheckOnHostCommand", "StartCommand", "StopCommand", "RebootCommand",
                 "MigrateCommand", "PrepareForMigrationCommand", "CheckVirtualMachineCommand",
                 "GetVmStatsCommand", "PrimaryStorageDownloadCommand", "CreateCommand", "DestroyCommand"]:
        assert name in COMMANDS
        assert "wait" in COMMANDS[name].__dataclass_fields__
    for name in ["StartupAnswer", "ReadyAnswer", "PingAnswer", "CheckHealthAnswer", "CheckOnHostAnswer",
                 "StartAnswer", "StopAnswer", "RebootAnswer", "MigrateAnswer", "PrepareForMigrationAnswer",
                 "CheckVirtualMachineAnswer", "GetVmStatsAnswer", "PrimaryStorageDownloadAnswer",
                 "CreateAnswer", "UnsupportedAnswer", "Answer"]:
        assert name in ANSWERS
        assert {"result", "details"} <= set(ANSWERS[name].__dataclass_fields__)


@given(commands)
def test_every_command_round_trips(cmd: Command) -> None:
    body, compressed = encode_body([cmd])
    assert decode_commands(inflate(body, 1 << 24) if compressed else body) == (cmd,)


@given(answers)
def test_every_answer_round_trips(ans: Answer) -> None:
    body, compressed = encode_body([ans])
    assert decode_answers(inflate(body, 1 << 24) if compressed else body) == (ans,)


def test_messages_are_immutable() -> None:
    p = ping(1)
    with pytest.raises(AttributeError):
        p.host_id = 5  # type: ignore[misc]


def test_wire_shape_is_an_array_of_one_key_objects() -> None:
    body, compressed = encode_body([PingRoutingCommand(host_id=4, power_report={"v": PowerState.ON})])
    assert not compressed
    assert orjson.loads(body) == [{"PingRoutingCommand": {"wait": 0, "host_id": 4,
                                                          "power_report": {"v": "PowerOn"}}}]


def test_large_bodies_are_compressed_and_small_ones_not() -> None:
    big = [start(i) for i in range(4)]
    body, compressed = encode_body(big)
    assert compressed
    assert decode_commands(inflate(body, 1 << 24)) == tuple(big)
    assert encode_body([ping()])[1] is False


def test_unknown_command_decodes_to_a_value_answered_as_unsupported() -> None:
    (cmd,) = decode_commands(b'[{"ReplugCommand": {"wait": 5}}]')
    assert cmd == UnknownCommand("ReplugCommand", {"wait": 5})
    assert isinstance(cmd, UnknownCommand)
    assert cmd.unsupported() == UnsupportedAnswer(details="unsupported command: ReplugCommand")
    assert cmd.unsupported().result is False


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"StopCommand": {}}, "StopCommand is missing the field 'vm_name'"),
        ({"StopCommand": {"vm_name": 3}}, "StopCommand.vm_name must be a string, not an integer"),
        ({"StopCommand": {"vm_name": "a", "forced": "yes"}}, "StopCommand.forced must be a boolean"),
        ({"StopCommand": []}, "StopCommand must be a JSON object, not an array"),
        ({"PingRoutingCommand": {"host_id": 1, "power_report": {"v": "On"}}},
         "PingRoutingCommand.power_report{} must be one of ['PowerOff', 'PowerOn', 'PowerUnknown']"),
        ({"StartCommand": {"vm": {"name": "x"}}}, "VirtualMachineTO is missing the field 'uuid'"),
        ({"GetVmStatsCommand": {"vm_names": "a"}}, "GetVmStatsCommand.vm_names must be an array"),
        ({"PingRoutingCommand": {"host_id": True}}, "PingRoutingCommand.host_id must be an integer"),
    ],
)
def test_malformed_commands_say_what_is_wrong(item: dict[str, object], reason: str) -> None:
    (cmd,) = decode_commands(orjson.dumps([item]))
    assert isinstance(cmd, MalformedCommand)
    assert reason in cmd.reason
    failure = cmd.failure()
    assert failure.result is False
    assert reason in failure.details


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    (cmd,) = decode_commands(b'[{"StopCommand": {"vm_name": "a", "newer_field": [1]}}]')
    assert cmd == COMMANDS["StopCommand"](vm_name="a")  # type: ignore[call-arg]


def test_unknown_and_malformed_answers_keep_result_and_details() -> None:
    unknown, malformed = decode_answers(
        b'[{"ReplugAnswer": {"result": true, "details": "plugged"}}, {"StartAnswer": {"result": 1}}]')
    assert unknown == UnknownAnswer("ReplugAnswer", True, "plugged", {"result": True, "details": "plugged"})
    assert isinstance(malformed, UnknownAnswer)
    assert malformed.result is False
    assert "StartAnswer.result must be a boolean" in malformed.details
    assert decode_answers(b'[{"StartAnswer": {"vm_name": "v"}}]') == (StartAnswer(vm_name="v"),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[{", "malformed JSON body"),
        (b"\xff\xfe", "malformed JSON body"),
        (b"{}", "non-empty JSON array"),
        (b"[]", "non-empty JSON array"),
        (b'["StartCommand"]', "body item 0 must be an object with exactly one key"),
        (b'[{"a": {}, "b": {}}]', "body item 0 must be an object with exactly one key"),
    ],
)
def test_bad_bodies_are_protocol_errors(body: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_commands(body)


def test_inflate_is_bounded_and_strict() -> None:
    import zlib

    bomb = zlib.compress(b"[" + b" " * 1_000_000 + b"]")
    with pytest.raises(RemoteProtocolError, match="inflates beyond the 1000-byte limit"):
        inflate(bomb, 1000)
    with pytest.raises(RemoteProtocolError, match="not valid zlib"):
        inflate(b"not zlib at all", 1000)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        inflate(zlib.compress(b"[1,2,3]" * 50)[:-6], 100_000)
    with pytest.raises(RemoteProtocolError, match="trailing bytes"):
        inflate(zlib.compress(b"[]") + b"xx", 1000)


def test_start_command_round_trips_nested_transfer_objects() -> None:
    cmd = start(42)
    (back,) = decode_commands(encode_body([cmd])[0])
    assert back == cmd
    assert isinstance(back, StartCommand)
    assert back.vm.disks[1].type == "DATADISK"
    assert back.vm.nics[0].is_default


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=5) | st.sampled_from(["PowerOn", "PowerOff", "ROOT"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


# One value of every JSON type (and of the enums' shapes): type confusion is what decoders get wrong.
one_of_each_json_type = st.sampled_from(
    [None, True, False, 0, 1, -1, 1.5, "", "PowerOn", [], ["PowerOn"], [{}], {}, {"a": "PowerOn"}, {"a": 1}]
)


def outcome(decoder: Callable[[Any], Any], value: Any) -> tuple[str, Any]:
    try:
        return "ok", decoder(value)
    except MessageError as e:
        return "error", str(e)


@settings(max_examples=400)
@given(st.one_of(commands, answers), st.data())
def test_generated_decoder_matches_the_reference_decoder(msg: Any, data: st.DataObject) -> None:
    cls = type(msg)
    wire = orjson.loads(orjson.dumps(msg))
    fields = sorted(wire)
    if fields and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(fields))
        if data.draw(st.booleans()):
            wire[key] = data.draw(one_of_each_json_type | json_values)
        else:
            del wire[key]
    reference = _make_struct_decoder(cls)
    assert outcome(lambda v: decode_struct(cls, v), wire) == outcome(reference, wire)


@given(json_values)
def test_generated_decoder_matches_on_arbitrary_json(value: Any) -> None:
    for cls in (StartCommand, PingRoutingCommand, StartAnswer):
        reference = _make_struct_decoder(cls)
        assert outcome(lambda v, c=cls: decode_struct(c, v), value) == outcome(reference, value)
