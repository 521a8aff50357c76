"""Oracles for reorg tests that run the bot: the canonical chain's own view of our fills
(token balances, independent of the event decoder) and the bot's database, read-only."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.core.amounts import from_base_units
from bot.devnet.deploy import balance_of
from bot.devnet.plan import ticker_of
from tests.support.chain import Chain


def balances(chain: Chain) -> dict[str, int]:
    """Our owner's equity balances now (the baseline before the fills)."""
    d = chain.deployment
    return {
        symbol: balance_of(chain.rpc, token.address, d.order_owner)
        for symbol, token in d.tokens.items()
        if ticker_of(symbol) is not None
    }


def chain_net(chain: Chain, baseline: dict[str, int]) -> dict[str, Decimal]:
    """Our per-ticker net from balanceOf on the canonical chain (no event decoding)."""
    net: dict[str, Decimal] = {}
    for symbol, now in balances(chain).items():
        ticker = ticker_of(symbol)
        assert ticker is not None
        then = baseline[symbol]
        change = from_base_units(abs(now - then), chain.deployment.tokens[symbol].decimals)
        if change:
            net[ticker] = change if now > then else -change
    return net


def positions(report: dict[str, Any]) -> dict[str, Decimal]:
    return {
        p["ticker"]: Decimal(p["onchain_net_shares"])
        for p in report["positions"]
        if Decimal(p["onchain_net_shares"]) != 0
    }


def rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return list(conn.execute(sql, params))


def head(chain: Chain) -> int:
    return int(chain.rpc.call("eth_blockNumber", []), 16)


def our_fill_trades_in(database: Path, first_block: int) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT id, tx_hash, log_index, side, inclusion FROM trades WHERE kind = 'fill'"
        " AND block_number >= ? ORDER BY id",
        first_block,
    )


def compensations(database: Path) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT reverses_trade_id, direction, shares FROM trades WHERE kind = 'compensation'"
        " ORDER BY id",
    )
