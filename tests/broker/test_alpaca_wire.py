"""Alpaca's JSON → the seam's types: exact decimals, nanosecond timestamps, clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from bot.broker.alpaca import _wire
from bot.broker.base import BrokerPosition, OrderStatus
from bot.core.model import Direction

EASTERN = timezone(timedelta(hours=-4))


def _order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "client_order_id": "bot-0123456789abcdef-1",
        "created_at": "2021-03-16T18:38:01.942282Z",
        "submitted_at": "2021-03-16T18:38:01.937734Z",
        "symbol": "AAPL",
        "qty": "0.123456789",
        "filled_qty": "0",
        "filled_avg_price": None,
        "side": "buy",
        "status": "accepted",
        "replaced_by": None,
    }
    order.update(changes)
    return order


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_an_order_parses_exactly() -> None:
    state = _wire.order_state(_wire.loads(_body(_order())))
    assert state.qty == Decimal("0.123456789")
    assert state.side is Direction.BUY
    assert state.status is OrderStatus.ACCEPTED
    assert state.filled_avg_price is None
    assert state.submitted_at == datetime(2021, 3, 16, 18, 38, 1, 937734, tzinfo=UTC)
    filled = _wire.order_state(
        _order(status="filled", filled_qty="0.123456789", filled_avg_price="209.12")
    )
    assert filled.terminal and filled.filled_avg_price == Decimal("209.12")


def test_json_numbers_never_become_floats() -> None:
    parsed = _wire.loads(b'{"qty": 0.1, "filled_qty": 3}')
    assert parsed["qty"] == Decimal("0.1") and isinstance(parsed["qty"], Decimal)
    state = _wire.order_state(_wire.loads(_body(_order()).replace(b'"0.123456789"', b"0.1")))
    assert state.qty == Decimal("0.1")
    with pytest.raises(_wire.WireError, match="not a decimal"):
        _wire.order_state(_order(filled_qty=True))
    with pytest.raises(_wire.WireError, match="not finite"):
        _wire.order_state(_order(qty="NaN"))


def test_timestamps_keep_microseconds_of_nanoseconds_and_their_offset() -> None:
    assert _wire.timestamp("2019-11-20T06:49:45.214827487Z") == datetime(
        2019, 11, 20, 6, 49, 45, 214827, tzinfo=UTC
    )
    eastern = _wire.timestamp("2022-04-28T14:07:04.451420928-04:00")
    assert eastern == datetime(2022, 4, 28, 14, 7, 4, 451420, tzinfo=EASTERN)
    assert eastern.utcoffset() == timedelta(hours=-4)
    assert _wire.timestamp("2022-04-29T09:30:00-04:00").microsecond == 0
    for bad in ("2022-04-29T09:30:00", "2022-04-29", "yesterday", 1651238400):
        with pytest.raises(_wire.WireError):
            _wire.timestamp(bad)


def test_query_timestamps_are_utc_and_refuse_naive_datetimes() -> None:
    moment = datetime(2022, 4, 28, 14, 7, 4, 451420, tzinfo=EASTERN)
    assert _wire.rfc3339(moment) == "2022-04-28T18:07:04.451420Z"
    with pytest.raises(ValueError, match="naive"):
        _wire.rfc3339(datetime(2022, 4, 28))  # naive on purpose


def test_quantities_go_out_in_plain_notation() -> None:
    assert _wire.plain_decimal(Decimal("1E+2")) == "100"
    assert _wire.plain_decimal(Decimal("1.2300")) == "1.23"
    assert _wire.plain_decimal(Decimal("0.123456789")) == "0.123456789"
    assert _wire.plain_decimal(Decimal("1E-9")) == "0.000000001"
    assert _wire.plain_decimal(Decimal("5")) == "5"
    many = Decimal("12345678901234567890.123456789")  # more digits than the default context
    assert _wire.plain_decimal(many) == "12345678901234567890.123456789"


def test_unknown_status_side_or_missing_field_is_a_wire_error() -> None:
    with pytest.raises(_wire.WireError, match="unknown order status 'teleported'"):
        _wire.order_state(_order(status="teleported"))
    with pytest.raises(_wire.WireError, match="side"):
        _wire.order_state(_order(side="short"))
    broken = _order()
    del broken["symbol"]
    with pytest.raises(_wire.WireError, match="'symbol' is missing"):
        _wire.order_state(broken)
    with pytest.raises(_wire.NotionalOrder):
        _wire.order_state(_order(qty=None, notional="100"))
    with pytest.raises(_wire.WireError, match="not JSON"):
        _wire.loads(b"<html>502 Bad Gateway</html>")


def test_submitted_at_falls_back_to_created_at() -> None:
    state = _wire.order_state(_order(submitted_at=None))
    assert state.submitted_at == datetime(2021, 3, 16, 18, 38, 1, 942282, tzinfo=UTC)


def test_positions_are_signed_by_side_whatever_the_sign_of_qty() -> None:
    wire = [
        {"symbol": "AAPL", "qty": "3", "side": "long"},
        {"symbol": "TSLA", "qty": "-2.5", "side": "short"},
        {"symbol": "NVDA", "qty": "1", "side": "short"},
    ]
    assert _wire.positions(wire) == [
        BrokerPosition("AAPL", Decimal(3)),
        BrokerPosition("TSLA", Decimal("-2.5")),
        BrokerPosition("NVDA", Decimal(-1)),
    ]


def test_error_bodies_json_gateway_and_html() -> None:
    duplicate = b'{"code":40010001,"message":"client_order_id must be unique"}'
    assert _wire.error_info(duplicate) == (40010001, "client_order_id must be unique")
    assert _wire.error_info(b'{"message": "forbidden."}\n') == (None, "forbidden.")
    html = b"<html><head><title>403 Forbidden</title></head><body>nginx</body></html>"
    assert _wire.error_info(html) == (None, "403 Forbidden nginx")
    assert _wire.error_info(b"x" * 500)[1].endswith("…")
    assert _wire.error_info(b'{"code": true, "message": "odd"}') == (None, "odd")
