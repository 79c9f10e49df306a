"""A local HTTP server standing in for the Telegram Bot API and a Discord webhook: records
what it got, and can be told to fail, rate-limit or hang."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FakeChannels:
    def __init__(self):
        self.received: list[dict] = []
        self.plan: list[tuple[int, dict | None, float]] = []  # (status, body, delay) per request, then 200
        self.channel_plan: dict[str, list[tuple[int, dict | None, float]]] = {}  # the same, for one channel first
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def next_answer(self, channel: str) -> tuple[int, dict | None, float]:
        with self.lock:
            if self.channel_plan.get(channel):
                return self.channel_plan[channel].pop(0)
            return self.plan.pop(0) if self.plan else (200, None, 0.0)

    def messages(self, channel: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.received if channel is None or r["channel"] == channel]


@pytest.fixture
def fake_channels():
    fake = FakeChannels()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            channel = "telegram" if self.path.startswith("/bot") else "discord"
            status, answer, delay = fake.next_answer(channel)
            if delay:
                time.sleep(delay)
            with fake.lock:
                fake.received.append(
                    {"channel": channel, "path": self.path, "body": body, "status": status, "at": time.time()}
                )
            if answer is None:
                answer = {"ok": True, "result": {"message_id": len(fake.received)}} if channel == "telegram" else {}
            if channel == "discord" and status == 200 and not answer:
                self.send_response(204)
                self.end_headers()
                return
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.server.daemon_threads = True
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


BOT_TOKEN = "123456:AAE-secret-bot-token-xyz"


@pytest.fixture
def channels_configured(settings, fake_channels):
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    settings.TELEGRAM_CHAT_ID = "-1001"
    settings.TELEGRAM_API_URL = fake_channels.url
    settings.DISCORD_WEBHOOK_URL = f"{fake_channels.url}/api/webhooks/42/discord-secret"
    return fake_channels


def channel_env(fake: FakeChannels, **extra) -> dict[str, str]:
    """Environment for a worker process that talks to the fake channels."""
    env = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_CHAT_ID": "-1001",
        "TELEGRAM_API_URL": fake.url,
        "DISCORD_WEBHOOK_URL": f"{fake.url}/api/webhooks/42/discord-secret",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env
