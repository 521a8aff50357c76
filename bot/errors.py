"""The one exception tree of the bot.

Every error the bot raises on purpose is a :class:`BotError`; its branch tells the caller (and
``run``'s loop) what to do with it::

    BotError
    ├── ConfigError ······················ exit 3: the operator must fix the configuration
    │   └── ProviderMismatchError          a fallback provider serves another chain id
    ├── TransientError ··················· retry with capped backoff (``retry_after_s`` honoured)
    │   ├── ConnectionLost                 a socket closed or could not be opened
    │   │   └── SubscriptionLost           the live feed ended: reconnect, backfill the gap
    │   ├── MalformedAnswer                a provider's answer is not the documented shape
    │   ├── StaleStreamError               a subscription quiet while the chain moved on
    │   ├── ProvidersBehind                no provider has the block a window needs yet
    │   ├── QueueRaceError                 a queue row changed under a drain's transaction
    │   ├── UnusableAnswer                 a null or malformed answer for a block: retried
    │   ├── BlockNotServed                 a provider does not serve a block it announced yet
    │   ├── BlockReplaced                  a hash's block is no longer canonical (a reorg)
    │   ├── ChainMoved                     one window's reads disagree: read it again
    │   ├── ChainReorged                   a block does not link to the stored one: rewind
    │   ├── MissingLogError                a queued log missing from its canonical block: loud
    │   ├── RpcUnavailableError (RpcError) HTTP 429 / 5xx: the provider is overloaded or down
    │   └── BrokerUnavailable (BrokerError)
    │       ├── BrokerRateLimited
    │       └── OutcomeUnknown
    ├── RpcError ························· a provider's error answer; the endpoint retries it by
    │                                      its message (``bot.chain.endpoint.is_transient``); in
    │                                      ``run`` it is provider trouble: retried, never fatal
    ├── FatalError ······················· stop and alert (exit 1): continuing could lose money
    │   ├── DatabaseMismatchError          the database serves another chain, or is newer
    │   ├── DatabaseMissingError           (also FileNotFoundError) no database to read
    │   ├── InstanceLockedError            another bot holds the database
    │   ├── ReorgTooDeepError              no tracked block matches the chain any more
    │   ├── OversizedBlockError            one block's logs overflow every provider
    │   └── OrderMismatch (BrokerError)
    ├── EventProcessingError ············· this one queue event is marked failed, never dropped
    │   ├── NotATokenError                 an address without ERC-20 symbol()/decimals()
    │   ├── UndecodableLog                 unknown topic0 or invalid ABI data
    │   ├── AbiLayoutError                 inside the slicing decoder: becomes UndecodableLog
    │   └── MissingTokenInfoError          (also KeyError) token metadata not fetched yet
    ├── BrokerError ······················ what a broker answered that is not an order status
    │   ├── BrokerRejected                 refused this order: nothing was placed
    │   ├── BrokerAccountRefused           refused for the whole account
    │   ├── BrokerAuthError                keys refused (at start: exit 3)
    │   ├── BrokerUnavailable              (see TransientError)
    │   ├── OrderMismatch                  (see FatalError)
    │   ├── BrokerNoAnswer                 inside the Alpaca client: no HTTP answer came back
    │   └── BrokerWireError                inside the Alpaca client: an answer of the wrong shape
    │       └── NotionalOrder              an order by dollar amount (never one of the bot's)
    ├── AdminError ······················· an admin mark (retry/skip/unpark) cannot be made
    └── DevnetError ······················ dev tooling (``bot devnet``, tests) failed
        ├── DevnetRpcError                 the devnet node answered an error
        ├── TransactionFailedError         a devnet transaction reverted
        └── AnvilNotFoundError             the anvil binary is not installed

Broker branches must never be confused:

- :class:`BrokerRejected`: the broker refused this order; nothing was placed.
- :class:`BrokerAccountRefused`: refused for the whole account (insufficient buying power,
  shorting not allowed): a blocking reason with a backoff, never parks a ticker.
- :class:`BrokerAuthError`: the keys are refused (at start: exit 3 naming the keys).
- :class:`BrokerUnavailable` (also a :class:`TransientError`): a read could not be answered;
  :class:`BrokerRateLimited` (nothing placed, wait ``retry_after_s``) and
  :class:`OutcomeUnknown` (we do not know whether an order exists: resolve it by
  ``client_order_id``, never by placing another order) are its children.
- :class:`OrderMismatch` (also a :class:`FatalError`): the broker's order under our id is not
  the order we asked for.

:func:`is_provider_trouble` is the one rule ``run`` uses to keep going: any transient error or
RPC error answer is waited out, whatever call it came from (``eth_subscribe`` included).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.core.heads import Head
    from bot.core.model import RawLog


class BotError(Exception):
    """Root of every error the bot raises on purpose."""


class ConfigError(BotError):
    """The configuration is invalid; the message names the key, the value and the fix."""


class TransientError(BotError):
    """A passing fault: retrying the same operation later may succeed."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FatalError(BotError):
    """Continuing could lose or double-count a fill: stop and alert the operator."""


class DatabaseMismatchError(FatalError):
    """The database serves another chain, orderbook or owner, or was written by a newer version."""


class InstanceLockedError(FatalError):
    """Another bot process holds the database's instance lock."""


class EventProcessingError(BotError):
    """One queue event cannot be processed; it is marked failed with this reason, never dropped."""


class BrokerError(BotError):
    """Base of broker outcomes that are not a normal order status."""


class BrokerRejected(BrokerError):
    """The broker refused the order: nothing was placed."""


class BrokerAccountRefused(BrokerError):
    """Refused for the whole account (buying power, shorting): nothing was placed."""


class BrokerAuthError(BrokerError):
    """The broker refused the API keys (the message names the keys, never their values)."""


class BrokerUnavailable(BrokerError, TransientError):
    """The broker could not be asked (timeout, 5xx, dropped connection, unreadable answer)."""


class BrokerRateLimited(BrokerUnavailable):
    """HTTP 429: nothing was done; the same request may be sent after ``retry_after_s``."""


class OutcomeUnknown(BrokerUnavailable):
    """A placement's answer was lost: the order may or may not exist at the broker."""


class BrokerNoAnswer(BrokerError):
    """Inside the Alpaca client: the request got no HTTP answer (timeout, refused or dropped
    connection); the client turns it into OutcomeUnknown or BrokerUnavailable."""


class BrokerWireError(BrokerError, ValueError):
    """Inside the Alpaca client: an answer that does not have the shape Alpaca documents."""


class NotionalOrder(BrokerWireError):
    """An order placed by dollar amount (``qty`` is null): never one of the bot's."""


class OrderMismatch(BrokerError, FatalError):
    """The broker's order under our ``client_order_id`` differs in symbol, side or quantity."""


# --- configuration ------------------------------------------------------------------------------


class ProviderMismatchError(ConfigError):
    """The providers of ``chain.ws_url``/``http_url``/``fallback_urls`` report different chains."""


# --- providers (JSON-RPC) -----------------------------------------------------------------------


class RpcError(BotError):
    """An error answer: a JSON-RPC error object, or an HTTP status other than 200.

    Whether it is worth retrying depends on the call (``bot.chain.endpoint.is_transient``
    decides by the message text); after the endpoint's retries it stands as an error. ``run``
    treats it as provider trouble all the same (:func:`is_provider_trouble`).
    """

    def __init__(self, message: str, *, code: int | None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class RpcUnavailableError(RpcError, TransientError):
    """HTTP 429 or 5xx: the provider is overloaded or down, not refusing the call."""

    def __init__(
        self, message: str, *, http_status: int, retry_after_s: float | None = None
    ) -> None:
        RpcError.__init__(self, message, code=None, http_status=http_status)
        self.retry_after_s = retry_after_s


class ConnectionLost(TransientError):
    """A connection to a provider closed or could not be opened; waiting calls fail with it."""


class SubscriptionLost(ConnectionLost):
    """The live feed ended (dropped, or closed as stale): reconnect and backfill the gap."""

    def __init__(self, reason: BaseException | None) -> None:
        super().__init__(f"subscription lost: {reason}")
        self.reason = reason


class MalformedAnswer(TransientError):
    """The provider answered something that is not the documented shape (a ``null`` for a list,
    a number that is no hex quantity): another try, or another provider, may answer properly."""


class ProvidersBehind(TransientError):
    """No provider has the block a call needs yet (providers lag each other): wait."""


class StaleStreamError(TransientError):
    """The subscription stayed quiet while the chain moved on: treated as a dropped stream."""


def is_provider_trouble(error: BaseException) -> bool:
    """Whether ``run`` waits ``error`` out (SPEC §7: transient provider trouble never ends it)."""
    return isinstance(error, TransientError | RpcError)


# --- the queue and the chain --------------------------------------------------------------------


class QueueRaceError(TransientError):
    """A queue row the drain read as pending changed status before the drain committed (the
    live pump marked it removed): the drain's transaction rolls back and the batch is re-read."""


class DatabaseMissingError(FatalError, FileNotFoundError):
    """The read-only and admin commands found no database: exit 1 with a message, not a trace."""


class UnusableAnswer(TransientError):
    """The provider answered something that is not the documented shape (retry later)."""


class BlockNotServed(TransientError):
    """The provider does not serve a block it announced yet (its canonical hash is unchanged)."""


class BlockReplaced(TransientError):
    """The block of a hash is no longer canonical: ``canonical`` is the header at its height."""

    def __init__(self, message: str, *, canonical: Head) -> None:
        super().__init__(message)
        self.canonical = canonical


class ChainMoved(TransientError):
    """The reads of one window disagree (the chain changed under them): read the window again."""


class ChainReorged(TransientError):
    """A block does not link to the one stored below it: rewind from ``from_number``."""

    def __init__(self, message: str, *, from_number: int) -> None:
        super().__init__(message)
        self.from_number = from_number


class MissingLogError(TransientError):
    """A queued log of a canonical block is missing from that block's logs read by hash: a
    loud error (logged, retried; the checkpoint does not pass it), never a removal."""


class ReorgTooDeepError(FatalError):
    """No block we still track matches the canonical chain."""


class OversizedBlockError(FatalError):
    """A single block's logs are still too large for the provider: never skipped."""


# --- events -------------------------------------------------------------------------------------


class NotATokenError(EventProcessingError):
    """The address has no ERC-20 ``symbol()``/``decimals()``: retrying will not help."""


class AbiLayoutError(EventProcessingError):
    """Inside the slicing decoder: a layout rule broken at some depth (the readers take only
    the bytes, not the log); ``decode_fast`` turns it into :class:`UndecodableLog`."""


class UndecodableLog(EventProcessingError):
    """An orderbook log with an unknown topic0 or data that is not a valid ABI encoding."""

    def __init__(self, raw: RawLog, reason: str) -> None:
        super().__init__(
            f"undecodable log tx={raw.tx_hash} log_index={raw.log_index} "
            f"topic0={raw.topic0}: {reason}"
        )
        self.reason = reason


class MissingTokenInfoError(EventProcessingError, KeyError):
    """A token of our order has no cached ``TokenInfo``: the drain must fetch symbols first."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"no TokenInfo for token {address} (the token table is keyed by checksummed "
            "address; fetch symbol and decimals before converting)"
        )
        self.address = address

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


# --- operator marks and dev tooling -------------------------------------------------------------


class AdminError(BotError):
    """The mark cannot be made (unknown event, wrong status, unknown ticker)."""


class DevnetError(BotError):
    """A devnet operation failed (RPC error, failed transaction, missing binary, ...)."""


class DevnetRpcError(DevnetError):
    """The devnet node answered a JSON-RPC error (dev tooling's synchronous client)."""

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}" + (f" ({data})" if data else ""))
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class TransactionFailedError(DevnetError):
    def __init__(self, tx_hash: str, receipt: dict[str, Any]) -> None:
        super().__init__(f"transaction {tx_hash} reverted (block {receipt.get('blockNumber')})")
        self.tx_hash = tx_hash
        self.receipt = receipt


class AnvilNotFoundError(DevnetError):
    """The anvil binary is not installed (``npm ci`` installs it)."""
