"""A small RFC 6455 WebSocket server endpoint on top of the emulator's HTTP server.

The HTTP handler thread that received the upgrade request becomes the
connection's reader: it answers the handshake, then reads frames (unmasking,
reassembling fragments, answering pings and close frames) and hands each text
message to a callback. Everything the server sends - pushes, replies, pongs,
close frames - goes through one FIFO queue drained by the connection's own
sender thread, so writers never block the engine, a delayed message delays the
ones behind it (as on one TCP stream), and frames are never interleaved.

No extension is negotiated (a client's permessage-deflate offer is declined by
not answering it), no subprotocol, text and binary frames only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = ["MAX_MESSAGE_BYTES", "WebSocket", "accept_key", "is_upgrade"]

log = logging.getLogger(__name__)

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE_BYTES = 1 << 20

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((client_key.strip() + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def is_upgrade(headers) -> bool:
    """Is this HTTP request a WebSocket upgrade?"""
    upgrade = (headers.get("Upgrade") or "").lower()
    connection = (headers.get("Connection") or "").lower()
    return upgrade == "websocket" and "upgrade" in connection


def handshake_error(headers) -> str | None:
    """Why this upgrade request is not a valid RFC 6455 handshake (None if it is)."""
    if (headers.get("Sec-WebSocket-Version") or "").strip() != "13":
        return "Sec-WebSocket-Version must be 13"
    key = (headers.get("Sec-WebSocket-Key") or "").strip()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return "Sec-WebSocket-Key must be 16 bytes, base64"
    except ValueError:
        return "Sec-WebSocket-Key must be 16 bytes, base64"
    return None


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class _Closed(Exception):
    """The peer went away or broke the protocol."""


class WebSocket:
    """One server-side WebSocket connection (after a successful handshake).

    ``rfile`` is the handler's buffered reader (it may already hold the first
    frame), ``sock`` the raw socket for writing and shutting down.
    """

    def __init__(self, sock: socket.socket, rfile, *, name: str = "ws") -> None:
        self.sock = sock
        self.rfile = rfile
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name=f"{name}:send", daemon=True)
        self._sender.start()
        # Set by the owner: True suppresses every outgoing frame (a silent stream).
        self.mute: Callable[[], bool] = lambda: False
        self.frames_muted = 0

    # ------------------------------------------------------------- sending
    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send_text(self, text: str, *, delay_ms: float = 0.0) -> None:
        """Queue a text message; ``delay_ms`` holds it (and what follows) back."""
        self._put(_frame(OP_TEXT, text.encode("utf-8")), delay_ms)

    def send_raw(self, data: bytes) -> None:
        """Queue bytes as they are (the handshake answer, which must go first)."""
        self._put(data, 0.0)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Queue a close frame; the connection is shut once it is sent."""
        self._put(("close", _frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])), 0.0)

    def drop_after_queued(self) -> None:
        """Cut the connection (no close frame) once what is queued has been sent."""
        self._put(("drop", b""), 0.0)

    def drop(self) -> None:
        """Cut the connection now: no close frame, queued messages are lost."""
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._queue.put(None)

    def _put(self, item, delay_ms: float) -> None:
        if self._closed.is_set():
            return
        due = time.monotonic() + delay_ms / 1000.0 if delay_ms > 0 else 0.0
        self._queue.put((due, item))

    def _send_loop(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None or self._closed.is_set():
                return
            due, item = entry
            if due:
                wait = due - time.monotonic()
                if wait > 0 and self._closed.wait(wait):
                    return
            action, data = item if isinstance(item, tuple) else ("data", item)
            if action == "drop":
                self.drop()
                return
            if self.mute():
                self.frames_muted += 1
                continue
            try:
                self.sock.sendall(data)
            except OSError:
                self.drop()
                return
            if action == "close":
                self._closed.set()
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    # ------------------------------------------------------------- reading
    def _read(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise _Closed("peer closed")
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b1, b2 = self._read(2)
        fin, rsv, opcode = bool(b1 & 0x80), b1 & 0x70, b1 & 0x0F
        if rsv:
            raise _Closed("reserved bits set (no extension was negotiated)")
        if not b2 & 0x80:
            raise _Closed("client frames must be masked")
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        if n > MAX_MESSAGE_BYTES:
            raise _Closed("frame too large")
        if opcode >= 0x8 and (n > 125 or not fin):
            raise _Closed("bad control frame")
        mask = self._read(4)
        return fin, opcode, _unmask(self._read(n), mask)

    def serve(self, on_text: Callable[[str], None]) -> None:
        """Read until the connection ends; call ``on_text`` for each text message."""
        parts: list[bytes] = []
        kind = None
        try:
            while not self._closed.is_set():
                fin, opcode, payload = self._read_frame()
                if opcode == OP_PING:
                    self._put(_frame(OP_PONG, payload), 0.0)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode == OP_CLOSE:
                    code = payload[:2] if len(payload) >= 2 else struct.pack("!H", 1000)
                    self._put(("close", _frame(OP_CLOSE, code)), 0.0)
                    break
                if opcode == OP_CONT:
                    if kind is None:
                        raise _Closed("continuation without a first frame")
                elif opcode in (OP_TEXT, OP_BINARY):
                    if kind is not None:
                        raise _Closed("new message inside a fragmented one")
                    kind = opcode
                else:
                    raise _Closed(f"unknown opcode {opcode}")
                parts.append(payload)
                if sum(len(p) for p in parts) > MAX_MESSAGE_BYTES:
                    raise _Closed("message too large")
                if fin:
                    message, parts, done_kind = b"".join(parts), [], kind
                    kind = None
                    if done_kind == OP_TEXT:
                        try:
                            text = message.decode("utf-8")
                        except UnicodeDecodeError:
                            raise _Closed("text frame is not UTF-8") from None
                        on_text(text)
        except (_Closed, OSError, ValueError) as exc:
            log.debug("%s: connection ends: %s", self.name, exc)
        finally:
            # Let a queued close frame go out, then make sure the socket is shut.
            self._queue.put(None)
            self._sender.join(timeout=2)
            self.drop()
