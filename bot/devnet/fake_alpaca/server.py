"""The fake Alpaca Trading API v2 as a real HTTP server (aiohttp), with control and inspection.

Per request, in this order: a queued/random *before* fault (``faults``) → the rate limit → the
auth headers → the endpoint (``book``), for ``slow_after`` only after its delay → an *after*
fault. Every answer carries ``X-Ratelimit-Limit``/``-Remaining``/``-Reset`` (epoch seconds) and
never ``Retry-After`` [P1][I14]; past ``rate_limit_per_min`` requests in a rolling minute the
answer is 429 ``{"code":42910000,"message":"rate limit exceeded"}``. Keys: a missing
``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` header is the gateway's 403 ``{"message":
"forbidden."}`` + newline, a wrong value 401 40110000 [I3][I4].

All state sits behind one ``threading.Lock``, so the control and inspection methods may be
called from any thread while the server runs in its own loop (``serve_in_thread``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.devnet.fake_alpaca import views, wire
from bot.devnet.fake_alpaca.book import AccountFlags, Asset, Book
from bot.devnet.fake_alpaca.faults import BEFORE, Fault, FaultPlan
from bot.devnet.fake_alpaca.orders import PLANS
from bot.devnet.fake_alpaca.ratelimit import RateWindow
from bot.devnet.fake_alpaca.routes import ROUTE_TABLE

_NOT_ANSWERED = 0  # status logged in ``requests`` for a dropped connection


class FakeAlpaca:
    """One fake paper account behind a loopback HTTP server.

    Defaults: the market is open; any symbol is a known, tradable, fractionable, shortable
    ``us_equity`` priced 100; orders fill over ``fill_steps`` steps ``step_s`` apart; ids are
    seeded by ``seed``. ``requests`` logs ``(method, path, status)`` of every request, status 0
    for one answered by closing the connection.
    """

    def __init__(
        self,
        *,
        key_id: str = "fake-key-id",
        secret: str = "fake-secret",
        account_id: str = "fake-account-0001",
        fill_steps: int = 1,
        step_s: float = 0.05,
        buying_power: Decimal = Decimal("1000000"),
        rate_limit_per_min: int = 200,
        lookup_lag_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self._key_id, self._secret = key_id, secret
        self._step_s = step_s
        self._lock = threading.Lock()
        self.book = Book(
            now=time.time_ns,
            account_id=account_id,
            fill_steps=fill_steps,
            lookup_lag_ns=int(lookup_lag_s * wire.NS_PER_S),
            seed=seed,
            flags=AccountFlags(buying_power_base=buying_power),
        )
        self._faults = FaultPlan(seed)
        self._rate = RateWindow(rate_limit_per_min)
        self._clock_now: datetime | None = None
        self._next_open: datetime | None = None
        self._next_close: datetime | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._dropped: set[int] = set()  # id() of requests answered by closing the connection
        self._base_url = ""
        self.requests: list[tuple[str, str, int]] = []

    # ----- lifecycle -----
    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("FakeAlpaca is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware])
        for method, path, _route, _handler in ROUTE_TABLE:
            app.router.add_route(method, path, self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self._base_url = f"http://{host}:{bound_port}"
        self._ticker = asyncio.create_task(self._tick_forever())
        return self._base_url

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @contextmanager
    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Run the server in a daemon thread with its own event loop; yields the base url."""
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[str] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                started.set_result(loop.run_until_complete(self.start(host, port)))
            except BaseException as exc:
                started.set_exception(exc)
            else:
                loop.run_forever()
                loop.run_until_complete(self.stop())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="fake-alpaca", daemon=True)
        thread.start()
        try:
            yield started.result(timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._step_s)
            with self._lock:
                self.book.tick()

    # ----- the request pipeline -----
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await self._pipeline(request, handler)
        with self._lock:
            dropped = id(request) in self._dropped
            self._dropped.discard(id(request))
            status = _NOT_ANSWERED if dropped else response.status
            self.requests.append((request.method, request.path, status))
        return response

    async def _pipeline(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = _route_key(request)
        if route is None:  # no such endpoint (404) or method (405)
            refusal = request.match_info.http_exception
            status = refusal.status if refusal is not None else 404
            message = "endpoint not found" if status == 404 else "method not allowed"
            return self._finish(status, wire.error(status * 100000 + 10000, message))
        if route == "POST /v2/orders":
            await self._count_attempt(request)
        with self._lock:
            fault = self._faults.take(route)
        if fault is not None and fault.kind in BEFORE:
            return self._answer_fault(request, fault)
        with self._lock:
            admitted = self._rate.admit(time.time())
        if not admitted:
            return self._finish(429, dict(wire.RATE_LIMITED))
        key, secret = (request.headers.get(h) for h in ("APCA-API-KEY-ID", "APCA-API-SECRET-KEY"))
        if key is None or secret is None:
            return self._finish(403, wire.FORBIDDEN_BODY)
        if key != self._key_id or secret != self._secret:
            return self._finish(401, dict(wire.UNAUTHORIZED))
        if fault is not None and fault.kind == "slow_after":
            task = asyncio.ensure_future(self._late(request, handler, fault.delay_s))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return await asyncio.shield(task)  # the order lands even if the client gave up
        response = await handler(request)
        if fault is not None and fault.kind == "500_after":
            return self._finish(500, dict(wire.INTERNAL_ERROR))
        if fault is not None and fault.kind == "drop_after":
            return self._drop(request)
        return response

    async def _late(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        delay_s: float,
    ) -> web.StreamResponse:
        await asyncio.sleep(delay_s)
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = _route_key(request)
        handler = next(h for _m, _p, r, h in ROUTE_TABLE if r == route)
        status, body = await handler(self, request)
        return self._finish(status, body)

    async def _count_attempt(self, request: web.Request) -> None:
        """``post_attempts`` counts every POST that reached the server with a readable id."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return
        cid = body.get("client_order_id") if isinstance(body, dict) else None
        if isinstance(cid, str):
            with self._lock:
                self.book.attempts[cid] = self.book.attempts.get(cid, 0) + 1

    def _finish(self, status: int, body: Any, *, reset_in_1s: bool = False) -> web.Response:
        with self._lock:
            headers = self._rate.headers(time.time(), reset_in_1s=reset_in_1s)
        if body is None:
            return web.Response(status=status, headers=headers)
        if isinstance(body, str):
            kind = "text/html" if body.startswith("<html>") else "application/json"
            return web.Response(status=status, text=body, content_type=kind, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    def _answer_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "drop_before":
            return self._drop(request)
        if fault.kind == "429":
            return self._finish(429, dict(wire.RATE_LIMITED), reset_in_1s=True)
        if fault.kind == "403_html":
            return self._finish(403, wire.HTML_403)
        if fault.kind == "502_html":
            return self._finish(502, wire.HTML_502)
        return self._finish(500, dict(wire.INTERNAL_ERROR))

    def _drop(self, request: web.Request) -> web.Response:
        """Close the connection without an answer (aiohttp then writes nothing)."""
        self._dropped.add(id(request))
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    # ----- control (thread-safe) -----
    def set_clock(
        self,
        *,
        is_open: bool,
        now: datetime | None = None,
        next_open: datetime | None = None,
        next_close: datetime | None = None,
    ) -> None:
        """Set what ``GET /v2/clock`` says. Opening routes queued orders (like
        :meth:`open_market`); closing here does *not* expire orders (use :meth:`close_market`).
        ``now`` only changes the clock's ``timestamp``: order times stay wall-clock times."""
        with self._lock:
            if is_open:
                self.book.open_market()
            self.book.is_open = is_open
            self._clock_now, self._next_open, self._next_close = now, next_open, next_close

    def step(self) -> None:
        """One fill step now, besides the background one every ``step_s`` (a test that checks
        intermediate states passes a long ``step_s`` and steps by hand)."""
        with self._lock:
            self.book.tick()

    def open_market(self) -> None:
        with self._lock:
            self.book.open_market()

    def close_market(self) -> None:
        with self._lock:
            self.book.close_market()

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The price of the next fill steps (and of positions' market value)."""
        with self._lock:
            self.book.prices[symbol.upper()] = price

    def set_asset(
        self,
        symbol: str,
        *,
        tradable: bool = True,
        fractionable: bool = True,
        shortable: bool = True,
        known: bool = True,
    ) -> None:
        with self._lock:
            self.book.assets[symbol.upper()] = Asset(tradable, fractionable, shortable, known)

    def set_position(self, symbol: str, qty: Decimal) -> None:
        """The account holds exactly ``qty`` (signed) from now on, entered at the current price;
        later fills move it."""
        with self._lock:
            self.book.set_position(symbol.upper(), qty)

    def add_foreign_order(
        self, client_order_id: str, symbol: str, side: str, qty: Decimal, status: str = "filled"
    ) -> None:
        """Order history the bot did not create, submitted now; a ``filled`` one moves the
        position. Its id is taken (a POST with it is a duplicate)."""
        with self._lock:
            self.book.add_foreign(client_order_id, symbol.upper(), side, qty, status)

    def set_account(
        self,
        *,
        trading_blocked: bool = False,
        account_blocked: bool = False,
        shorting_enabled: bool = True,
        buying_power: Decimal | None = None,
    ) -> None:
        """Account flags; ``buying_power`` sets the base (see :mod:`book` for the arithmetic)."""
        with self._lock:
            flags = self.book.flags
            flags.trading_blocked, flags.account_blocked = trading_blocked, account_blocked
            flags.shorting_enabled = shorting_enabled
            if buying_power is not None:
                flags.buying_power_base = buying_power

    def script(self, symbol: str, plan: str) -> None:
        """The plan (see :mod:`orders`) of the next orders for ``symbol``, until changed."""
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r}; one of {sorted(PLANS)}")
        with self._lock:
            self.book.plans[symbol.upper()] = plan

    def inject(self, route: str, fault: str, count: int = 1, *, delay_s: float = 2.0) -> None:
        """Answer the next ``count`` requests of ``route`` with ``fault`` (see :mod:`faults`)."""
        with self._lock:
            self._faults.inject(route, fault, count, delay_s)

    def random_faults(self, route: str, probabilities: dict[str, float]) -> None:
        """Every request of ``route`` rolls once (dice seeded by ``seed``) for these faults."""
        with self._lock:
            self._faults.set_random(route, probabilities)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----- inspection (thread-safe) -----
    def orders(self) -> list[dict[str, Any]]:
        """The wire JSON of every order (foreign ones included), in creation order."""
        with self._lock:
            return [o.to_wire() for o in self.book.order_list]

    def order_by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        """The order's wire JSON, ignoring ``lookup_lag_s`` (that lag is the API's, not ours)."""
        with self._lock:
            order = self.book.by_cid.get(client_order_id)
            return None if order is None else order.to_wire()

    def post_attempts(self, client_order_id: str) -> int:
        """POSTs that reached the server with this id in a JSON body: refused ones and ones
        answered by an injected fault included."""
        with self._lock:
            return self.book.attempts.get(client_order_id, 0)

    def signed_filled(self, symbol: str) -> Decimal:
        """Σ ``filled_qty`` over the symbol's orders (foreign ones included), buys +, sells -."""
        with self._lock:
            symbol = symbol.upper()
            orders = self.book.order_list
            return sum((o.signed_filled for o in orders if o.symbol == symbol), Decimal(0))

    def clock_view(self) -> dict[str, Any]:
        """What ``GET /v2/clock`` answers now."""
        with self._lock:
            now_ns = wire.datetime_ns(self._clock_now) if self._clock_now else time.time_ns()
            return views.clock(now_ns, self.book.is_open, self._next_open, self._next_close)


def _route_key(request: web.Request) -> str | None:
    """``"METHOD /path/{param}"`` of the matched route (the names ``inject`` takes)."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    return f"{request.method} {info.route.resource.canonical if info.route.resource else ''}"
