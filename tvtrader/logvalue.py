"""Values in our key=value log lines, written so that no request can forge a line or a pair.

Its own module, importing nothing of ours: every layer logs (intake, the outbox the engine
imports, operations), and none may pull in another layer to do it.
"""

from __future__ import annotations

import json
import re

# Printed as they are; anything else is quoted.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]{1,200}")


def logvalue(value: object, limit: int = 120) -> str:
    """A value for a key=value log line that cannot forge another line or another pair.

    Every value that came from a request (a strategy id, a reason quoting a field, an
    address) goes through here. Plain tokens stay bare; anything else (spaces, `=`, quotes,
    newlines and other control characters, non-ASCII, lone surrogates) is written as a
    double-quoted JSON string with those characters escaped, which
    `tvtrader.logformat.parse_pairs` (LOG_FORMAT=json) reads back.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if _BARE.fullmatch(text):
        return text
    return json.dumps(text)
