"""The one exception tree of the bot.

Every error the bot raises on purpose is a :class:`BotError`; its branch tells the caller what to
do with it:

- :class:`ConfigError`: the operator must fix the configuration; the process exits with code 3.
- :class:`TransientError`: a passing fault (RPC timeout, rate limit, 5xx); retry with backoff.
- :class:`FatalError`: continuing could lose or double-count money; stop and alert (exit 1).
- :class:`BrokerError`: what a broker answered that is not an order status. Its branches must
  never be confused:

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
"""

from __future__ import annotations


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


class OrderMismatch(BrokerError, FatalError):
    """The broker's order under our ``client_order_id`` differs in symbol, side or quantity."""
