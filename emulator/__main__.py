"""Developer server: ``python -m emulator --port 8800 --key K --secret S --passphrase P``.

Serves the Bybit V5, Binance USD-M, Bitget v2 and OKX v5 emulator on loopback
until Ctrl-C and prints how to point a ccxt instance (or a testnet-mode
tvtrader account) at it. Without ``--key``/``--secret``/``--passphrase`` it
makes up demo credentials and prints them; a secret or passphrase passed on
the command line is never echoed.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading

from .server import ExchangeEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local Bybit V5 + Binance USD-M + Bitget v2 + OKX v5 REST and private-stream emulator for ccxt.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8800, help="0 picks a free port")
    parser.add_argument("--key", help="API key (default: a demo key)")
    parser.add_argument("--secret", help="API secret (default: a generated demo secret)")
    parser.add_argument(
        "--passphrase", help="API passphrase Bitget and OKX require (default: a generated demo passphrase)"
    )
    parser.add_argument("--balance", default="100000", help="starting USDT balance of each account")
    parser.add_argument(
        "--realtime-open-only",
        action="store_true",
        help="/v5/order/realtime by id returns open orders only (default: any status)",
    )
    args = parser.parse_args(argv)

    key = args.key or "emulator-demo-key"
    generated = args.secret is None
    secret = args.secret or secrets.token_hex(16)
    passphrase_generated = args.passphrase is None
    passphrase = args.passphrase or secrets.token_hex(6)
    try:
        emu = ExchangeEmulator(
            host=args.host,
            port=args.port,
            accounts={key: secret},
            passphrases={key: passphrase},
            initial_balances={"USDT": args.balance},
            realtime_by_id_any_status=not args.realtime_open_only,
        )
        emu.start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the emulator: {exc}", file=sys.stderr)
        return 2

    shown = secret if generated else "(as given on the command line)"
    shown_pass = passphrase if passphrase_generated else "(as given on the command line)"
    print(f"Exchange emulator listening on {emu.url}", flush=True)
    print("  venues : Bybit V5 (/v5/...), Binance USD-M (/fapi/...), Bitget v2 (/api/v2/...), OKX v5 (/api/v5/...)")
    print(f"  streams: {emu.url.replace('http', 'ws')}/v5/private, /ws/<listenKey> (Binance user data)")
    print(f"  api key: {key}")
    print(f"  secret : {shown}")
    print(f"  passphrase (Bitget, OKX): {shown_pass}")
    print(f"  admin  : {emu.url}/__emulator/health, /faults, /requests, /orders, /reset")
    print("  ccxt   : redirect_exchange(exchange, url) from execution.exchanges.redirect")
    print("Ctrl-C to stop.", flush=True)

    stop = threading.Event()
    # Ctrl-C and SIGTERM both stop it — SIGINT too when started from a non-interactive shell's
    # background job, which starts its children with SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    print("emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
