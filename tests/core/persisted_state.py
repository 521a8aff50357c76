"""What the engine persists from an Accumulator, kept in memory for the pure tests: every row
upserted from ``take_changes()``, read back the way the database gives it (amounts through
canonical TEXT), and an Accumulator rebuilt from it exactly as the engine does at start."""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

from bot.core import amounts
from bot.core.accumulator import Accumulator, Changes, Execution, Link, Lot, Position


def roundtrip(row: Any) -> Any:
    """A copy as the database gives it back: every Decimal through canonical TEXT."""
    result = copy(row)
    for f in fields(row):
        value = getattr(row, f.name)
        if isinstance(value, Decimal):
            setattr(result, f.name, amounts.from_text(amounts.to_text(value)))
    return result


@dataclass
class PersistedState:
    lots: dict[int, Lot] = field(default_factory=dict)
    links: dict[tuple[int, int], Link] = field(default_factory=dict)
    executions: dict[int, Execution] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)

    def apply(self, changes: Changes) -> None:
        self.lots.update(changes.lots)
        self.links.update(changes.links)
        self.executions.update(changes.executions)
        self.positions.update(changes.positions)

    def load(
        self, *, instance_id: str, threshold: int, max_rejections: int, next_id: int
    ) -> Accumulator:
        """Rebuild as the engine does: positions, lots that are open or linked to an in-flight
        execution, in-flight executions and their links (in reverse order: order must not
        matter)."""
        in_flight = [e for e in self.executions.values() if e.status.in_flight]
        ids = {e.id for e in in_flight}
        links = [k for k in self.links.values() if k.execution_id in ids]
        linked = {k.lot_id for k in links}
        lots = [x for x in self.lots.values() if x.open > 0 or x.trade_id in linked]
        return Accumulator(
            threshold=threshold,
            max_rejections=max_rejections,
            instance_id=instance_id,
            next_execution_id=next_id,
            positions=[roundtrip(p) for p in self.positions.values()],
            lots=[roundtrip(x) for x in reversed(lots)],
            executions=[roundtrip(e) for e in in_flight],
            links=[roundtrip(k) for k in reversed(links)],
        )
