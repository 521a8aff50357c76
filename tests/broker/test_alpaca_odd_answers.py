"""Answers the fake Alpaca never gives, from a tiny scripted HTTP server on loopback.

Unreadable bodies, unknown statuses, a notional order under our id, a 403 with a code on a read:
the client must map each to the seam's errors, never crash.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from bot.broker.alpaca import AlpacaBroker
from bot.broker.base import OrderRequest
from bot.core.model import Direction
from bot.errors import (
    BrokerAccountRefused,
    BrokerRejected,
    BrokerUnavailable,
    ConfigError,
    OrderMismatch,
    OutcomeUnknown,
)

CID = "bot-odd-1"
REQUEST = OrderRequest(CID, "AAPL", Direction.BUY, Decimal(2), Decimal(100))
REQUEST_TIME = datetime(2021, 3, 16, tzinfo=UTC)


def _order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "client_order_id": CID,
        "submitted_at": "2021-03-16T18:38:01.937734123Z",
        "symbol": "AAPL",
        "qty": "2",
        "filled_qty": "0",
        "filled_avg_price": None,
        "side": "buy",
        "status": "new",
    }
    body.update(changes)
    return body


class Scripted:
    """Answers each route with the (status, body text) set for it."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str]] = {}
        self.received: list[tuple[str, dict[str, str], bytes]] = []  # (route, headers, body)

    async def handle(self, request: web.Request) -> web.Response:
        route = f"{request.method} {request.path}"
        self.received.append((route, dict(request.headers), await request.read()))
        status, text = self.answers.get(route, (404, "{}"))
        headers = {"Location": request.path} if 300 <= status < 400 else None
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, AlpacaBroker]]:
    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    broker = AlpacaBroker(
        base_url=f"http://127.0.0.1:{port}/v2/", key_id="odd-key-id-1234", secret="odd-secret-5678"
    )
    try:
        yield server, broker
    finally:
        await broker.aclose()
        await runner.cleanup()


async def test_an_unreadable_200_to_a_placement_is_an_unknown_outcome(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    server, broker = scripted
    for body in ("<html>ok</html>", json.dumps(_order(status="teleported")), "[]"):
        server.answers["POST /v2/orders"] = (200, body)
        with pytest.raises(OutcomeUnknown, match="unreadable answer"):
            await broker.place(REQUEST)


async def test_an_unknown_status_on_a_read_is_unavailable(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    server, broker = scripted
    server.answers["GET /v2/orders:by_client_order_id"] = (
        200,
        json.dumps(_order(status="teleported")),
    )
    with pytest.raises(BrokerUnavailable, match="unknown order status 'teleported'"):
        await broker.lookup(CID)
    server.answers["GET /v2/clock"] = (200, '{"timestamp": "now", "is_open": true}')
    with pytest.raises(BrokerUnavailable, match="unreadable"):
        await broker.clock()


async def test_a_notional_order_under_our_id_is_a_mismatch(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    server, broker = scripted
    server.answers["POST /v2/orders"] = (200, json.dumps(_order(qty=None, notional="200")))
    with pytest.raises(OrderMismatch, match="notional"):
        await broker.place(REQUEST)
    server.answers["GET /v2/orders"] = (
        200,
        json.dumps([_order(qty=None, notional="5", id="x"), _order()]),
    )
    orders = await broker.orders_since(REQUEST_TIME)
    assert [o.client_order_id for o in orders] == [CID]  # the notional one is left out


async def test_the_duplicate_is_matched_by_message_whatever_its_code(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    server, broker = scripted
    duplicate = {"code": 42210000, "message": "client_order_id must be unique"}
    server.answers["POST /v2/orders"] = (422, json.dumps(duplicate))
    server.answers["GET /v2/orders:by_client_order_id"] = (200, json.dumps(_order()))
    assert (await broker.place(REQUEST)).client_order_id == CID
    server.answers["POST /v2/orders"] = (
        422,
        '{"code": 40010001, "message": "qty must be integer"}',
    )
    with pytest.raises(BrokerRejected, match="qty must be integer"):
        await broker.place(REQUEST)
    server.answers["POST /v2/orders"] = (307, "")  # never followed: it would send it again
    with pytest.raises(OutcomeUnknown, match="307"):
        await broker.place(REQUEST)
    assert [r[0] for r in server.received].count("POST /v2/orders") == 3
    server.answers["POST /v2/orders"] = (409, "conflict")
    with pytest.raises(BrokerRejected, match="409"):
        await broker.place(REQUEST)


async def test_a_403_with_a_code_on_a_read_is_an_account_refusal(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    server, broker = scripted
    server.answers["GET /v2/account"] = (403, '{"code": 40310000, "message": "account closed"}')
    with pytest.raises(BrokerAccountRefused, match="account closed"):
        await broker.account()


async def test_a_placement_with_no_positive_qty_is_refused_before_sending(
    scripted: tuple[Scripted, AlpacaBroker],
) -> None:
    _, broker = scripted
    for qty in (Decimal(0), Decimal(-1), Decimal("NaN")):
        with pytest.raises(BrokerRejected, match="positive"):
            await broker.place(OrderRequest(CID, "AAPL", Direction.BUY, qty, Decimal(1)))


@pytest.mark.parametrize(
    ("qty", "on_the_wire"), [("1E+1", "10"), ("1.50", "1.5"), ("0.123456789", "0.123456789")]
)
async def test_the_order_goes_out_as_a_market_day_order_in_plain_notation(
    scripted: tuple[Scripted, AlpacaBroker], qty: str, on_the_wire: str
) -> None:
    server, broker = scripted
    server.answers["POST /v2/orders"] = (200, json.dumps(_order(qty=on_the_wire)))
    request = OrderRequest(CID, "AAPL", Direction.BUY, Decimal(qty), Decimal(100))
    assert (await broker.place(request)).qty == Decimal(qty)
    route, headers, body = server.received[-1]
    assert route == "POST /v2/orders"
    assert json.loads(body) == {
        "symbol": "AAPL",
        "qty": on_the_wire,
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": CID,
    }
    assert headers["APCA-API-KEY-ID"] == "odd-key-id-1234"
    assert headers["APCA-API-SECRET-KEY"] == "odd-secret-5678"


def test_a_base_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"broker\.alpaca\.base_url"):
        AlpacaBroker(
            base_url="paper-api.alpaca.markets", key_id="odd-key-id-1234", secret="odd-secret-5678"
        )
    broker = AlpacaBroker(
        base_url="https://paper-api.alpaca.markets/",
        key_id="odd-key-id-1234",
        secret="odd-secret-5678",
    )
    assert broker.host == "paper-api.alpaca.markets"
