"""How log lines are written: `logvalue` makes any value safe inside a key=value line, and
LOG_FORMAT=json writes one JSON object per line, with the message's key=value pairs lifted
into fields (so `event`, `strategy` and `signal` are queryable in Loki, Elasticsearch, jq…)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# key=value, key='quoted value' or key="quoted value" (the %r of our log calls).
_PAIR = re.compile(r"""(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_RESERVED = {"ts", "level", "logger", "msg", "exc"}
# Printed as they are; anything else is quoted.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]{1,200}")


def logvalue(value: object, limit: int = 120) -> str:
    """A value for a key=value log line that cannot forge another line or another pair.

    Every value that came from a request (a strategy id, a reason quoting a field, an
    address) goes through here. Plain tokens stay bare; anything else (spaces, `=`, quotes,
    newlines and other control characters, non-ASCII, lone surrogates) is written as a
    double-quoted JSON string with those characters escaped, which `parse_pairs` reads back.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)


def parse_pairs(message: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in _PAIR.findall(message):
        if value[:1] in "'\"" and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        fields[key if key not in _RESERVED else f"{key}_"] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        doc.update(parse_pairs(message))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)
