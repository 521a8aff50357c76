"""Faults the tests switch on per route (pure bookkeeping; the server carries them out).

``inject(route, fault, count)`` queues a fault for the next ``count`` requests of a route
(``"*"`` = any route; queued faults are used in the order they were injected).
``random_faults(route, {fault: p})`` rolls once per request, from a ``random.Random(seed)``, so a
run with the same seed and the same request sequence gets the same faults. Queued faults win.

Faults (what a client has to survive, SPEC §5 / ALPACA.md §1, §7):

- ``500_before`` 500, nothing done; ``500_after`` the request is carried out (an order created),
  then 500.
- ``drop_before`` / ``drop_after``: the connection is closed without an answer, before / after
  the request was carried out.
- ``slow_after``: the answer comes only after ``delay_s`` and the request is carried out only
  then, so the order lands after a client that timed out gave up.
- ``429`` with ``X-Ratelimit-Reset`` = now + 1 s; ``403_html`` / ``502_html``: a gateway's nginx
  page instead of JSON [I23].
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAULTS = frozenset(
    {"500_before", "500_after", "drop_before", "drop_after", "slow_after", "429", "403_html",
     "502_html"}
)  # fmt: skip
BEFORE = frozenset({"500_before", "drop_before", "429", "403_html", "502_html"})
"""Faults answered without carrying out the request."""

ROUTES = frozenset(
    {
        "POST /v2/orders",
        "GET /v2/orders:by_client_order_id",
        "GET /v2/orders",
        "GET /v2/orders/{id}",
        "DELETE /v2/orders/{id}",
        "DELETE /v2/orders",
        "GET /v2/account",
        "GET /v2/clock",
        "GET /v2/positions",
        "GET /v2/positions/{symbol}",
        "GET /v2/assets/{symbol}",
        "*",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    delay_s: float = 2.0


@dataclass
class _Queued:
    route: str
    fault: Fault
    left: int


class FaultPlan:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._dice = random.Random(seed)
        self._queued: list[_Queued] = []
        self._random: dict[str, dict[str, float]] = {}

    def inject(self, route: str, kind: str, count: int, delay_s: float) -> None:
        _check(route, [kind])
        if count < 1:
            raise ValueError("count must be >= 1")
        self._queued.append(_Queued(route, Fault(kind, delay_s), count))

    def set_random(self, route: str, probabilities: dict[str, float]) -> None:
        _check(route, list(probabilities))
        if any(p < 0 for p in probabilities.values()) or sum(probabilities.values()) > 1:
            raise ValueError("probabilities must be >= 0 and add up to at most 1")
        self._random[route] = dict(probabilities)

    def clear(self) -> None:
        self._queued.clear()
        self._random.clear()

    def take(self, route: str) -> Fault | None:
        """The fault for this request of ``route``, if any (uses up one queued count)."""
        for queued in self._queued:
            if queued.route in (route, "*"):
                queued.left -= 1
                if queued.left == 0:
                    self._queued.remove(queued)
                return queued.fault
        probabilities = self._random.get(route) or self._random.get("*")
        if not probabilities:
            return None
        roll = self._dice.random()
        for kind, p in sorted(probabilities.items()):
            if roll < p:
                return Fault(kind)
            roll -= p
        return None


def _check(route: str, kinds: list[str]) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; one of {sorted(ROUTES)}")
    unknown = set(kinds) - FAULTS
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
