"""Watching the broker account (SPEC §4, §5): keys, identity, market clock, positions, assets.

:meth:`BrokerWatch.start` runs once before anything new is placed: it checks the keys (refused
keys at start are a config error: exit 3 naming the keys), records or checks which broker and
account the database hedges with, and on a **new** database pauses every ticker the account
already holds, or has ``bot-…`` orders of another database for, until ``bot baseline``.
:meth:`BrokerWatch.tick` runs from the live loop: it refreshes the clock and the account, fetches
asset terms for new tickers, reconciles positions every ``reconcile_every_s``, acts on the
operator's ``baseline``/``accept-drift`` marks, and stores what it learned for ``status``.
Broker trouble never ends ``run``: it becomes a blocking reason and is retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from loguru import logger

from bot.broker.base import Broker, BrokerPosition
from bot.core import amounts
from bot.core.blocking import ALL, Reason
from bot.core.lots import Execution
from bot.engine.desk import utc_now
from bot.engine.drain import Engine
from bot.errors import BrokerAuthError, BrokerError, BrokerUnavailable, ConfigError
from bot.store import broker_state
from bot.store.broker_state import BrokerIdentity, TickerBroker

HISTORY_SINCE = datetime(2015, 1, 1, tzinfo=UTC)
RUNTIME_REFRESH_S = 60.0  # Alpaca's order history starts after this


@dataclass(frozen=True, slots=True)
class WatchOptions:
    market_hours: bool = True
    reconcile_every_s: float = 300.0
    clock_every_s: float = 30.0
    account_every_s: float = 60.0


class BrokerWatch:
    def __init__(self, engine: Engine, broker: Broker, options: WatchOptions) -> None:
        self._engine = engine
        self._broker = broker
        self._options = options
        self.tickers: dict[str, TickerBroker] = {}
        self.market_open: bool | None = None
        self.next_open: datetime | None = None
        self.market_as_of: datetime | None = None
        self._due: dict[str, float] = {}
        self._asset_checked: set[str] = set()
        self.verified = False  # keys, identity and inherited positions checked once
        self._stored: dict[str, object] | None = None
        self._stored_at = 0.0

    # ------------------------------------------------------------------------------- start

    async def start(self) -> None:
        """Keys, identity, a new database's inherited positions, the clock (SPEC §5).

        A broker that does not answer is not fatal: every order waits (``broker account not
        verified yet``) and :meth:`tick` tries again until it has done all of this once."""
        self.tickers = await broker_state.load_tickers(self._engine.connection)
        self._engine.blocks.set(ALL, Reason.BROKER_UNVERIFIED, "checking the account", utc_now())
        await self._first_contact()

    async def _first_contact(self) -> None:
        try:
            account = await self._broker.account()
            identity = BrokerIdentity(self._broker.kind, self._broker.host, account.account_id)
            new = await broker_state.check_or_record_identity(self._engine.connection, identity)
            self._note_account(account.may_trade, account.status)
            if new and self._broker.keeps_positions:
                await self._find_inherited()
            await self._refresh_clock()
        except BrokerAuthError as exc:
            raise ConfigError(
                f"the broker refused the API keys ({exc}): check broker.alpaca.api_key_id and "
                "broker.alpaca.api_secret (or BOT__BROKER__ALPACA__API_KEY_ID / _API_SECRET) "
                "and broker.alpaca.base_url (paper keys only work on the paper host)"
            ) from None
        except BrokerError as exc:
            logger.warning("broker unreachable ({}): orders wait until it answers", exc)
            self._engine.blocks.set(ALL, Reason.BROKER_UNVERIFIED, str(exc), utc_now())
            return
        self.verified = True
        self._engine.blocks.clear(ALL, Reason.BROKER_UNVERIFIED)
        await self._store()

    async def _find_inherited(self) -> None:
        """A new database must not hedge history a deleted one already hedged (SPEC §5)."""
        positions = await self._broker.positions()
        reasons: dict[str, str] = {}
        for position in positions:
            if position.qty != 0:
                reasons[position.symbol] = (
                    f"the account already holds {amounts.to_text(position.qty)} {position.symbol}"
                )
        instance = self._engine.meta.instance_id
        for order in await self._broker.orders_since(HISTORY_SINCE):
            cid = order.client_order_id
            if cid.startswith("bot-") and not cid.startswith(f"bot-{instance}-"):
                reasons.setdefault(
                    order.symbol, f"the account has order {cid} of another bot database"
                )
        for ticker, why in sorted(reasons.items()):
            logger.error(
                "{}: {}; orders for it wait for `bot baseline {} --as-hedged|--as-outside`",
                ticker,
                why,
                ticker,
            )
            state = self.tickers.setdefault(ticker, TickerBroker(ticker))
            state.awaiting_baseline = why
        if reasons:

            async def save() -> list[Execution]:
                for ticker in reasons:
                    await broker_state.save_ticker_in_txn(
                        self._engine.connection, self.tickers[ticker]
                    )
                return []

            await self._engine.transaction(save)

    # ------------------------------------------------------------------------------- tick

    async def tick(self) -> None:
        """Periodic duties; call once per housekeeping step of the live loop."""
        if not self.verified:
            if self._is_due("first contact", self._options.clock_every_s / 6):
                await self._first_contact()
            if not self.verified:
                await self._store()
                return
        try:
            if self._is_due("clock", self._options.clock_every_s):
                await self._refresh_clock()
            if self._is_due("account", self._options.account_every_s):
                account = await self._broker.account()
                self._note_account(account.may_trade, account.status)
            await self._check_assets()
            if self._broker.keeps_positions and self._is_due(
                "reconcile", self._options.reconcile_every_s
            ):
                await self.reconcile()
        except BrokerAuthError as exc:
            self._block(Reason.KEYS_REFUSED, str(exc))
        except BrokerUnavailable as exc:
            logger.warning("broker: {}", exc)
            self._due.pop("clock", None)  # ask again next tick
        await self._apply_marks()
        self._apply_baseline_blocks()
        await self._store()

    def _is_due(self, what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(what, 0.0):
            return False
        self._due[what] = now + every_s
        return True

    async def _refresh_clock(self) -> None:
        clock = await self._broker.clock()
        self.market_open, self.next_open = clock.is_open, clock.next_open
        self.market_as_of = utc_now()
        blocks = self._engine.blocks
        if clock.is_open or not self._options.market_hours:
            if blocks.clear(ALL, Reason.MARKET_CLOSED):
                logger.info("market open: the net of everything booked goes out")
        elif blocks.set(ALL, Reason.MARKET_CLOSED, f"next open {clock.next_open}", utc_now()):
            logger.info("market closed until {}: fills are booked, no orders", clock.next_open)
        if clock.next_open is not None and not clock.is_open:
            # ask again right at the open rather than up to clock_every_s later
            until_open = (clock.next_open - utc_now()).total_seconds()
            if 0 < until_open < self._options.clock_every_s:
                self._due["clock"] = time.monotonic() + until_open

    def _note_account(self, may_trade: bool, status: str) -> None:
        blocks = self._engine.blocks
        if may_trade:
            if blocks.clear(ALL, Reason.ACCOUNT_BLOCKED):
                logger.info("broker account may trade again")
        elif blocks.set(ALL, Reason.ACCOUNT_BLOCKED, f"account status {status}", utc_now()):
            logger.error("broker account is blocked from trading (status {})", status)

    def _block(self, reason: Reason, detail: str) -> None:
        self._engine.blocks.set(ALL, reason, detail, utc_now())

    async def _check_assets(self) -> None:
        for position in self._engine.accumulator.positions():
            ticker = position.ticker
            if ticker in self._asset_checked:
                continue
            asset = await self._broker.asset(ticker)
            self._asset_checked.add(ticker)
            fractionable = asset is not None and asset.fractionable and asset.tradable
            self._engine.desk.assets.fractionable[ticker] = fractionable

    # ------------------------------------------------------------------------------- reconcile

    async def reconcile(self) -> None:
        """Broker positions against what we hedged: drift, alerted after two checks in a row."""
        held = {p.symbol: p.qty for p in await self._broker.positions()}
        in_flight = {e.ticker for e in self._engine.accumulator.in_flight_executions()}
        changed: list[TickerBroker] = []
        for position in self._engine.accumulator.positions():
            ticker = position.ticker
            state = self.tickers.setdefault(ticker, TickerBroker(ticker))
            state.broker_position_shares = held.get(ticker, amounts.ZERO)
            if ticker in in_flight:  # measured only while nothing is in flight
                continue
            expected = amounts.add(position.hedged, state.baseline_shares)
            drift = amounts.sub(state.broker_position_shares, expected)
            state.drift_shares = drift
            state.drift_checks = state.drift_checks + 1 if drift != 0 else 0
            if state.drift_checks == 2:
                logger.error(
                    "ALERT drift {}: the broker holds {}, we expect {} (drift {}); "
                    "`bot accept-drift {}` folds it into the baseline",
                    ticker,
                    amounts.to_text(state.broker_position_shares),
                    amounts.to_text(expected),
                    amounts.to_text(drift),
                    ticker,
                )
            changed.append(state)
        await self._save(changed)

    async def _save(self, states: list[TickerBroker], *, consumed: bool = False) -> None:
        if not states:
            return

        async def body() -> list[Execution]:
            for state in states:
                await broker_state.save_ticker_in_txn(self._engine.connection, state)
                if consumed:
                    await broker_state.consume_marks_in_txn(self._engine.connection, state.ticker)
            return []

        await self._engine.transaction(body)

    # ------------------------------------------------------------------------------- marks

    async def _apply_marks(self) -> None:
        """Act on `bot baseline` / `bot accept-drift` marks written by the CLI."""
        marks = await broker_state.load_tickers(self._engine.connection)
        for ticker, marked in marks.items():
            state = self.tickers.setdefault(ticker, TickerBroker(ticker))
            if marked.baseline_request:
                await self._baseline(state, marked.baseline_request)
            elif marked.accept_drift_request:
                drift = state.drift_shares or amounts.ZERO
                state.baseline_shares = amounts.add(state.baseline_shares, drift)
                logger.info(
                    "{}: drift {} accepted into the baseline (now {})",
                    ticker,
                    amounts.to_text(drift),
                    amounts.to_text(state.baseline_shares),
                )
                state.drift_shares, state.drift_checks = amounts.ZERO, 0
                await self._save([state], consumed=True)

    async def _baseline(self, state: TickerBroker, request: str) -> None:
        quantity = await self._position_of(state.ticker)
        if request == "as-outside":
            state.baseline_shares = quantity
            note = f"the broker's {amounts.to_text(quantity)} is outside this bot (baseline)"
        else:
            note = f"the broker's {amounts.to_text(quantity)} is this bot's earlier hedge"
            if quantity != 0:

                async def book() -> list[Execution]:
                    self._engine.accumulator.book_baseline(state.ticker, quantity, now=utc_now())
                    return []

                try:
                    await self._engine.transaction(book)
                except ValueError as exc:
                    logger.error("{}: baseline not booked: {}", state.ticker, exc)
                    await self._save([state], consumed=True)
                    return
        logger.info("{}: baseline set ({}); orders resume", state.ticker, note)
        state.awaiting_baseline = None
        await self._save([state], consumed=True)

    async def _position_of(self, ticker: str) -> Decimal:
        positions: list[BrokerPosition] = await self._broker.positions()
        return next((p.qty for p in positions if p.symbol == ticker), amounts.ZERO)

    def _apply_baseline_blocks(self) -> None:
        blocks, now = self._engine.blocks, utc_now()
        for ticker, state in self.tickers.items():
            if state.awaiting_baseline:
                blocks.set(ticker, Reason.AWAITING_BASELINE, state.awaiting_baseline, now)
            else:
                blocks.clear(ticker, Reason.AWAITING_BASELINE)

    # ------------------------------------------------------------------------------- status

    async def _store(self) -> None:
        """What ``status`` shows of the broker; written only when it changed (each write is a
        durable commit, and this runs at every drain pass)."""
        now = utc_now()
        values: dict[str, object] = {
            "market_open": self.market_open,
            "next_open": None if self.next_open is None else self.next_open.isoformat(),
            "market_as_of": None if self.market_as_of is None else self.market_as_of.isoformat(),
            "hedging_blocked": [
                {
                    "ticker": b.ticker,
                    "reason": f"{b.reason}: {b.detail}",
                    "since": b.since.isoformat(),
                }
                for b in self._engine.blocking_reasons(now)
            ],
            "broker_kind": self._broker.kind,
        }
        # market_as_of moves at every clock read: alone it is worth a commit once a minute
        comparable = {k: v for k, v in values.items() if k != "market_as_of"}
        comparable["hedging_blocked"] = [
            (b.ticker, b.reason, b.detail) for b in self._engine.blocking_reasons(now)
        ]
        fresh = time.monotonic() - self._stored_at < RUNTIME_REFRESH_S
        if comparable == self._stored and fresh:
            return
        await broker_state.save_runtime(self._engine.connection, values)
        self._stored, self._stored_at = comparable, time.monotonic()
