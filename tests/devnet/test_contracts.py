"""The test contracts on a real anvil: production topic0s, take/clear semantics, reverts, and
web3.py contract objects over what ``deploy`` returns."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError

from bot.devnet.anvil import AnvilProcess
from bot.devnet.contracts import ARTIFACTS_DIR, TxSender, connect, orderbook_artifact
from bot.devnet.deploy import balance_of, deploy
from bot.devnet.plan import TOKENS, PlannedTx, make_plan
from bot.devnet.simulate import planned_call, run_plan, send_planned
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


def test_run_plan_returns_the_receipts_the_node_sends(chain: Chain) -> None:
    receipts = run_plan(chain.rpc, chain.deployment, make_plan(seed=3, fills=6))
    assert receipts
    for receipt in receipts:
        raw = chain.rpc.call("eth_getTransactionReceipt", [receipt["transactionHash"]])
        assert int(receipt.pop("blockTimestamp"), 16) == int(raw.pop("blockTimestamp"))
        assert receipt == raw  # web3's receipt back in JSON-RPC form, field for field


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
    sender = TxSender(chain.rpc)
    send_planned(sender, tx, chain.deployment)
    sender.flush()


def _call(chain: Chain, tx: PlannedTx) -> None:
    with connect(chain.http_url) as w3:
        book = orderbook_artifact().at(w3, chain.deployment.orderbook)
        planned = planned_call(book, tx, chain.deployment)
        planned.call.call({"from": Web3.to_checksum_address(planned.sender)})


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
    with pytest.raises(ContractLogicError, match=reason):
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
    with pytest.raises(ContractLogicError, match="token mismatch"):
        _call(chain, tx)


def _plain_contract(w3: Web3, artifact: str, address: str) -> Any:
    """A web3 contract object straight from the committed artifact (no project helper)."""
    abi = json.loads((ARTIFACTS_DIR / f"{artifact}.json").read_text())["abi"]
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=abi)


def test_deploy_over_web3_gives_addresses_web3_contract_objects_can_call(
    anvil: AnvilProcess,
) -> None:
    session = requests.Session()  # a stock Web3, its session closed at the end
    w3 = Web3(HTTPProvider(anvil.http_url, session=session))
    try:
        d = deploy(w3)
        assert d.chain_id == w3.eth.chain_id == 31337
        for symbol, token in d.tokens.items():
            contract = _plain_contract(w3, "TestToken", token.address)
            assert contract.functions.symbol().call() == symbol
            assert contract.functions.decimals().call() == TOKENS[symbol] == token.decimals
            for account in (d.order_owner, *d.other_owners, d.taker, d.clearer):
                allowance = contract.functions.allowance(account, d.orderbook).call()
                assert allowance == 2**256 - 1
                balance = contract.functions.balanceOf(account).call()
                assert balance == balance_of(w3, token.address, account) > 0
        assert len(w3.eth.get_code(Web3.to_checksum_address(d.orderbook))) > 0
    finally:
        session.close()


def test_token_is_a_real_erc20(chain: Chain) -> None:
    d = chain.deployment
    with connect(chain.http_url) as w3:
        usdc = _plain_contract(w3, "TestToken", d.tokens["USDC"].address)
        assert (usdc.functions.symbol().call(), usdc.functions.decimals().call()) == ("USDC", 6)
        assert usdc.functions.allowance(d.order_owner, d.orderbook).call() == 2**256 - 1
        sender = TxSender(w3)
        with pytest.raises((TransactionFailedError, DevnetRpcError)):  # only the deployer mints
            sender.send_and_wait(usdc.functions.mint(d.taker, 1), d.taker, 200_000)
        with pytest.raises(
            (TransactionFailedError, DevnetRpcError)
        ):  # no allowance from us to the taker
            call = usdc.functions.transferFrom(d.order_owner, d.taker, 1)
            sender.send_and_wait(call, d.taker, 200_000)
        before = balance_of(chain.rpc, usdc.address, d.clearer)
        receipt = sender.send_and_wait(usdc.functions.transfer(d.clearer, 5), d.taker, 200_000)
        assert balance_of(chain.rpc, usdc.address, d.clearer) - before == 5
    transfer_topic = "0x" + bytes(keccak(text="Transfer(address,address,uint256)")).hex()
    assert [log["topics"][0].to_0x_hex() for log in receipt["logs"]] == [transfer_topic]


def test_sender_waits_for_receipts_every_max_unconfirmed_sends(chain: Chain) -> None:
    """anvil's back-pressure rule (NOTES.md): never more than ``max_unconfirmed`` unconfirmed."""
    d = chain.deployment
    with connect(chain.http_url) as w3:
        usdc = _plain_contract(w3, "TestToken", d.tokens["USDC"].address)
        sender = TxSender(w3, max_unconfirmed=3, keep_receipts=True)
        for sent in range(1, 8):
            sender.send(usdc.functions.transfer(d.clearer, 1), d.taker, 100_000)
            assert len(sender.receipts) == sent // 3 * 3
        assert [r["status"] for r in sender.flush()] == [1]
        assert len(sender.receipts) == 7


def test_session_chain_is_deployed_once_and_usable(session_chain: Chain) -> None:
    d = session_chain.deployment
    assert int(session_chain.rpc.call("eth_chainId"), 16) == d.chain_id == 31337
    before = balance_of(session_chain.rpc, d.tokens["wtMSFT"].address, d.order_owner)
    run_plan(session_chain.rpc, d, [take("us", "wtMSFT", "USDC", 3, 1)])
    after = balance_of(session_chain.rpc, d.tokens["wtMSFT"].address, d.order_owner)
    assert after - before == 3
