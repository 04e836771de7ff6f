"""Structured log lines: the message, then every extra field as key=value."""

from __future__ import annotations

import logging

from mgmt.logs import EventFormatter


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mgmt.agents", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_fields_follow_the_message_and_are_quoted_when_needed() -> None:
    fmt = EventFormatter("%(levelname)s %(name)s %(message)s")
    line = fmt.format(record("host Up", host_id=7, guid="kvm-1", reason="read failed: reset", empty=""))
    assert line == 'INFO mgmt.agents host Up host_id=7 guid=kvm-1 reason="read failed: reset" empty=""'
    assert fmt.format(record("plain")) == "INFO mgmt.agents plain"


def test_a_traceback_stays_after_the_fields() -> None:
    fmt = EventFormatter("%(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("handler failed", host_id=3)
        rec.exc_info = sys.exc_info()
    first, *rest = fmt.format(rec).split("\n")
    assert first == "handler failed host_id=3"
    assert rest[-1] == "ValueError: boom"
