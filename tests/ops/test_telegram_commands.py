"""Telegram commands from the owner's chat, against a local stand-in for the Bot API: status
and positions read, kill switches changed only after a confirmation and audited like the
admin's, and any other chat refused."""

from __future__ import annotations

import itertools
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from execution.models import Position
from signals.models import Signal
from strategies.models import AuditEntry, Strategy, TradingControl
from tests.conftest import alert_body, wait_for
from tests.factories import SignalFactory, StrategyFactory
from tvtrader.ops import telegram
from tvtrader.redisconn import key, redis_client

from .conftest import BOT_TOKEN

pytestmark = pytest.mark.django_db

OWNER, STRANGER = "777001", "666999"


class FakeBotApi:
    """getUpdates hands out queued updates after the caller's offset; sendMessage records."""

    def __init__(self):
        self.updates: list[dict] = []
        self.sent: list[dict] = []
        self.calls: list[str] = []
        self.ids = itertools.count(1000)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def command(self, text: str, chat_id: str = OWNER, username: str = "owner") -> None:
        with self.lock:
            self.updates.append(
                {
                    "update_id": next(self.ids),
                    "message": {
                        "message_id": 1,
                        "chat": {"id": int(chat_id), "type": "private"},
                        "from": {"id": int(chat_id), "username": username},
                        "text": text,
                    },
                }
            )

    def replies(self, chat_id: str = OWNER) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.sent if str(m["chat_id"]) == chat_id]


@pytest.fixture
def bot(settings):
    fake = FakeBotApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            method = self.path.rsplit("/", 1)[-1]
            with fake.lock:
                fake.calls.append(self.path)
                if not self.path.startswith(f"/bot{BOT_TOKEN}/"):
                    answer, status = {"ok": False, "description": "Unauthorized"}, 401
                elif method == "getUpdates":
                    answer = {"ok": True, "result": [u for u in fake.updates if u["update_id"] >= body["offset"]]}
                    status = 200
                else:
                    fake.sent.append(body)
                    answer, status = {"ok": True, "result": {"message_id": len(fake.sent)}}, 200
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    fake.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=fake.server.serve_forever, daemon=True).start()
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    settings.TELEGRAM_API_URL = fake.url
    settings.TELEGRAM_COMMAND_CHAT_IDS = [OWNER]
    settings.TELEGRAM_CHAT_ID = ""
    settings.DISCORD_WEBHOOK_URL = ""
    client = redis_client()
    for name in (telegram.OFFSET_KEY, telegram.LOCK_KEY):
        client.delete(key(name))
    client.delete(key(telegram.PENDING_KEY, OWNER), key(telegram.PENDING_KEY, STRANGER))
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def poll(bot: FakeBotApi) -> int:
    return telegram.telegram_poll(wait_seconds=0)


def test_status_lists_the_switch_strategies_and_what_needs_attention(bot, strategy_with_history):
    from signals.services import webhook_rejection_record

    webhook_rejection_record(source="203.0.113.9", reason="bad_passphrase", strategy_key="trend-btc")
    bot.command("/status")
    assert poll(bot) == 1
    reply = bot.replies()[-1]
    assert "✅ Trading enabled" in reply
    assert "trend-btc: paper" in reply
    assert "Needs attention" in reply and "⚠️ Alerts refused: wrong passphrase" in reply


def test_positions_show_quantity_entry_and_unrealised_pnl(bot, strategy_with_history):
    bot.command("/positions")
    poll(bot)
    assert "trend-btc BTC/USDT:USDT: 0.5 @ 65000, unrealised +500.00" in bot.replies()[-1]


def test_halt_needs_confirmation_then_is_audited_like_the_admins(bot, strategy_with_history, client):
    strategy = strategy_with_history
    bot.command("/halt trend-btc")
    poll(bot)
    ask = bot.replies()[-1]
    assert "Halt trend-btc?" in ask
    assert not Strategy.objects.get(pk=strategy.pk).halted
    code = ask.split("/confirm ", 1)[1].split()[0]

    bot.command("/confirm 0000" if code != "0000" else "/confirm 1111")
    poll(bot)
    assert "Wrong confirmation code" in bot.replies()[-1]
    assert not Strategy.objects.get(pk=strategy.pk).halted

    bot.command("/halt trend-btc")
    poll(bot)
    code = bot.replies()[-1].split("/confirm ", 1)[1].split()[0]
    bot.command(f"/confirm {code}")
    poll(bot)
    assert bot.replies()[-1] == "🛑 trend-btc halted."
    assert Strategy.objects.get(pk=strategy.pk).halted
    entry = AuditEntry.objects.get(target_type="strategy", target_id="trend-btc", field="halted")
    assert entry.actor == f"telegram:{OWNER}:owner" and entry.new_value == "True" and entry.note == "via Telegram"

    # The one halt rule: an alert for it is now blocked at intake.
    response = client.post("/tv-webhook", json.dumps(alert_body(strategy_id="trend-btc")), content_type="text/plain")
    assert response.json()["status"] == "blocked"
    bot.command(f"/confirm {code}")  # a code works once
    poll(bot)
    assert "Nothing to confirm" in bot.replies()[-1]

    bot.command("/resume trend-btc")
    poll(bot)
    code = bot.replies()[-1].split("/confirm ", 1)[1].split()[0]
    bot.command(f"/confirm {code}")
    poll(bot)
    assert bot.replies()[-1] == "▶️ trend-btc resumed."
    assert not Strategy.objects.get(pk=strategy.pk).halted


def test_halt_all_engages_the_global_switch_after_confirmation(bot, strategy_with_history):
    bot.command("/halt_all")
    poll(bot)
    code = bot.replies()[-1].split("/confirm ", 1)[1].split()[0]
    assert not TradingControl.is_halted()
    bot.command(f"/confirm {code}")
    poll(bot)
    assert bot.replies()[-1] == "🛑 All trading stopped."
    assert TradingControl.is_halted()
    assert AuditEntry.objects.filter(target_type="global", actor=f"telegram:{OWNER}:owner").exists()


def test_another_command_cancels_a_pending_confirmation(bot, strategy_with_history):
    bot.command("/halt_all")
    poll(bot)
    code = bot.replies()[-1].split("/confirm ", 1)[1].split()[0]
    bot.command("/status")
    bot.command(f"/confirm {code}")
    poll(bot)
    assert "Nothing to confirm" in bot.replies()[-1]
    assert not TradingControl.is_halted()


def test_a_command_from_any_other_chat_is_refused_and_changes_nothing(bot, strategy_with_history, caplog):
    bot.command("/halt_all", chat_id=STRANGER, username="mallory")
    bot.command("/status", chat_id=STRANGER, username="mallory")
    assert poll(bot) == 2
    refusals = bot.replies(STRANGER)
    assert len(refusals) == 2 and all("may not control" in r for r in refusals)
    assert "Trading" not in "".join(refusals)  # not even the status leaks
    # Even a confirmation code seen elsewhere does not work from that chat.
    bot.command("/halt_all")
    poll(bot)
    code = bot.replies()[-1].split("/confirm ", 1)[1].split()[0]
    bot.command(f"/confirm {code}", chat_id=STRANGER, username="mallory")
    poll(bot)
    assert not TradingControl.is_halted()
    assert not AuditEntry.objects.exists()
    assert "telegram_command_refused" in caplog.text and STRANGER in caplog.text


def test_each_update_is_answered_once_and_unknown_commands_get_help(bot, strategy_with_history):
    bot.command("/hello")
    bot.command("just text, not a command")
    assert poll(bot) == 2
    assert poll(bot) == 0  # the offset moved past both
    assert len(bot.replies()) == 1 and "Unknown command /hello" in bot.replies()[0]
    assert "/halt_all" in bot.replies()[0]


def test_unknown_strategy_is_named_with_the_known_ones(bot, strategy_with_history):
    bot.command("/halt nope")
    poll(bot)
    assert "No strategy 'nope'. Known: trend-btc." == bot.replies()[-1]


def test_nothing_is_polled_without_an_allowed_chat(bot, settings):
    settings.TELEGRAM_COMMAND_CHAT_IDS = []
    bot.command("/status")
    assert poll(bot) == 0 and bot.calls == []


def test_only_one_poll_runs_at_a_time(bot, strategy_with_history):
    redis_client().set(key(telegram.LOCK_KEY), "someone-else", ex=30)
    bot.command("/status")
    assert poll(bot) == 0 and bot.calls == []


@pytest.mark.slow
def test_the_beat_task_answers_from_a_real_worker(bot, worker_factory, strategy_with_history):
    from tests.ops.conftest import FakeChannels, channel_env

    channels = FakeChannels()
    channels.server = bot.server  # the stand-in Bot API's address
    worker_factory(
        queues="notifications",
        env=channel_env(channels, TELEGRAM_COMMAND_CHAT_IDS=OWNER, TELEGRAM_POLL_SECONDS="1", DISCORD_WEBHOOK_URL=""),
    )
    bot.command("/positions")
    telegram.telegram_poll_task.delay()
    wait_for(lambda: bot.replies(), timeout=20, message="the worker's reply")
    assert "trend-btc BTC/USDT:USDT" in bot.replies()[0]


@pytest.fixture
def strategy_with_history(db):
    strategy = StrategyFactory(strategy_id="trend-btc")
    SignalFactory(strategy=strategy, price=Decimal("66000"), status=Signal.Status.EXECUTED)
    Position.objects.create(
        account=strategy.account, strategy=strategy, symbol="BTC/USDT:USDT", qty=Decimal("0.5"), avg_price=65000
    )
    return strategy
