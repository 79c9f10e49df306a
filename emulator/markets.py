"""Instrument definitions for the exchange emulator.

One :class:`Market` describes a base coin traded against USDT. The same row
serves the Bybit linear perpetual (``BTCUSDT``, category ``linear``), the Bybit
spot pair (``BTCUSDT``, category ``spot``), the Binance USD-M perpetual
(``BTCUSDT``), Bitget's USDT-M perpetual and spot pair (``BTCUSDT``) and OKX's
swap (``BTC-USDT-SWAP``) and spot pair (``BTC-USDT``). OKX counts its swaps in
contracts of ``okx_ct_val`` base coins, ``okx_lot_sz`` contracts a step.

The filter values are realistic approximations of the live venues (Nov 2025);
they are what ccxt turns into ``precision`` and ``limits``, so a test that
sends an amount the live venue would refuse also fails here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["Market", "dec", "default_markets", "fmt", "step_decimals"]


def dec(value: object) -> Decimal:
    """Convert an int/float/str to Decimal without float noise."""
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def fmt(value: Decimal | None) -> str:
    """Render a Decimal the way exchanges do: plain notation, no exponent."""
    if value is None:
        return ""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def step_decimals(step: Decimal) -> int:
    """Number of decimals of a tick/step size (0.001 -> 3, 1 -> 0, 10 -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass
class Market:
    """A base coin quoted in USDT, with its linear and spot filters."""

    base: str
    price: Decimal
    # Linear perpetual (Bybit linear, Binance USD-M).
    tick: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    max_leverage: int = 100
    min_notional: Decimal = Decimal(5)
    # Binance USD-M has higher minimum notionals on the majors.
    binance_min_notional: Decimal = Decimal(5)
    # Spot pair (Bybit spot).
    spot: bool = True
    spot_tick: Decimal | None = None
    spot_base_precision: Decimal | None = None
    spot_min_qty: Decimal | None = None
    spot_max_qty: Decimal = Decimal(1000000)
    spot_min_amt: Decimal = Decimal(1)
    spot_max_amt: Decimal = Decimal(2000000)
    quote: str = "USDT"
    launch_time_ms: int = 1585526400000
    # OKX swap: base coin per contract (ctVal), and lot / minimum in contracts.
    okx_ct_val: Decimal | None = None
    okx_lot_sz: Decimal = Decimal("0.01")
    okx_min_sz: Decimal | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.okx_ct_val is None:
            # BTC 0.01, ETH 0.1, SOL 1 as on the venue; ten steps of the shared row otherwise.
            self.okx_ct_val = self.qty_step * 10
        if self.okx_min_sz is None:
            self.okx_min_sz = self.okx_lot_sz
        if self.spot_tick is None:
            self.spot_tick = self.tick
        if self.spot_base_precision is None:
            # Spot usually allows one more decimal than the perpetual.
            self.spot_base_precision = self.qty_step / 10 if self.qty_step < 1 else Decimal("0.01")
        if self.spot_min_qty is None:
            self.spot_min_qty = self.spot_base_precision

    @property
    def symbol(self) -> str:
        """Venue id on Bybit (spot and linear), Binance USD-M and Bitget (v2)."""
        return f"{self.base}{self.quote}"

    @property
    def okx_spot_id(self) -> str:
        return f"{self.base}-{self.quote}"

    @property
    def okx_swap_id(self) -> str:
        return f"{self.base}-{self.quote}-SWAP"


def _m(base: str, price: str, tick: str, step: str, max_qty: str, **kw) -> Market:
    return Market(
        base=base,
        price=dec(price),
        tick=dec(tick),
        qty_step=dec(step),
        min_qty=dec(kw.pop("min_qty", step)),
        max_qty=dec(max_qty),
        **kw,
    )


def default_markets() -> list[Market]:
    """The default instrument set: 30 USDT pairs, each with perp and spot."""
    return [
        _m(
            "BTC",
            "65000",
            "0.10",
            "0.001",
            "1190",
            binance_min_notional=dec(100),
            spot_tick=dec("0.01"),
            spot_base_precision=dec("0.000001"),
            spot_min_qty=dec("0.000048"),
        ),
        _m(
            "ETH",
            "3400",
            "0.01",
            "0.01",
            "7240",
            binance_min_notional=dec(20),
            spot_base_precision=dec("0.00001"),
            spot_min_qty=dec("0.00062"),
        ),
        _m("SOL", "150", "0.010", "0.1", "79770", max_leverage=75),
        _m("XRP", "0.55", "0.0001", "1", "4802000", max_leverage=75, okx_ct_val=dec(100)),
        _m("DOGE", "0.15", "0.00001", "1", "26604000", max_leverage=75, okx_ct_val=dec(1000)),
        _m("ADA", "0.45", "0.0001", "1", "4355000", max_leverage=75, okx_ct_val=dec(100)),
        _m("AVAX", "35", "0.001", "0.1", "64180", max_leverage=50),
        _m("LINK", "15", "0.001", "0.1", "170820", max_leverage=75),
        _m("DOT", "7", "0.001", "0.1", "149500", max_leverage=50),
        _m("LTC", "80", "0.01", "0.1", "30000", max_leverage=75),
        _m("BCH", "450", "0.05", "0.01", "2690", max_leverage=75),
        _m("TRX", "0.12", "0.00001", "1", "6300000", max_leverage=75),
        _m("NEAR", "6", "0.001", "0.1", "168000", max_leverage=50),
        _m("ATOM", "8", "0.001", "0.1", "97000", max_leverage=50),
        _m("UNI", "9", "0.001", "0.1", "85000", max_leverage=50),
        _m("APT", "9", "0.0001", "0.01", "41000", max_leverage=50),
        _m("ARB", "1.0", "0.0001", "0.1", "2090000", max_leverage=50),
        _m("OP", "2.2", "0.0001", "0.1", "500000", max_leverage=50),
        _m("FIL", "5", "0.001", "0.1", "500000", max_leverage=50),
        _m("ETC", "25", "0.001", "0.1", "54000", max_leverage=50),
        _m("SUI", "1.5", "0.0001", "10", "3000000", min_qty="10", max_leverage=50),
        _m("INJ", "25", "0.001", "0.1", "20000", max_leverage=50),
        _m("TON", "6", "0.0001", "0.1", "200000", max_leverage=50),
        _m("WIF", "2.5", "0.0001", "1", "2000000", max_leverage=50),
        _m("AAVE", "90", "0.01", "0.01", "5000", max_leverage=50),
        _m("XLM", "0.1", "0.00001", "1", "6000000", max_leverage=50),
        _m("BNB", "580", "0.01", "0.01", "2000", max_leverage=75),
        _m("SEI", "0.4", "0.0001", "1", "3000000", max_leverage=50),
        _m("TIA", "8", "0.001", "0.1", "100000", max_leverage=50),
        _m("RUNE", "5", "0.001", "0.1", "300000", max_leverage=50),
    ]
