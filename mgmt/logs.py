"""Structured logs: one line per event, ``time level logger message key=value ...``.

Events pass their ids as ``extra`` fields (``log.info("host up", extra={"host_id": 7})``); the formatter
appends every such field as ``key=value`` (quoted when it has spaces), so lines can be grepped by id
and parsed by log tools. Secrets must never be passed as fields or put in messages.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _value(value: object) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c in text for c in ' ="') else text


class EventFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{key}={_value(value)}" for key, value in vars(record).items() if key not in _STANDARD]
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback after the fields
        return f"{head} {' '.join(fields)}{sep}{tail}"


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
