"""One Alpaca account's HTTP transport: the session, the keys, pacing, and what came back.

Rules:

- One request per call, never resent by this code (see the client's docstring for aiohttp's
  own resend of an idempotent request on a closed connection) and never redirected: a 3xx is an
  answer like any other (for a placement: an unknown outcome).
- Every request waits for its turn in the account's window (:mod:`.pacing`); placements first.
- The keys go out as the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers and nowhere else:
  :class:`Credentials` has no readable ``repr``, and text built from a server's answer or an
  exception passes through :meth:`Credentials.redact`.
- No HTTP answer at all (timeout, refused or dropped connection) is :class:`NoAnswer`; any
  answer, whatever its status, is an :class:`Answer`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from loguru import logger

from bot.broker.alpaca.pacing import SlidingWindowLimiter
from bot.errors import BrokerNoAnswer, ConfigError


class Credentials:
    """The keys, kept out of every ``repr`` (a traceback or a log of the object shows none)."""

    __slots__ = ("_key_id", "_secret")

    def __init__(self, key_id: str, secret: str) -> None:
        self._key_id = key_id
        self._secret = secret

    def headers(self) -> dict[str, str]:
        """An unset (empty) key is not sent: the gateway then answers 403 "forbidden."."""
        pairs = (("APCA-API-KEY-ID", self._key_id), ("APCA-API-SECRET-KEY", self._secret))
        return {name: value for name, value in pairs if value}

    def redact(self, text: str) -> str:
        """Hide the keys in a server's text (real keys are 20+ characters; a value shorter
        than 8 would match ordinary words, so it is left alone)."""
        for value in (self._secret, self._key_id):
            if len(value) >= 8:
                text = text.replace(value, "<redacted>")
        return text

    def __repr__(self) -> str:
        return "<credentials redacted>"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    reset_epoch_s: float | None  # X-Ratelimit-Reset: when the account's window frees up


NoAnswer = BrokerNoAnswer  # the name the client uses


def split_base_url(base_url: str) -> tuple[str, str]:
    """``(root, host)``: the URL requests are built on (without ``/v2``) and its host[:port]."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"broker.alpaca.base_url = {base_url!r} is not an http(s) URL; "
            'use e.g. "https://paper-api.alpaca.markets"'
        )
    host = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/").removesuffix("/v2")  # paths here start with /v2/
    return f"{parts.scheme}://{host}{path}", host


class Transport:
    """Sends one request and reads the whole answer; the aiohttp session is created lazily."""

    def __init__(
        self, *, root: str, credentials: Credentials, timeout_s: float, requests_per_minute: int
    ) -> None:
        self._root = root
        self.credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.limiter = SlidingWindowLimiter(requests_per_minute)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Transport(root={self._root!r})"

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _paced(self, *, placement: bool) -> None:
        while (wait_s := self.limiter.delay(placement=placement)) > 0:
            logger.debug("alpaca: pacing, next request in {:.2f} s", wait_s)
            await asyncio.sleep(wait_s)
        self.limiter.record()

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, str] | None = None,
        placement: bool = False,
    ) -> Answer:
        await self._paced(placement=placement)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                method,
                f"{self._root}{path}",
                params=params,
                json=body,
                headers=self.credentials.headers(),
                allow_redirects=False,  # a followed 307 would send the order a second time
            ) as response:
                data = await response.read()
                reset = response.headers.get("X-Ratelimit-Reset")
        except TimeoutError:
            raise NoAnswer(f"no answer within {self._timeout.total} s") from None
        except aiohttp.ClientError as exc:
            raise NoAnswer(self.credentials.redact(f"{type(exc).__name__}: {exc}")) from None
        logger.debug("alpaca {} {} → {}", method, path, response.status)
        return Answer(response.status, data, _epoch_or_none(reset))


def _epoch_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
