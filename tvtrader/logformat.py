"""LOG_FORMAT=json: one JSON object per line, with the message's key=value pairs lifted into
fields (so `event`, `strategy` and `signal` are queryable in Loki, Elasticsearch, jq…). The
values in those pairs are written by `tvtrader.logvalue.logvalue`, which `parse_pairs` reads."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# key=value, key='quoted value' or key="quoted value" (the %r of our log calls).
_PAIR = re.compile(r"""(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")
_RESERVED = {"ts", "level", "logger", "msg", "exc"}


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
