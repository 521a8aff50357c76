"""JSON views of the account, positions, assets and clock (ALPACA.md §6 [D10]); money as strings."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.devnet.fake_alpaca import wire
from bot.devnet.fake_alpaca.book import Asset, Book, Position

_ACCOUNT_CREATED_NS = 1_700_000_000_123_456_789


def account(book: Book) -> dict[str, Any]:
    """``GET /v2/account``. ``equity = cash + Σ signed qty * price``; multiplier 1 (cash account
    arithmetic: buying power is cash less what open buys hold)."""
    long_value = short_value = Decimal(0)
    for symbol, pos in book.positions.items():
        value = pos.qty * book.price(symbol)
        if value > 0:
            long_value += value
        else:
            short_value += value
    cash, buying_power = book.cash(), book.buying_power()
    equity = cash + long_value + short_value
    flags = book.flags
    return {
        "id": book.account_id,
        "account_number": "PA" + str(uuid.uuid5(uuid.NAMESPACE_URL, book.account_id).int)[:10],
        "status": "ACTIVE",
        "currency": "USD",
        "buying_power": wire.plain(buying_power),
        "regt_buying_power": wire.plain(buying_power),
        "non_marginable_buying_power": wire.plain(buying_power),
        "cash": wire.plain(cash),
        "equity": wire.plain(equity),
        "portfolio_value": wire.plain(equity),
        "long_market_value": wire.plain(long_value),
        "short_market_value": wire.plain(short_value),
        "trading_blocked": flags.trading_blocked,
        "transfers_blocked": False,
        "account_blocked": flags.account_blocked,
        "trade_suspended_by_user": False,
        "shorting_enabled": flags.shorting_enabled,
        "multiplier": "1",
        "created_at": wire.utc_ns(_ACCOUNT_CREATED_NS),
    }


def positions(book: Book) -> list[dict[str, Any]]:
    """``GET /v2/positions``: every symbol not flat, sorted by symbol."""
    return [position(book, s, p) for s, p in sorted(book.positions.items()) if p.qty != 0]


def position(book: Book, symbol: str, pos: Position) -> dict[str, Any]:
    price = book.price(symbol)
    closing_side = "sell" if pos.qty > 0 else "buy"
    held = sum((o.remaining for o in book.held_for(symbol, closing_side)), Decimal(0))
    size = abs(pos.qty)
    cost_basis = pos.qty * pos.avg_entry
    market_value = pos.qty * price
    return {
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-alpaca/{symbol}")),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "qty": wire.plain(size),
        "qty_available": wire.plain(max(Decimal(0), size - held)),
        "side": "long" if pos.qty > 0 else "short",
        "avg_entry_price": wire.plain(pos.avg_entry),
        "market_value": wire.plain(market_value),
        "cost_basis": wire.plain(cost_basis),
        "unrealized_pl": wire.plain(market_value - cost_basis),
        "current_price": wire.plain(price),
    }


def asset(symbol: str, info: Asset) -> dict[str, Any]:
    """``GET /v2/assets/{symbol}`` for a known symbol."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-alpaca/{symbol}")),
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": f"{symbol} Fake Holdings Inc. Common Stock",
        "status": "active",
        "tradable": info.tradable,
        "marginable": True,
        "shortable": info.shortable,
        "easy_to_borrow": info.shortable,
        "fractionable": info.fractionable,
        "attributes": [],
    }


def next_session_edge(now: datetime, hour: int, minute: int) -> datetime:
    """The next weekday ``hour:minute`` US/Eastern strictly after ``now`` (no holidays)."""
    local = now.astimezone(wire.EASTERN)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    while candidate <= local or candidate.weekday() >= 5:
        candidate = (candidate + timedelta(days=1)).replace(hour=hour, minute=minute)
    return candidate


def clock(
    now_ns: int, is_open: bool, next_open: datetime | None, next_close: datetime | None
) -> dict[str, Any]:
    """``GET /v2/clock`` in US/Eastern with offset [D9]; unset edges are the next weekday
    09:30 / 16:00 after ``now``."""
    now = datetime.fromtimestamp(now_ns / wire.NS_PER_S, wire.EASTERN)
    return {
        "timestamp": wire.eastern_ns(now_ns),
        "is_open": is_open,
        "next_open": wire.eastern_seconds(next_open or next_session_edge(now, 9, 30)),
        "next_close": wire.eastern_seconds(next_close or next_session_edge(now, 16, 0)),
    }
