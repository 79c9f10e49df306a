"""The emulator's private WebSocket streams, seen by an independent WebSocket client
(aiohttp): the venues' authentication, subscription and message shapes, Binance
listenKeys, stream faults and the handshake's refusals."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import struct
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from tests.conftest import wait_for

from .conftest import KEY, KEY2, SECRET, SECRET2

WAIT = 5.0


def ws_url(emu, path: str) -> str:
    return emu.url.replace("http://", "ws://") + path


async def receive_json(ws, timeout: float = WAIT) -> dict:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def receive_topic(ws, topic_key: str, value: str) -> dict:
    """The next message whose `topic_key` is `value` (others are skipped)."""
    while True:
        msg = await receive_json(ws)
        if msg.get(topic_key) == value:
            return msg


def bybit_auth(key: str = KEY, secret: str = SECRET, expires_in_ms: int = 10_000) -> dict:
    expires = int(time.time() * 1000) + expires_in_ms
    sig = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    return {"op": "auth", "args": [key, expires, sig]}


async def bybit_stream(session, emu, key=KEY, secret=SECRET, topics=("order", "execution", "position")):
    ws = await session.ws_connect(ws_url(emu, "/v5/private"))
    await ws.send_json(bybit_auth(key, secret))
    assert (await receive_json(ws))["success"] is True
    await ws.send_json({"op": "subscribe", "req_id": "s1", "args": list(topics)})
    ack = await receive_json(ws)
    assert ack["success"] is True and ack["req_id"] == "s1"
    return ws


def admin(emu, method: str, route: str, data=None):
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(f"{emu.url}/__emulator/{route}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def listen_key(emu, method: str = "POST", key: str = KEY) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{emu.url}/fapi/v1/listenKey",
        data=b"",
        method=method,
        headers={"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run(scenario):
    async def main():
        async with aiohttp.ClientSession() as session:
            await scenario(session)

    asyncio.run(main())


# --------------------------------------------------------------------------- Bybit


def test_bybit_stream_authenticates_with_the_venue_signature_and_refuses_what_is_wrong(emu):
    async def scenario(session):
        ws = await session.ws_connect(ws_url(emu, "/v5/private"))
        await ws.send_json({"op": "subscribe", "req_id": "early", "args": ["order"]})
        early = await receive_json(ws)
        assert early["success"] is False and early["req_id"] == "early" and "not authorized" in early["ret_msg"]
        for bad, words in (
            (bybit_auth(secret="wrong"), "signature"),
            (bybit_auth(key="nobody"), "API key"),
            (bybit_auth(expires_in_ms=-1000), "expire"),
        ):
            await ws.send_json(bad)
            answer = await receive_json(ws)
            assert answer["op"] == "auth" and answer["success"] is False and words in answer["ret_msg"]
        await ws.send_json({"req_id": "p1", "op": "ping"})
        pong = await receive_json(ws)
        assert pong["op"] == "pong" and pong["req_id"] == "p1" and pong["args"][0].isdigit()
        await ws.send_json(bybit_auth())
        ok = await receive_json(ws)
        assert ok["success"] is True and ok["op"] == "auth" and ok["conn_id"]
        await ws.send_json({"op": "subscribe", "req_id": "x", "args": ["orderbook.50.BTCUSDT"]})
        assert (await receive_json(ws))["success"] is False
        await ws.close()

    run(scenario)
    (record,) = emu.requests(operation="stream_connect")
    assert (record.status, record.venue, record.account) == (101, "bybit", KEY)


def test_bybit_pushes_order_execution_and_position_in_the_venues_shapes(emu, bybit, make_bybit):
    emu.set_price("BTCUSDT", "65000")
    other = make_bybit(key=KEY2, secret=SECRET2)

    async def scenario(session):
        ws = await bybit_stream(session, emu)
        ws2 = await bybit_stream(session, emu, KEY2, SECRET2, topics=("order",))
        await asyncio.to_thread(
            bybit.create_order, "BTC/USDT:USDT", "market", "buy", 0.01, None, {"orderLinkId": "mine1"}
        )
        order = await receive_topic(ws, "topic", "order")
        assert order["id"] and isinstance(order["creationTime"], int)
        (row,) = order["data"]
        assert row["category"] == "linear" and row["orderLinkId"] == "mine1"
        assert (row["orderStatus"], row["cumExecQty"], row["avgPrice"], row["leavesQty"]) == (
            "Filled",
            "0.01",
            "65000",
            "0",
        )
        assert row["cumExecFee"] == "0.3575" and row["orderType"] == "Market"
        execution = await receive_topic(ws, "topic", "execution")
        (fill,) = execution["data"]
        assert (fill["execQty"], fill["execPrice"], fill["execFee"], fill["isMaker"]) == (
            "0.01",
            "65000",
            "0.3575",
            False,
        )
        assert fill["orderLinkId"] == "mine1" and fill["execType"] == "Trade" and fill["category"] == "linear"
        position = await receive_topic(ws, "topic", "position")
        (pos,) = position["data"]
        assert (pos["symbol"], pos["side"], pos["size"], pos["entryPrice"]) == ("BTCUSDT", "Buy", "0.01", "65000")
        # The other account's stream gets its own order first: nothing of the first leaked.
        await asyncio.to_thread(
            other.create_order, "BTC/USDT:USDT", "market", "buy", 0.01, None, {"orderLinkId": "theirs1"}
        )
        first = await receive_topic(ws2, "topic", "order")
        assert first["data"][0]["orderLinkId"] == "theirs1"

    run(scenario)


def test_bybit_resting_then_crossed_limit_order_is_pushed_new_then_filled_as_maker(emu, bybit):
    emu.set_price("BTCUSDT", "65000")

    async def scenario(session):
        ws = await bybit_stream(session, emu, topics=("order.linear", "execution"))
        await asyncio.to_thread(
            bybit.create_order, "BTC/USDT:USDT", "limit", "buy", 0.01, 64000, {"orderLinkId": "rest1"}
        )
        new = await receive_topic(ws, "topic", "order")
        assert new["data"][0]["orderStatus"] == "New"
        await asyncio.to_thread(emu.set_price, "BTCUSDT", "63000")
        filled = await receive_topic(ws, "topic", "order")
        assert (filled["data"][0]["orderStatus"], filled["data"][0]["avgPrice"]) == ("Filled", "64000")
        execution = await receive_topic(ws, "topic", "execution")
        assert execution["data"][0]["isMaker"] is True

    run(scenario)


# ------------------------------------------------------------------------- Binance


def test_binance_listen_key_create_keepalive_delete_and_its_refusals(emu):
    status, created = listen_key(emu)
    assert status == 200 and len(created["listenKey"]) == 64
    # An account with an active key gets the same one back.
    assert listen_key(emu)[1] == created
    assert listen_key(emu, "PUT") == (200, created)
    assert listen_key(emu, key="nobody") == (
        401,
        {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
    )

    async def scenario(session):
        key = created["listenKey"]
        classic = await session.ws_connect(ws_url(emu, f"/ws/{key}"))
        routed = await session.ws_connect(ws_url(emu, f"/private/ws?listenKey={key}"))
        assert {c.account for c in emu.streams.connections(venue="binance")} == {KEY}
        await asyncio.to_thread(listen_key, emu, "DELETE")
        for ws in (classic, routed):
            msg = await asyncio.wait_for(ws.receive(), WAIT)
            assert msg.type == aiohttp.WSMsgType.CLOSE
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(emu, f"/ws/{key}"))
        assert refused.value.status == 400

    run(scenario)
    assert listen_key(emu, "PUT") == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    assert [r.operation for r in emu.requests(venue="binance")][:3] == [
        "listen_key_create",
        "listen_key_create",
        "listen_key_keepalive",
    ]


def test_binance_pushes_new_trade_and_account_update_in_the_venues_shapes(emu, binance):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("partial_fill", "create_order", fraction=0.5)

    async def scenario(session):
        key = listen_key(emu)[1]["listenKey"]
        ws = await session.ws_connect(ws_url(emu, f"/ws/{key}"))
        await asyncio.to_thread(
            binance.create_order, "BTC/USDT:USDT", "market", "sell", 0.02, None, {"newClientOrderId": "bin1"}
        )
        new = await receive_json(ws)
        assert new["e"] == "ORDER_TRADE_UPDATE" and isinstance(new["E"], int)
        o = new["o"]
        assert (o["x"], o["X"], o["c"], o["S"], o["o"], o["q"], o["z"], o["ps"]) == (
            "NEW",
            "NEW",
            "bin1",
            "SELL",
            "MARKET",
            "0.02",
            "0",
            "BOTH",
        )
        assert "n" not in o
        first = (await receive_json(ws))["o"]
        assert (first["x"], first["X"], first["l"], first["z"], first["L"], first["ap"]) == (
            "TRADE",
            "PARTIALLY_FILLED",
            "0.01",
            "0.01",
            "65000",
            "65000",
        )
        assert (first["n"], first["N"], first["m"], first["i"]) == ("0.325", "USDT", False, o["i"])
        account = await receive_json(ws)
        assert account["e"] == "ACCOUNT_UPDATE" and account["a"]["m"] == "ORDER"
        assert account["a"]["P"][0]["pa"] == "-0.01" and account["a"]["B"][0]["a"] == "USDT"
        await asyncio.to_thread(emu.fill_rest, None, "bin1")
        rest = (await receive_json(ws))["o"]
        assert (rest["x"], rest["X"], rest["l"], rest["z"]) == ("TRADE", "FILLED", "0.01", "0.02")
        assert (await receive_json(ws))["a"]["P"][0]["pa"] == "-0.02"

    run(scenario)


def test_binance_cancelled_order_is_pushed_new_then_canceled(emu, binance):
    emu.set_price("BTCUSDT", "65000")

    async def scenario(session):
        key = listen_key(emu)[1]["listenKey"]
        ws = await session.ws_connect(ws_url(emu, f"/private/ws?listenKey={key}"))
        order = await asyncio.to_thread(
            binance.create_order, "BTC/USDT:USDT", "limit", "buy", 0.01, 60000, {"newClientOrderId": "bin2"}
        )
        assert (await receive_json(ws))["o"]["X"] == "NEW"
        await asyncio.to_thread(binance.cancel_order, order["id"], "BTC/USDT:USDT")
        cancelled = (await receive_json(ws))["o"]
        assert (cancelled["x"], cancelled["X"], cancelled["c"]) == ("CANCELED", "CANCELED", "bin2")

    run(scenario)


def test_an_expired_listen_key_says_so_and_its_stream_gets_nothing_more(emu, binance):
    emu.set_price("BTCUSDT", "65000")
    admin(emu, "POST", "streams/listen_key_ttl", {"seconds": 0.3})

    async def scenario(session):
        key = listen_key(emu)[1]["listenKey"]
        ws = await session.ws_connect(ws_url(emu, f"/ws/{key}"))
        expired = await receive_json(ws)
        assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == key
        (conn,) = emu.streams.connections(venue="binance")
        assert conn.ended and not conn.as_dict()["closed"]
        sent = conn.pushes_sent
        await asyncio.to_thread(binance.create_order, "BTC/USDT:USDT", "market", "buy", 0.01)
        assert conn.pushes_sent == sent
        assert not ws.closed  # the venue keeps the socket open
        assert listen_key(emu, "PUT")[1]["code"] == -1125
        # A new POST makes a new key.
        assert listen_key(emu)[1]["listenKey"] != key

    run(scenario)


# -------------------------------------------------------------------------- Faults


def test_stream_faults_delay_drop_and_silence_pushes(emu, bybit):
    emu.set_price("BTCUSDT", "65000")

    async def scenario(session):
        ws = await bybit_stream(session, emu, topics=("order",))
        # Delay: the push leaves 300 ms late.
        emu.add_fault("stream_delay_ms", ms=300)
        sent = time.monotonic()
        await asyncio.to_thread(bybit.create_order, "BTC/USDT:USDT", "market", "buy", 0.01)
        await receive_topic(ws, "topic", "order")
        assert time.monotonic() - sent >= 0.3
        # Silent: the push is swallowed, and nothing at all is sent while the rule exists.
        rule = emu.add_fault("stream_silent", count=None)
        await asyncio.to_thread(bybit.create_order, "BTC/USDT:USDT", "market", "buy", 0.01)
        assert emu.streams.connections(venue="bybit")[0].pushes_swallowed == 1
        await ws.send_json({"op": "ping", "req_id": "while-silent"})
        conn = emu.streams.connections(venue="bybit")[0]
        await asyncio.to_thread(wait_for, lambda: conn.as_dict()["frames_muted"] >= 1, 5, 0.01, "the pong muted")
        emu.remove_fault(rule.id)
        await ws.send_json({"op": "ping", "req_id": "after"})
        pong = await receive_json(ws)
        assert pong["req_id"] == "after"
        # Drop before: the connection is cut instead of the push.
        emu.add_fault("stream_drop", "stream_push", when="before")
        await asyncio.to_thread(bybit.create_order, "BTC/USDT:USDT", "market", "buy", 0.01)
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)

    run(scenario)


def test_stream_drop_after_sends_the_push_then_cuts(emu, bybit):
    emu.set_price("BTCUSDT", "65000")

    async def scenario(session):
        ws = await bybit_stream(session, emu, topics=("order",))
        emu.add_fault("stream_drop", venue="bybit", account=KEY, when="after")
        await asyncio.to_thread(bybit.create_order, "BTC/USDT:USDT", "market", "buy", 0.01)
        assert (await receive_json(ws))["topic"] == "order"
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)

    run(scenario)


def test_handshake_refusals_and_http_faults_on_the_upgrade(emu):
    async def scenario(session):
        with pytest.raises(aiohttp.WSServerHandshakeError) as unknown:
            await session.ws_connect(ws_url(emu, "/v5/public/linear"))
        assert unknown.value.status == 404
        emu.add_fault("http_status", "stream_connect", status=503)
        with pytest.raises(aiohttp.WSServerHandshakeError) as down:
            await session.ws_connect(ws_url(emu, "/v5/private"))
        assert down.value.status == 503
        ws = await session.ws_connect(ws_url(emu, "/v5/private"))
        streams = await asyncio.to_thread(admin, emu, "GET", "streams?venue=bybit")
        assert len(streams) == 1 and streams[0]["path"] == "/v5/private"
        assert (await asyncio.to_thread(admin, emu, "POST", "streams/drop", {"venue": "bybit"}))["dropped"] == 1
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)

    run(scenario)
    assert [r.outcome for r in emu.requests(operation="stream_connect")] == [
        "not_found",
        "fault:http_status:503",
        "upgraded",
    ]


def test_framing_fragmented_and_long_messages_and_unmasked_frames(emu):
    """RFC 6455 details checked on a raw socket: a ping op split over three frames (with a
    ping control frame in between) is answered; a 70 kB message (64-bit length) is read;
    an unmasked client frame ends the connection."""
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=WAIT)
    sock.sendall(
        b"GET /v5/private HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"HTTP/1.1 101")
    headers = {}
    while (line := reader.readline()) != b"\r\n":
        name, value = line.decode().split(":", 1)
        headers[name.lower()] = value.strip()
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def frame(opcode, payload, fin=True, masked=True):
        mask = b"\x01\x02\x03\x04"
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        length = (
            bytes([n])
            if n < 126
            else (bytes([126]) + struct.pack("!H", n) if n < 65536 else bytes([127]) + struct.pack("!Q", n))
        )
        if masked:
            length = bytes([length[0] | 0x80]) + length[1:]
            body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            return head + length + mask + body
        return head + length + payload

    def read_frame():
        b1, b2 = reader.read(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", reader.read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", reader.read(8))
        return b1 & 0x0F, reader.read(n)

    text = json.dumps({"op": "ping", "req_id": "frag"}).encode()
    sock.sendall(
        frame(0x1, text[:5], fin=False) + frame(0x9, b"hi") + frame(0x0, text[5:12], fin=False) + frame(0x0, text[12:])
    )
    assert read_frame() == (0xA, b"hi")
    opcode, payload = read_frame()
    assert opcode == 0x1 and json.loads(payload)["req_id"] == "frag"
    sock.sendall(frame(0x1, json.dumps({"op": "ping", "req_id": "long", "pad": "x" * 70_000}).encode()))
    opcode, payload = read_frame()
    assert json.loads(payload)["req_id"] == "long"
    sock.sendall(frame(0x1, b'{"op":"ping"}', masked=False))
    assert reader.read(1) == b""  # closed
    sock.close()
