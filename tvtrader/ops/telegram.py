"""Telegram commands from the owner's chat: /status, /positions, /halt <strategy>,
/halt_all, /resume <strategy> (the last three asked to be confirmed with /confirm <code>).

Only chats in TELEGRAM_COMMAND_CHAT_IDS are obeyed; any other chat is refused and logged.
Updates are read by long polling (`telegram_poll`, a Celery beat task every few seconds
holding a Redis lock so only one poll runs at a time; docs/operations.md). The kill switches
go through the same verbs as the admin (`strategies.services`), so every change has its
audit row (actor `telegram:<chat id>`) and its notification, and `strategies.halts` stays the
one rule for what may trade.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests
from celery import shared_task
from django.conf import settings

logger = logging.getLogger("tvtrader.telegram")

LOCK_KEY = "telegram:poll-lock"
OFFSET_KEY = "telegram:offset"
PENDING_KEY = "telegram:pending"
CONFIRM_SECONDS = 60
HELP = (
    "Commands:\n"
    "/status: trading state, strategies, what needs attention\n"
    "/positions: open positions with unrealised P&L\n"
    "/halt <strategy>: stop one strategy (asks to confirm)\n"
    "/halt_all: stop all trading (asks to confirm)\n"
    "/resume <strategy>: let a halted strategy trade again (asks to confirm)"
)


class TelegramError(Exception):
    """The Bot API could not be reached or refused the call (no secret in the text)."""


@dataclass
class Command:
    chat_id: str
    user: str
    name: str
    args: list[str]


def _api(method: str, payload: dict[str, Any], *, timeout: float) -> Any:
    url = f"{settings.TELEGRAM_API_URL}/bot{settings.TELEGRAM_BOT_TOKEN}/{method}"
    try:
        response = requests.post(url, json=payload, timeout=timeout)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        # The URL holds the bot token: keep only the exception's class.
        raise TelegramError(f"{method}: {type(exc).__name__}") from None
    if not body.get("ok"):
        raise TelegramError(f"{method}: {response.status_code} {str(body.get('description', ''))[:200]}")
    return body.get("result")


def allowed_chats() -> set[str]:
    return {str(c).strip() for c in settings.TELEGRAM_COMMAND_CHAT_IDS if str(c).strip()}


def commands_enabled() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN and allowed_chats())


def parse(update: dict[str, Any]) -> Command | None:
    message = update.get("message") or {}  # an edited old command is not a new one
    text = message.get("text")
    chat = message.get("chat") or {}
    if not isinstance(text, str) or not text.startswith("/") or "id" not in chat:
        return None
    words = text.split()
    name = words[0][1:].split("@", 1)[0].lower()  # "/halt@MyBot" in a group
    sender = message.get("from") or {}
    user = sender.get("username") or str(sender.get("id", "?"))
    return Command(chat_id=str(chat["id"]), user=str(user)[:64], name=name, args=words[1:])


# --- What each command says -------------------------------------------------------------------


def status_text() -> str:
    from django.utils import timezone

    from signals.selectors import health_report
    from strategies.attention import attention_items
    from strategies.dashboard import human_age, strategy_rows

    rows, global_halted = strategy_rows()
    lines = ["🛑 Trading HALTED (global kill switch)" if global_halted else "✅ Trading enabled"]
    for row in rows:
        age = human_age(row.last_signal_age_s)
        last = f"last alert {age} ago" if row.last_signal_age_s is not None else "no alert yet"
        lines.append(f"• {row.strategy.strategy_id}: {row.state}, {last}, {row.signals} signal(s) in 24 h")
    if not rows:
        lines.append("No strategy configured.")
    items = attention_items(rows=rows, health=health_report(), now=timezone.now())
    if items:
        lines.append(f"Needs attention ({len(items)}):")
        lines += [f"⚠️ {item.title}" for item in items[:10]]
    else:
        lines.append("Nothing needs attention.")
    return "\n".join(lines)


def positions_text() -> str:
    from execution import pnl
    from execution.models import Position

    positions = list(
        pnl.with_marks(
            Position.objects.filter(strategy__isnull=False)
            .exclude(qty=0)
            .select_related("strategy", "account")
            .order_by("strategy__strategy_id", "symbol")
        )[:50]
    )
    if not positions:
        return "No open position."
    lines = []
    for p in positions:
        unrealised = pnl.unrealized_pnl(p)
        upnl = f", unrealised {unrealised:+,.2f}" if unrealised is not None else ""
        entry = f" @ {p.avg_price.normalize():f}" if p.avg_price is not None else ""
        lines.append(f"• {p.strategy.strategy_id} {p.symbol}: {p.qty.normalize():f}{entry}{upnl} ({p.account.label})")
    return "\n".join(lines)


# --- Confirmations ---------------------------------------------------------------------------


def _pending_key(chat_id: str) -> str:
    from tvtrader.redisconn import key

    return key(PENDING_KEY, chat_id)


def _ask(cmd: Command, action: str, target: str, what: str) -> str:
    import json

    from tvtrader.redisconn import redis_client

    code = f"{secrets.randbelow(10**4):04d}"
    redis_client().set(
        _pending_key(cmd.chat_id), json.dumps({"action": action, "target": target, "code": code}), ex=CONFIRM_SECONDS
    )
    return f"{what}\nSend /confirm {code} within {CONFIRM_SECONDS} s to go ahead (anything else cancels)."


def _confirm(cmd: Command) -> str:
    import json

    from strategies import services
    from strategies.models import Strategy
    from tvtrader.redisconn import redis_client

    pipe = redis_client().pipeline()  # read and forget in one step: a code works once
    pipe.get(_pending_key(cmd.chat_id))
    pipe.delete(_pending_key(cmd.chat_id))
    raw, _ = pipe.execute()
    if not raw:
        return "Nothing to confirm (or it expired). Send the command again."
    pending = json.loads(raw)
    if not cmd.args or cmd.args[0] != pending["code"]:
        return "Wrong confirmation code: nothing done. Send the command again."
    actor = f"telegram:{cmd.chat_id}:{cmd.user}"
    reason = "via Telegram"
    if pending["action"] == "halt_all":
        changed = services.global_halt(actor=actor, reason=reason)
        return "🛑 All trading stopped." if changed else "All trading was already stopped."
    strategy = Strategy.objects.filter(strategy_id=pending["target"]).first()
    if strategy is None:
        return f"No strategy {pending['target']} any more: nothing done."
    if pending["action"] == "halt":
        changed = services.strategy_halt(strategy=strategy, actor=actor, reason=reason)
        return f"🛑 {strategy.strategy_id} halted." if changed else f"{strategy.strategy_id} was already halted."
    changed = services.strategy_resume(strategy=strategy, actor=actor, reason=reason)
    if not changed:
        return f"{strategy.strategy_id} was not halted."
    from strategies.halts import strategy_halt_reason
    from strategies.models import TradingControl

    still = strategy_halt_reason(strategy, global_halted=TradingControl.is_halted())
    return f"▶️ {strategy.strategy_id} resumed." + (f" It still does not trade: {still}." if still else "")


def _strategy_arg(cmd: Command) -> tuple[Any, str]:
    from strategies.models import Strategy

    if len(cmd.args) != 1:
        return None, f"Usage: /{cmd.name} <strategy_id>"
    strategy = Strategy.objects.filter(strategy_id=cmd.args[0]).first()
    if strategy is None:
        known = ", ".join(Strategy.objects.values_list("strategy_id", flat=True)[:20]) or "none"
        return None, f"No strategy {cmd.args[0]!r}. Known: {known}."
    return strategy, ""


def handle(cmd: Command) -> str:
    """The reply to one command from an allowed chat."""
    from tvtrader.redisconn import redis_client

    if cmd.name == "confirm":
        return _confirm(cmd)
    redis_client().delete(_pending_key(cmd.chat_id))  # any other command cancels a pending one
    if cmd.name in ("start", "help"):
        return HELP
    if cmd.name == "status":
        return status_text()
    if cmd.name == "positions":
        return positions_text()
    if cmd.name == "halt_all":
        return _ask(cmd, "halt_all", "", "Stop ALL trading? New and queued alerts will be recorded as blocked.")
    if cmd.name in ("halt", "resume"):
        strategy, error = _strategy_arg(cmd)
        if error:
            return error
        if cmd.name == "halt":
            return _ask(cmd, "halt", strategy.strategy_id, f"Halt {strategy.strategy_id}? Its alerts will be blocked.")
        return _ask(cmd, "resume", strategy.strategy_id, f"Resume {strategy.strategy_id}? It will trade new alerts.")
    return f"Unknown command /{cmd.name}.\n{HELP}"


def update_handle(update: dict[str, Any]) -> str | None:
    """Answer one update; None when it is not a command. A chat not on the list is refused
    and logged (the attempt reaches no service)."""
    cmd = parse(update)
    if cmd is None:
        return None
    if cmd.chat_id not in allowed_chats():
        logger.warning("event=telegram_command_refused chat=%s user=%s command=%s", cmd.chat_id, cmd.user, cmd.name)
        return "This chat may not control tvtrader. (Its id is not in TELEGRAM_COMMAND_CHAT_IDS.)"
    logger.info("event=telegram_command chat=%s user=%s command=%s args=%s", cmd.chat_id, cmd.user, cmd.name, cmd.args)
    try:
        return handle(cmd)
    except Exception as exc:  # answered, never silently dropped
        logger.exception("event=telegram_command_failed chat=%s command=%s", cmd.chat_id, cmd.name)
        return f"That failed: {type(exc).__name__}. Check the console."


def telegram_poll(*, wait_seconds: float | None = None) -> int:
    """Read pending updates (long polling up to `wait_seconds`), answer each command, and
    return how many updates were read. Only one poll runs at a time across processes; the
    offset is saved before a command runs, so a crash never runs a command twice."""
    from tvtrader.redisconn import key, redis_client

    if not commands_enabled():
        return 0
    wait = settings.TELEGRAM_POLL_SECONDS if wait_seconds is None else wait_seconds
    client = redis_client()
    lock = key(LOCK_KEY)
    token = secrets.token_hex(8)
    if not client.set(lock, token, nx=True, ex=int(wait) + 30):
        return 0
    try:
        offset = int(client.get(key(OFFSET_KEY)) or 0)
        try:
            updates = _api(
                "getUpdates",
                {"offset": offset, "timeout": int(wait), "allowed_updates": ["message"]},
                timeout=wait + settings.NOTIFY_HTTP_TIMEOUT_SECONDS,
            )
        except TelegramError as exc:
            logger.warning("event=telegram_poll_failed error=%s", exc)
            time.sleep(min(wait, 5))  # a dead API is not hammered by the next beat
            return 0
        for update in updates or []:
            client.set(key(OFFSET_KEY), int(update["update_id"]) + 1)
            reply = update_handle(update)
            if reply is None:
                continue
            chat_id = update["message"]["chat"]["id"]
            try:
                _api(
                    "sendMessage",
                    {"chat_id": chat_id, "text": reply[:4096], "disable_web_page_preview": True},
                    timeout=settings.NOTIFY_HTTP_TIMEOUT_SECONDS,
                )
            except TelegramError as exc:
                logger.warning("event=telegram_reply_failed chat=%s error=%s", chat_id, exc)
        return len(updates or [])
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


# Registered from OpsConfig.ready(), not from tasks.py: notifications.py (which intake imports)
# reaches tasks.py, and intake must not reach the console's reads and the engine's ledger.
@shared_task(name="ops.telegram_poll", ignore_result=True, time_limit=120)
def telegram_poll_task() -> int:
    return telegram_poll()
