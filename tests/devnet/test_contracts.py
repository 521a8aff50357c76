"""The test contracts on a real anvil: production topic0s, take/clear semantics, reverts."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.crypto import keccak

from bot.devnet.contracts import orderbook_artifact, token_artifact
from bot.devnet.deploy import balance_of
from bot.devnet.plan import PlannedTx
from bot.devnet.rpc import TxSender
from bot.devnet.simulate import encode_tx, run_plan
from bot.errors import DevnetRpcError, TransactionFailedError
from devnet.helpers import SIGNATURES, SPEC_TOPICS, clear, decode_event, take
from tests.support.chain import Chain

E18 = 10**18


def _orderbook_logs(chain: Chain, receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    book = chain.deployment.orderbook.lower()
    return [log for r in receipts for log in r["logs"] if log["address"].lower() == book]


def _balances(chain: Chain, account: str) -> dict[str, int]:
    return {
        symbol: balance_of(chain.rpc, token.address, account)
        for symbol, token in chain.deployment.tokens.items()
    }


def test_spec_topic0_constants_are_keccak_of_canonical_signatures() -> None:
    for name, text in SIGNATURES.items():
        assert "0x" + bytes(keccak(text=text)).hex() == SPEC_TOPICS[name]
        assert orderbook_artifact().event_signature(name) == text
        assert orderbook_artifact().event_topic(name) == SPEC_TOPICS[name]


def test_real_logs_carry_spec_topic0_and_no_indexed_topics(chain: Chain) -> None:
    plan = [
        take("us", "AAPLs1", "USDC", 2 * E18, 300_000_000),
        PlannedTx(
            (clear("us", "other1", "USDC", "TSLAs1", (5 * E18, 900_000_000, 900_000_000, 5 * E18)),)
        ),
    ]
    logs = _orderbook_logs(chain, run_plan(chain.rpc, chain.deployment, plan))
    assert [log["topics"] for log in logs] == [
        [SPEC_TOPICS["TakeOrderV2"]],
        [SPEC_TOPICS["ClearV2"]],
        [SPEC_TOPICS["AfterClear"]],
    ]


def test_take_order_reports_amounts_from_the_takers_side(chain: Chain) -> None:
    d = chain.deployment
    us_before, taker_before = _balances(chain, d.order_owner), _balances(chain, d.taker)
    # Our order sells 1.5 AAPLs1 (its output) for 225.5 USDC (its input).
    tx = take("us", "USDC", "AAPLs1", order_input=225_500_000, order_output=15 * E18 // 10)
    (receipt,) = run_plan(chain.rpc, d, [tx])
    (log,) = _orderbook_logs(chain, [receipt])
    name, (sender, config, event_input, event_output) = decode_event(log)
    assert name == "TakeOrderV2"
    assert sender.lower() == d.taker.lower()
    assert config[0][0].lower() == d.order_owner.lower()
    assert event_input == 15 * E18 // 10  # what the taker received = the order's output
    assert event_output == 225_500_000  # what the taker paid = the order's input
    assert config[3][0][1] == (1, 2)  # signed context round-trips
    us_after, taker_after = _balances(chain, d.order_owner), _balances(chain, d.taker)
    assert us_after["USDC"] - us_before["USDC"] == 225_500_000
    assert us_before["AAPLs1"] - us_after["AAPLs1"] == 15 * E18 // 10
    assert taker_after["AAPLs1"] - taker_before["AAPLs1"] == 15 * E18 // 10
    assert taker_before["USDC"] - taker_after["USDC"] == 225_500_000


def test_clear_moves_tokens_pays_the_bounty_and_emits_clear_then_after_clear(chain: Chain) -> None:
    d = chain.deployment
    accounts = {"alice": d.order_owner, "bob": d.other_owners[0], "clearer": d.clearer}
    before = {k: _balances(chain, a) for k, a in accounts.items()}
    # alice gives 3.000000000000000007 NVDA0x, bob takes 3 of it; bob gives 400 USDC, alice 399.
    change = (3 * E18 + 7, 400_000_000, 399_000_000, 3 * E18)
    fill = clear("us", "other1", "USDC", "NVDA0x", change)
    (receipt,) = run_plan(chain.rpc, d, [PlannedTx((fill,))])
    after = {k: _balances(chain, a) for k, a in accounts.items()}
    delta = {k: {s: after[k][s] - before[k][s] for s in ("NVDA0x", "USDC")} for k in accounts}
    assert delta == {
        "alice": {"NVDA0x": -(3 * E18 + 7), "USDC": 399_000_000},
        "bob": {"NVDA0x": 3 * E18, "USDC": -400_000_000},
        "clearer": {"NVDA0x": 7, "USDC": 1_000_000},
    }
    logs = _orderbook_logs(chain, [receipt])
    (clear_name, clear_values), (after_name, after_values) = map(decode_event, logs)
    assert (clear_name, after_name) == ("ClearV2", "AfterClear")
    assert clear_values[0].lower() == d.clearer.lower()
    assert clear_values[1][0].lower() == d.order_owner.lower()
    assert clear_values[2][0].lower() == d.other_owners[0].lower()
    assert clear_values[3] == (0, 0, 0, 0, 5, 6)
    assert after_values[1] == change
    assert int(logs[1]["logIndex"], 16) > int(logs[0]["logIndex"], 16)


def test_several_clears_in_one_transaction_keep_their_order(chain: Chain) -> None:
    fills = tuple(
        clear("us", "other2", "USDC", "AAPLs1", (n * E18, n * 10**6, n * 10**6, n * E18))
        for n in (1, 2, 3)
    )
    (receipt,) = run_plan(chain.rpc, chain.deployment, [PlannedTx(fills)])
    logs = _orderbook_logs(chain, [receipt])
    assert [decode_event(log)[0] for log in logs] == ["ClearV2", "AfterClear"] * 3
    indexes = [int(log["logIndex"], 16) for log in logs]
    assert indexes == sorted(indexes) and len(set(indexes)) == 6
    assert [decode_event(log)[1][1][0] for log in logs[1::2]] == [E18, 2 * E18, 3 * E18]
    assert len({log["transactionHash"] for log in logs}) == 1


def _send(chain: Chain, tx: PlannedTx) -> None:
    sender, data = encode_tx(tx, chain.deployment)
    TxSender(chain.rpc).send_and_wait(sender, chain.deployment.orderbook, data, 2_000_000)


def _call(chain: Chain, tx: PlannedTx) -> None:
    sender, data = encode_tx(tx, chain.deployment)
    call = {"from": sender, "to": chain.deployment.orderbook, "data": "0x" + data.hex()}
    chain.rpc.call("eth_call", [call, "latest"])


@pytest.mark.parametrize(
    ("tx", "reason"),
    [
        (PlannedTx((clear("us", "us", "USDC", "AAPLs1", (E18, 10**6, 10**6, E18)),)), "same owner"),
        (
            PlannedTx((clear("other1", "other1", "USDC", "AAPLs1", (E18, 1, 1, E18)),)),
            "same owner",
        ),
        (
            PlannedTx((clear("us", "other1", "USDC", "AAPLs1", (E18 - 1, 10**6, 10**6, E18)),)),
            "alice output < bob input",
        ),
    ],
)
def test_invalid_clears_revert(chain: Chain, tx: PlannedTx, reason: str) -> None:
    with pytest.raises(DevnetRpcError, match=reason):
        _call(chain, tx)
    head = chain.rpc.call("eth_blockNumber")
    with pytest.raises((TransactionFailedError, DevnetRpcError)):
        _send(chain, tx)
    book = chain.deployment.orderbook
    assert chain.rpc.call("eth_getLogs", [{"address": book, "fromBlock": head}]) == []


def test_clear_with_mismatched_tokens_reverts(chain: Chain) -> None:
    fill = clear("us", "other1", "USDC", "AAPLs1", (E18, 10**6, 10**6, E18))
    bad_bob = fill.bob.__class__(**{**fill.bob.__dict__, "inputs": ("TSLAs1",)})
    tx = PlannedTx((fill.__class__(**{**fill.__dict__, "bob": bad_bob}),))
    with pytest.raises(DevnetRpcError, match="token mismatch"):
        _call(chain, tx)


def test_token_is_a_real_erc20(chain: Chain) -> None:
    d, art = chain.deployment, token_artifact()
    usdc = d.tokens["USDC"].address

    def read(function: str, *args: object) -> Any:
        data = art.encode_call(function, *args)
        raw = chain.rpc.call("eth_call", [{"to": usdc, "data": "0x" + data.hex()}, "latest"])
        return art.decode_result(function, bytes.fromhex(raw[2:]))[0]

    assert (read("symbol"), read("decimals")) == ("USDC", 6)
    assert read("allowance", d.order_owner, d.orderbook) == 2**256 - 1
    sender = TxSender(chain.rpc)
    with pytest.raises((TransactionFailedError, DevnetRpcError)):
        sender.send_and_wait(d.taker, usdc, art.encode_call("mint", d.taker, 1), 200_000)
    # no allowance from us to the taker
    with pytest.raises((TransactionFailedError, DevnetRpcError)):
        data = art.encode_call("transferFrom", d.order_owner, d.taker, 1)
        sender.send_and_wait(d.taker, usdc, data, 200_000)
    before = balance_of(chain.rpc, usdc, d.clearer)
    receipt = sender.send_and_wait(
        d.taker, usdc, art.encode_call("transfer", d.clearer, 5), 200_000
    )
    assert balance_of(chain.rpc, usdc, d.clearer) - before == 5
    transfer_topic = "0x" + bytes(keccak(text="Transfer(address,address,uint256)")).hex()
    assert [log["topics"][0] for log in receipt["logs"]] == [transfer_topic]


def test_session_chain_is_deployed_once_and_usable(session_chain: Chain) -> None:
    d = session_chain.deployment
    assert int(session_chain.rpc.call("eth_chainId"), 16) == d.chain_id == 31337
    before = balance_of(session_chain.rpc, d.tokens["wtMSFT"].address, d.order_owner)
    run_plan(session_chain.rpc, d, [take("us", "wtMSFT", "USDC", 3, 1)])
    after = balance_of(session_chain.rpc, d.tokens["wtMSFT"].address, d.order_owner)
    assert after - before == 3
