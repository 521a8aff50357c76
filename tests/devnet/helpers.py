"""Hand-built fills and an eth_abi decoder written from SPEC §2 (independent of bot.core.abi)."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import decode

from bot.devnet.plan import ClearFill, OrderSpec, PlannedTx, SignedContext, TakeFill

ORDER = (
    "(address,(address,address,bytes),(address,uint8,uint256)[],(address,uint8,uint256)[],bytes32)"
)
TAKE_CONFIG = f"({ORDER},uint256,uint256,(address,uint256[],bytes)[])"
CLEAR_CONFIG = "(uint256,uint256,uint256,uint256,uint256,uint256)"
STATE_CHANGE = "(uint256,uint256,uint256,uint256)"
SIGNATURES = {
    "ClearV2": f"ClearV2(address,{ORDER},{ORDER},{CLEAR_CONFIG})",
    "AfterClear": f"AfterClear(address,{STATE_CHANGE})",
    "TakeOrderV2": f"TakeOrderV2(address,{TAKE_CONFIG},uint256,uint256)",
}
SPEC_TOPICS = {
    "ClearV2": "0x692ee69af2843c70772be93470669f3c73e583316a047b6bfefdae5629de37ce",
    "AfterClear": "0x3f20e55919cca701abb2a40ab72542b25ea7eed63a50f979dd2cd3231e5f488d",
    "TakeOrderV2": "0x10de99b9032184587540c04e1850dff94a7683ae1fcc9eb06098621c739c0275",
}
_DATA_TYPES = {
    "ClearV2": ["address", ORDER, ORDER, CLEAR_CONFIG],
    "AfterClear": ["address", STATE_CHANGE],
    "TakeOrderV2": ["address", TAKE_CONFIG, "uint256", "uint256"],
}
TOPIC_NAMES = {topic: name for name, topic in SPEC_TOPICS.items()}


def decode_event(log: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """(event name, decoded values) of a raw orderbook log from a receipt."""
    name = TOPIC_NAMES[log["topics"][0]]
    return name, tuple(decode(_DATA_TYPES[name], bytes.fromhex(log["data"][2:])))


def order(owner: str, receives: str, gives: str, nonce: int = 1) -> OrderSpec:
    return OrderSpec(
        owner=owner,
        inputs=(receives,),
        outputs=(gives,),
        input_index=0,
        output_index=0,
        vault_id=7,
        nonce=nonce.to_bytes(32, "big"),
        interpreter=b"\x11" * 20,
        store=b"\x22" * 20,
        bytecode=b"\x01\x02",
    )


def take(owner: str, receives: str, gives: str, order_input: int, order_output: int) -> PlannedTx:
    ctx = SignedContext(signer=b"\x33" * 20, context=(1, 2), signature=b"\x44" * 65)
    return PlannedTx((TakeFill(order(owner, receives, gives), order_input, order_output, (ctx,)),))


def clear(
    alice: str,
    bob: str,
    alice_receives: str,
    alice_gives: str,
    amounts: tuple[int, int, int, int],
) -> ClearFill:
    """``amounts`` = (alice_output, bob_output, alice_input, bob_input), as ClearStateChange."""
    alice_output, bob_output, alice_input, bob_input = amounts
    return ClearFill(
        alice=order(alice, alice_receives, alice_gives, nonce=2),
        bob=order(bob, alice_gives, alice_receives, nonce=3),
        alice_output=alice_output,
        bob_output=bob_output,
        alice_input=alice_input,
        bob_input=bob_input,
        alice_bounty_vault_id=5,
        bob_bounty_vault_id=6,
    )
