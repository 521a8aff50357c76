"""The Alpaca Trading API v2 broker (SPEC §5, ALPACA.md), over a plain aiohttp session.

Why not alpaca-py: it retries *every* request, ``POST /v2/orders`` included, on 429 and 504,
by itself (ALPACA.md §1.5). A placement must be sent exactly once per call, and what an
unanswered one did is resolved by the engine with ``lookup`` by the same ``client_order_id``
(SPEC §5). So this client never retries anything (aiohttp itself resends an idempotent GET or
DELETE once when the server closed a connection without answering, RFC 9112 §9.3.1; never a
POST); it maps every answer to the seam's rules (:mod:`bot.broker.base`):

``place`` (``POST /v2/orders``):
  200 → the order (symbol, side, qty checked against the request, else :class:`OrderMismatch`);
  422 "client_order_id must be unique" (matched on status and message, not the code) → the
  order exists: it is looked up and returned (same check), or, while the lookup still says 404,
  :class:`OutcomeUnknown`; 401, or 403 without a JSON ``code`` → :class:`BrokerAuthError`;
  403 with a ``code`` → :class:`BrokerAccountRefused`; 429 → :class:`BrokerRateLimited`
  (``retry_after_s`` from ``X-Ratelimit-Reset``); any other 4xx → :class:`BrokerRejected`;
  5xx, timeout, dropped connection, an unreadable 200 → :class:`OutcomeUnknown`.

Reads: 404 → ``None`` where the signature allows it; 401/403 as above; 429 →
:class:`BrokerRateLimited`; 5xx, timeout, drop, an unreadable body, an unknown status →
:class:`BrokerUnavailable`. ``cancel``: 204; 404 and 422 (not cancelable: already terminal)
are quiet.

The key id and secret are sent as headers and appear nowhere else: not in ``repr``, logs or
exception messages (a server text that echoes them is redacted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from loguru import logger

from bot.broker.alpaca import _wire
from bot.broker.alpaca._http import Answer, Credentials, NoAnswer, Transport, split_base_url
from bot.broker.base import (
    AccountState,
    AssetInfo,
    BrokerPosition,
    MarketClock,
    OrderRequest,
    OrderState,
)
from bot.errors import (
    BrokerAccountRefused,
    BrokerAuthError,
    BrokerRateLimited,
    BrokerRejected,
    BrokerUnavailable,
    NotionalOrder,
    OrderMismatch,
    OutcomeUnknown,
)

if TYPE_CHECKING:
    from bot.broker.base import Broker

_T = TypeVar("_T")
_DUPLICATE_ID = "client_order_id must be unique"
_PAGE_LIMIT = 500
_AUTH_HINT = (
    "the broker refused the API keys (headers APCA-API-KEY-ID / APCA-API-SECRET-KEY): "
    "check broker.alpaca.api_key_id and broker.alpaca.api_secret"
)


def _retry_after(reset_epoch_s: float | None) -> float | None:
    """Seconds until ``X-Ratelimit-Reset`` (epoch seconds), at least 0.5; None without one."""
    if reset_epoch_s is None:
        return None
    return max(reset_epoch_s - time.time(), 0.5)


class AlpacaBroker:
    """A :class:`~bot.broker.base.Broker` for one Alpaca account (see the module docstring)."""

    kind = "alpaca"
    keeps_positions = True

    def __init__(
        self,
        *,
        base_url: str,
        key_id: str,
        secret: str,
        timeout_s: float = 10.0,
        requests_per_minute: int = 200,
    ) -> None:
        root, self._host = split_base_url(base_url)
        self._credentials = Credentials(key_id, secret)
        self._http = Transport(
            root=root,
            credentials=self._credentials,
            timeout_s=timeout_s,
            requests_per_minute=requests_per_minute,
        )

    @property
    def host(self) -> str:
        return self._host

    def __repr__(self) -> str:
        return f"AlpacaBroker(host={self._host!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- answers -----------------------------------------------------------------------------

    def _describe(self, what: str, answer: Answer) -> tuple[int | None, str]:
        """``(code, text)``: the error body's code, and a one-line summary without the keys."""
        code, message = _wire.error_info(answer.body)
        text = f"{what}: HTTP {answer.status}"
        text += f" ({code}) {message}" if code is not None else f" {message}"
        return code, self._credentials.redact(text.rstrip())

    def _common_refusal(self, what: str, answer: Answer) -> Exception | None:
        """401/403/429: the same meaning for every request."""
        code, text = self._describe(what, answer)
        if answer.status == 401 or (answer.status == 403 and code is None):
            return BrokerAuthError(f"{_AUTH_HINT} ({text})")
        if answer.status == 403:
            return BrokerAccountRefused(text)
        if answer.status == 429:
            return BrokerRateLimited(text, retry_after_s=_retry_after(answer.reset_epoch_s))
        return None

    async def _read(
        self, path: str, params: dict[str, str] | None = None, *, placement: bool = False
    ) -> Any | None:
        """GET a JSON body; ``None`` for a 404. Faults are :class:`BrokerUnavailable`."""
        what = f"GET {path}"
        try:
            answer = await self._http.send("GET", path, params=params, placement=placement)
        except NoAnswer as exc:
            raise BrokerUnavailable(f"{what}: {exc}") from None
        if 200 <= answer.status < 300:
            try:
                return _wire.loads(answer.body)
            except _wire.WireError as exc:
                raise BrokerUnavailable(f"{what}: unreadable answer: {exc}") from None
        if answer.status == 404:
            return None
        refusal = self._common_refusal(what, answer)
        raise refusal or BrokerUnavailable(self._describe(what, answer)[1])

    async def _read_required(self, path: str, params: dict[str, str] | None = None) -> Any:
        value = await self._read(path, params)
        if value is None:
            raise BrokerUnavailable(f"GET {path}: HTTP 404 (check broker.alpaca.base_url)")
        return value

    # -- orders ------------------------------------------------------------------------------

    async def place(self, order: OrderRequest) -> OrderState:
        if not order.qty.is_finite() or order.qty <= 0:
            raise BrokerRejected(f"qty must be a positive number, not {order.qty}")
        what = f"POST /v2/orders {order.client_order_id}"
        body = {
            "symbol": order.symbol,
            "qty": _wire.plain_decimal(order.qty),
            "side": _wire.side_text(order.side),
            "type": "market",
            "time_in_force": "day",
            "client_order_id": order.client_order_id,
        }
        try:
            answer = await self._http.send("POST", "/v2/orders", body=body, placement=True)
        except NoAnswer as exc:
            raise OutcomeUnknown(f"{what}: {exc}") from None
        if 200 <= answer.status < 300:
            try:
                state = _wire.order_state(_wire.loads(answer.body))
            except NotionalOrder as exc:
                raise OrderMismatch(f"{what}: {exc}") from None
            except _wire.WireError as exc:
                raise OutcomeUnknown(f"{what}: unreadable answer: {exc}") from None
            return _checked(order, state)
        _, text = self._describe(what, answer)
        if answer.status == 422 and _DUPLICATE_ID in _wire.error_info(answer.body)[1].lower():
            return await self._existing(order, text)
        refusal = self._common_refusal(what, answer)
        if refusal is not None:
            raise refusal
        if 400 <= answer.status < 500:
            raise BrokerRejected(text)
        raise OutcomeUnknown(text)

    async def _existing(self, order: OrderRequest, text: str) -> OrderState:
        """The 422 duplicate: the order exists; return it, or say it is not visible yet."""
        try:
            state = await self._lookup(order.client_order_id, placement=True)
        except BrokerUnavailable as exc:
            # Not "nothing placed" (the order exists): the caller resolves it by lookup later.
            raise OutcomeUnknown(
                f"{text}; lookup failed: {exc}", retry_after_s=exc.retry_after_s
            ) from None
        if state is None:
            raise OutcomeUnknown(f"{text}; duplicate id not visible yet")
        return _checked(order, state)

    async def lookup(self, client_order_id: str) -> OrderState | None:
        return await self._lookup(client_order_id, placement=False)

    async def _lookup(self, client_order_id: str, *, placement: bool) -> OrderState | None:
        """``placement``: the lookup finishes a placement (a 422 duplicate), so it goes first."""
        path = "/v2/orders:by_client_order_id"
        params = {"client_order_id": client_order_id}
        value = await self._read(path, params, placement=placement)
        return None if value is None else self._order(path, value)

    async def get_order(self, broker_order_id: str) -> OrderState | None:
        path = f"/v2/orders/{quote(broker_order_id, safe='')}"
        value = await self._read(path)
        return None if value is None else self._order(path, value)

    def _order(self, path: str, value: Any) -> OrderState:
        try:
            return _wire.order_state(value)
        except NotionalOrder as exc:
            raise OrderMismatch(f"GET {path}: {exc}") from None
        except _wire.WireError as exc:
            raise BrokerUnavailable(f"GET {path}: unreadable answer: {exc}") from None

    async def orders_since(self, after: datetime) -> list[OrderState]:
        """Pages by the last ``submitted_at`` while a page is full (500); no order twice.

        The next page starts at the last order's time truncated to microseconds, so orders
        sharing that instant are fetched again (and dropped as seen), never skipped. Notional
        orders (no qty; never the bot's) are left out.
        """
        path = "/v2/orders"
        seen: dict[str, OrderState] = {}
        cursor = after
        while True:
            params = {
                "status": "all",
                "after": _wire.rfc3339(cursor),
                "direction": "asc",
                "limit": str(_PAGE_LIMIT),
            }
            try:
                page = _wire.order_list(await self._read_required(path, params))
            except _wire.WireError as exc:
                raise BrokerUnavailable(f"GET {path}: unreadable answer: {exc}") from None
            fresh = 0
            last: datetime | None = None
            for obj in page:
                try:
                    state = _wire.order_state(obj)
                except NotionalOrder:
                    logger.debug("alpaca: leaving out a notional order in {}", path)
                    continue
                except _wire.WireError as exc:
                    raise BrokerUnavailable(f"GET {path}: unreadable answer: {exc}") from None
                last = state.submitted_at or last
                if state.broker_order_id not in seen:
                    seen[state.broker_order_id] = state
                    fresh += 1
            if len(page) < _PAGE_LIMIT or fresh == 0 or last is None:
                return list(seen.values())
            cursor = last

    async def cancel(self, broker_order_id: str) -> None:
        path = f"/v2/orders/{quote(broker_order_id, safe='')}"
        what = f"DELETE {path}"
        try:
            answer = await self._http.send("DELETE", path)
        except NoAnswer as exc:
            raise BrokerUnavailable(f"{what}: {exc}") from None
        if 200 <= answer.status < 300:
            return
        if answer.status in (404, 422):
            # 422: not cancelable (already terminal); 404: unknown. Following the order tells.
            logger.debug("alpaca: {}", self._describe(what, answer)[1])
            return
        refusal = self._common_refusal(what, answer)
        raise refusal or BrokerUnavailable(self._describe(what, answer)[1])

    # -- account -----------------------------------------------------------------------------

    async def clock(self) -> MarketClock:
        return self._parsed("/v2/clock", _wire.market_clock, await self._read_required("/v2/clock"))

    async def account(self) -> AccountState:
        value = await self._read_required("/v2/account")
        return self._parsed("/v2/account", _wire.account_state, value)

    async def positions(self) -> list[BrokerPosition]:
        value = await self._read_required("/v2/positions")
        return self._parsed("/v2/positions", _wire.positions, value)

    async def asset(self, symbol: str) -> AssetInfo | None:
        path = f"/v2/assets/{quote(symbol, safe='')}"
        value = await self._read(path)
        return None if value is None else self._parsed(path, _wire.asset_info, value)

    @staticmethod
    def _parsed(path: str, parse: Callable[[Any], _T], value: Any) -> _T:
        try:
            return parse(value)
        except _wire.WireError as exc:
            raise BrokerUnavailable(f"GET {path}: unreadable answer: {exc}") from None


def _checked(order: OrderRequest, state: OrderState) -> OrderState:
    """The broker's order under our id must be the order we asked for (SPEC §5)."""
    same = (
        state.client_order_id == order.client_order_id
        and state.symbol.upper() == order.symbol.upper()
        and state.side is order.side
        and state.qty == order.qty
    )
    if not same:
        raise OrderMismatch(
            f"the broker's order {state.broker_order_id} under client_order_id "
            f"{order.client_order_id} is {state.side} {state.qty} {state.symbol}, "
            f"but this execution is {order.side} {order.qty} {order.symbol}"
        )
    return state


if TYPE_CHECKING:
    _CONFORMS: type[Broker] = AlpacaBroker
