"""The endpoints: ``(method, path, route name, handler)``; route names are what ``inject`` takes.

Each handler reads the request, takes the state lock for a moment and returns a ``Reply``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.devnet.fake_alpaca import views, wire
from bot.devnet.fake_alpaca.book import Reply

if TYPE_CHECKING:
    from bot.devnet.fake_alpaca.server import FakeAlpaca


async def post_order(fake: FakeAlpaca, request: web.Request) -> Reply:
    try:
        body: object = json.loads(await request.read())
    except ValueError:
        body = None  # refused as "request body format is invalid"
    with fake._lock:
        return fake.book.place(body)


async def get_by_client_id(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return fake.book.by_client_order_id(request.query.get("client_order_id"))


async def list_orders(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return fake.book.list(dict(request.query))


async def get_order(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return fake.book.get(request.match_info["id"])


async def cancel_order(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return fake.book.cancel(request.match_info["id"])


async def cancel_all(fake: FakeAlpaca, request: web.Request) -> Reply:
    """``DELETE /v2/orders``: 207 with one ``{"id", "status": 200, "body"}`` per open order [D8]."""
    with fake._lock:
        book = fake.book
        results: list[dict[str, Any]] = []
        for order in [o for o in book.order_list if o.open]:
            book.cancel(order.id)
            results.append({"id": order.id, "status": 200, "body": order.to_wire()})
        return 207, results


async def get_account(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return 200, views.account(fake.book)


async def get_clock(fake: FakeAlpaca, request: web.Request) -> Reply:
    return 200, fake.clock_view()


async def get_positions(fake: FakeAlpaca, request: web.Request) -> Reply:
    with fake._lock:
        return 200, views.positions(fake.book)


async def get_position(fake: FakeAlpaca, request: web.Request) -> Reply:
    """``GET /v2/positions/{symbol}``: 404 "position does not exist" when flat [T3]."""
    symbol = request.match_info["symbol"].upper()
    with fake._lock:
        pos = fake.book.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return 404, wire.error(40410000, "position does not exist")
        return 200, views.position(fake.book, symbol, pos)


async def get_asset(fake: FakeAlpaca, request: web.Request) -> Reply:
    """Unknown symbol: 404 ``asset not found for X`` (40410000) [I9][T3]."""
    symbol = request.match_info["symbol"].upper()
    with fake._lock:
        info = fake.book.asset(symbol)
    if not info.known:
        return 404, wire.error(40410000, f"asset not found for {symbol}")
    return 200, views.asset(symbol, info)


RouteHandler = Callable[["FakeAlpaca", web.Request], Awaitable[Reply]]
ROUTE_TABLE: list[tuple[str, str, str, RouteHandler]] = [
    ("POST", "/v2/orders", "POST /v2/orders", post_order),
    ("GET", "/v2/orders:by_client_order_id", "GET /v2/orders:by_client_order_id", get_by_client_id),
    ("GET", "/v2/orders", "GET /v2/orders", list_orders),
    ("DELETE", "/v2/orders", "DELETE /v2/orders", cancel_all),
    ("GET", "/v2/orders/{id}", "GET /v2/orders/{id}", get_order),
    ("DELETE", "/v2/orders/{id}", "DELETE /v2/orders/{id}", cancel_order),
    ("GET", "/v2/account", "GET /v2/account", get_account),
    ("GET", "/v2/clock", "GET /v2/clock", get_clock),
    ("GET", "/v2/positions", "GET /v2/positions", get_positions),
    ("GET", "/v2/positions/{symbol}", "GET /v2/positions/{symbol}", get_position),
    ("GET", "/v2/assets/{symbol}", "GET /v2/assets/{symbol}", get_asset),
]
