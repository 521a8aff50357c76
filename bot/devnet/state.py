"""The devnet state directory: deployment.json, expected.json, anvil.log and a bot config.toml."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from bot.core import amounts

if TYPE_CHECKING:  # deploy imports web3 (~0.7 s): only the devnet commands should pay for it
    from bot.devnet.deploy import Deployment

DEFAULT_DIR = Path(".devnet")
DEPLOYMENT_FILE = "deployment.json"
EXPECTED_FILE = "expected.json"
CONFIG_FILE = "config.toml"
ANVIL_LOG = "anvil.log"
DATABASE_FILE = "bot.db"


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def deployment(self) -> Path:
        return self.root / DEPLOYMENT_FILE

    @property
    def expected(self) -> Path:
        return self.root / EXPECTED_FILE

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def anvil_log(self) -> Path:
        return self.root / ANVIL_LOG

    @property
    def database(self) -> Path:
        return self.root / DATABASE_FILE


def expected_to_json(net: dict[str, Decimal]) -> str:
    """``{"AAPL": "-1.2", ...}``: sorted tickers, canonical plain decimal strings."""
    return json.dumps({t: amounts.to_text(v) for t, v in sorted(net.items())}, indent=2) + "\n"


def write_expected(path: Path, net: dict[str, Decimal]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(expected_to_json(net))
    tmp.replace(path)  # atomic: a reader never sees half a file


def read_expected(path: Path) -> dict[str, Decimal]:
    return {t: amounts.from_text(v) for t, v in json.loads(path.read_text()).items()}


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def render_config(deployment: Deployment, ws_url: str, http_url: str, database: Path) -> str:
    """A bot ``config.toml`` (SPEC §9 keys) for this devnet, dry-run broker."""
    return f"""\
# Written by `bot devnet up`: a bot config for the local devnet (chain id {deployment.chain_id}).

[chain]
ws_url = {_toml_str(ws_url)}
http_url = {_toml_str(http_url)}

[orderbook]
address = {_toml_str(deployment.orderbook)}
deployment_block = {deployment.deployment_block}
order_owner = {_toml_str(deployment.order_owner)}

[database]
path = {_toml_str(str(database))}

[backfill]
workers = 4
batch_blocks = 1000

[live]
first_event_timeout_s = 5
confirmations = 0
stale_after_s = 60

[accumulator]
threshold_shares = 1
stablecoins = ["USDC"]
equity_suffixes = ["s1", "0x"]
equity_prefixes = ["wt"]

[broker]
kind = "dry-run"
max_rejections = 3

[metrics]
port = 0
"""


def write_state(
    paths: StatePaths,
    deployment: Deployment,
    *,
    ws_url: str,
    http_url: str,
    expected: dict[str, Decimal],
) -> None:
    """Write deployment.json, expected.json and config.toml under ``paths.root``."""
    paths.root.mkdir(parents=True, exist_ok=True)
    deployment.save(paths.deployment)
    write_expected(paths.expected, expected)
    paths.config.write_text(render_config(deployment, ws_url, http_url, paths.database.resolve()))
