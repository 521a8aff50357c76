"""What the drain needs from the chain: receipts (a ClearV2's AfterClear) and token metadata."""

from __future__ import annotations

from typing import Protocol

from bot.core.model import RawLog, TokenInfo


class ChainReader(Protocol):
    async def token_info(self, address: str) -> TokenInfo:
        """ERC-20 ``symbol()`` and ``decimals()``; raises ``TransientError`` on RPC faults."""
        ...

    async def receipt_logs(self, tx_hash: str) -> list[RawLog]:
        """Every log of a mined transaction's receipt, in log order."""
        ...
