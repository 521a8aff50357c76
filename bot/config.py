"""Configuration: ``config.toml`` plus ``BOT__SECTION__KEY`` environment overrides (SPEC §9).

Every error names the key, the offending value, where it came from and the expected form, and is
raised as :class:`~bot.errors.ConfigError` (the CLI exits with code 3).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from eth_utils.address import is_address, is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.config_errors import format_errors
from bot.errors import ConfigError

ENV_PREFIX = "BOT__"
DEVNET_CHAIN_ID = 31337


def _checksummed(value: str) -> str:
    if not is_address(value):
        raise ValueError("a 20-byte hex address like 0x5FbDB2315678afecb367f032d93F642f64180aa3")
    if value != value.lower() and value[2:] != value[2:].upper() and not is_checksum_address(value):
        raise ValueError("a valid EIP-55 checksum (or an all-lowercase address)")
    return str(to_checksum_address(value))


def _ws_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://")):
        raise ValueError("a WebSocket URL starting with ws:// or wss://")
    return value


def _http_url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError('an HTTP URL starting with http:// or https://, or "" to use ws_url')
    return value


Address = Annotated[str, AfterValidator(_checksummed)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _provider_url(value: str) -> str:
    if not value.startswith(("ws://", "wss://", "http://", "https://")):
        raise ValueError("a provider URL starting with ws://, wss://, http:// or https://")
    return value


class ChainSettings(_Section):
    ws_url: Annotated[str, AfterValidator(_ws_url)] = "ws://127.0.0.1:8545"
    http_url: Annotated[str, AfterValidator(_http_url)] = ""
    # more providers for calls and backfill, in order of preference; the ws:// ones also take
    # the subscriptions when the primary stays down (SPEC §7)
    fallback_urls: list[Annotated[str, AfterValidator(_provider_url)]] = Field(default_factory=list)

    @property
    def rpc_url(self) -> str:
        """The URL for calls and backfill: ``http_url`` when set, else the WebSocket URL."""
        return self.http_url or self.ws_url


class OrderbookSettings(_Section):
    address: Address
    deployment_block: int = Field(default=0, ge=0)
    order_owner: Address


class DatabaseSettings(_Section):
    path: str = Field(default="bot.db", min_length=1)


class BackfillSettings(_Section):
    workers: int = Field(default=8, ge=1, le=64)
    batch_blocks: int = Field(default=1000, ge=1)
    drain_behind: bool = True  # `bot backfill` books behind the checkpoint while fetching


class RpcSettings(_Section):
    requests_per_second: float = Field(default=0, ge=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=10, gt=0)


class LiveSettings(_Section):
    first_event_timeout_s: float = Field(default=30, gt=0)
    confirmations: int | None = Field(default=None, ge=0)
    stale_after_s: float = Field(default=60, gt=0)
    backlog_warn: int = Field(default=10_000, ge=1)


def _threshold(value: object) -> Decimal:
    # TOML gives 0.5 as a float: read its text exactly, never through binary floating point
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError("a number of shares > 0, e.g. 1 (or 0.5 with broker.fractional = true)")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError("a number of shares > 0") from None
    if not number.is_finite() or number <= 0:
        raise ValueError("a number of shares > 0")
    return number


class AccumulatorSettings(_Section):
    threshold_shares: Annotated[Any, AfterValidator(_threshold)] = Decimal(1)
    batch_events: int = Field(default=2000, ge=1, le=100_000)
    stablecoins: list[str] = Field(default_factory=lambda: ["USDC"], min_length=1)
    equity_suffixes: list[str] = Field(default_factory=lambda: ["s1", "0x"])
    equity_prefixes: list[str] = Field(default_factory=lambda: ["wt"])

    @field_validator("stablecoins", "equity_suffixes", "equity_prefixes")
    @classmethod
    def _no_blank_markers(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("a list of non-empty strings")
        return value


class AlpacaSettings(_Section):
    base_url: Annotated[str, AfterValidator(_http_url)] = "https://paper-api.alpaca.markets"
    api_key_id: SecretStr = SecretStr("")
    api_secret: SecretStr = SecretStr("")
    poll_interval_s: float = Field(default=1, gt=0)
    timeout_s: float = Field(default=10, gt=0)
    # the client's own budget (Alpaca allows 200 a minute per account); only a fake server or
    # a raised quota justifies more
    requests_per_minute: int = Field(default=200, gt=0)


class BrokerSettings(_Section):
    kind: Literal["dry-run", "alpaca"] = "dry-run"
    max_rejections: int = Field(default=3, ge=1)
    rejection_backoff_s: float = Field(default=30, ge=0)
    market_hours: bool = True
    fractional: bool = False
    reconcile_every_s: float = Field(default=300, gt=0)
    alpaca: AlpacaSettings = Field(default_factory=AlpacaSettings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``""`` and ``0.0.0.0`` mean every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class MetricsSettings(_Section):
    port: int = Field(default=9464, ge=0, le=65535)
    host: str = "127.0.0.1"
    token: SecretStr = SecretStr("")  # bearer token of the HTTP API (SPEC §10)

    def require_token_off_loopback(self) -> None:
        """``run`` refuses to serve the API beyond loopback without a token (SPEC §10)."""
        if self.port and not is_loopback(self.host) and not self.token.get_secret_value():
            raise ConfigError(
                f"metrics.host = {self.host!r} is not loopback: set metrics.token (or "
                "BOT__METRICS__TOKEN) so that every request must carry it, or use "
                'metrics.host = "127.0.0.1"'
            )


class AlertsSettings(_Section):
    webhook_url: SecretStr = SecretStr("")  # may carry a token: treated as a secret

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.startswith(("http://", "https://")):
            raise ValueError('an http(s) URL, or "" to only log alerts')
        return value


class Settings(_Section):
    chain: ChainSettings = Field(default_factory=ChainSettings)
    orderbook: OrderbookSettings
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    backfill: BackfillSettings = Field(default_factory=BackfillSettings)
    rpc: RpcSettings = Field(default_factory=RpcSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    accumulator: AccumulatorSettings = Field(default_factory=AccumulatorSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)

    @model_validator(mode="after")
    def _whole_threshold_without_fractional(self) -> Settings:
        threshold = self.accumulator.threshold_shares
        if not self.broker.fractional and (threshold < 1 or threshold != int(threshold)):
            raise ValueError(
                f"accumulator.threshold_shares = {threshold}: a fractional threshold needs "
                "broker.fractional = true; otherwise use a whole number >= 1"
            )
        if self.broker.kind == "alpaca":
            missing = [
                key
                for key in ("api_key_id", "api_secret")
                if not getattr(self.broker.alpaca, key).get_secret_value()
            ]
            if missing:
                names = " and ".join(f"broker.alpaca.{key}" for key in missing)
                envs = " / ".join(f"BOT__BROKER__ALPACA__{key.upper()}" for key in missing)
                raise ValueError(f'broker.kind = "alpaca" needs {names} (set {envs})')
        return self

    def database_path(self, base: Path) -> Path:
        """The database file, relative paths taken from the config file's folder."""
        path = Path(self.database.path)
        return path if path.is_absolute() else base / path


def _env_overrides(
    environ: Mapping[str, str],
) -> list[tuple[tuple[str, ...], str, str]]:
    found = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if len(parts) < 2 or any(not part for part in parts):
            raise ConfigError(
                f"environment {name}: expected BOT__SECTION__KEY (e.g. BOT__BACKFILL__WORKERS)"
            )
        found.append((parts, name, raw))
    return found


def _field_is_string(path: tuple[str, ...]) -> bool | None:
    """Whether the key at ``path`` holds a string (None: no such key)."""
    model: type[BaseModel] = Settings
    for index, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if index == len(path) - 1:
                return False
            model = annotation
            continue
        if index != len(path) - 1:
            return None
        return annotation in (str, SecretStr) or (
            getattr(annotation, "__origin__", None) is Literal
        )
    return None


def _parse_env_value(path: tuple[str, ...], name: str, raw: str) -> Any:
    is_string = _field_is_string(path)
    if is_string is None:
        raise ConfigError(
            f"environment {name}: {'.'.join(path)} is not a config key "
            "(check the spelling against README's config reference)"
        )
    if is_string:
        return raw
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            f"environment {name} = {raw!r}: expected a TOML literal such as 7, true or "
            '["USDC"] for this non-string key'
        ) from None


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} is not a table in the config file")
        node = child
    node[path[-1]] = value


class LoadedConfig(BaseModel):
    """The validated settings plus what the bot needs to know about where they came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    settings: Settings
    path: Path
    confirmations_set: bool
    origins: dict[str, str] = {}  # key -> "default", "config file" or "environment NAME"
    backfill_from: int | None = None  # BACKFILL_START_HEIGHT: `bot backfill --from` default
    backfill_to: int | None = None  # BACKFILL_END_HEIGHT: `bot backfill --to` default

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def database_path(self) -> Path:
        return self.settings.database_path(self.base_dir)


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read ``path``, apply ``BOT__…`` overrides from ``environ`` and validate everything."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found: pass --config PATH or create it from the README"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    in_file = set(_leaf_paths(data))
    env_keys: dict[tuple[str, ...], str] = {}
    for parts, name, raw in _env_overrides(environ):
        _set_path(data, parts, _parse_env_value(parts, name, raw))
        env_keys[parts] = name
    for name, parts in SEED_ALIASES.items():  # a BOT__ variable wins over its alias
        if name in environ and parts not in env_keys:
            _set_path(data, parts, _parse_env_value(parts, name, environ[name]))
            env_keys[parts] = f"{name} (alias of {'.'.join(parts)})"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, data, env_keys)) from None
    confirmations_set = "confirmations" in data.get("live", {})
    origins = {}
    for parts in _leaf_paths(settings.model_dump(mode="python")):
        key = ".".join(parts)
        if parts in env_keys:
            origins[key] = f"environment {env_keys[parts]}"
        else:
            origins[key] = "config file" if parts in in_file else "default"
    return LoadedConfig(
        settings=settings,
        path=path.resolve(),
        confirmations_set=confirmations_set,
        origins=origins,
        backfill_from=_height(environ, "BACKFILL_START_HEIGHT"),
        backfill_to=_height(environ, "BACKFILL_END_HEIGHT"),
    )


SEED_ALIASES: dict[str, tuple[str, ...]] = {
    "BACKFILL_WORKERS": ("backfill", "workers"),
    "BACKFILL_BATCH_SIZE": ("backfill", "batch_blocks"),
}
"""Seed 000's environment names, honoured as aliases (SPEC §10)."""


def _leaf_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            found += _leaf_paths(value, (*prefix, str(key)))
        else:
            found.append((*prefix, str(key)))
    return found


def _height(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise ConfigError(f"environment {name} = {raw!r}: expected a block number (0 or more)")
    return int(raw)


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    return load(path, environ).settings


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data with every secret replaced, safe to print or log."""
    data = settings.model_dump(mode="python")
    alpaca = data["broker"]["alpaca"]
    for key in ("api_key_id", "api_secret"):
        secret: SecretStr = getattr(settings.broker.alpaca, key)
        alpaca[key] = "<redacted>" if secret.get_secret_value() else ""
    data["metrics"]["token"] = "<redacted>" if settings.metrics.token.get_secret_value() else ""
    data["accumulator"]["threshold_shares"] = format(settings.accumulator.threshold_shares, "f")
    data["chain"]["ws_url"] = redact_url(settings.chain.ws_url)
    data["chain"]["http_url"] = redact_url(settings.chain.http_url)
    data["chain"]["fallback_urls"] = [redact_url(url) for url in settings.chain.fallback_urls]
    webhook = settings.alerts.webhook_url.get_secret_value()
    data["alerts"]["webhook_url"] = redact_url(webhook)
    return data


def redact_url(url: str) -> str:
    """Hide credentials that providers embed in URLs (user:pass@, API keys in path or query)."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<redacted>"
    # the authority ends at the first "/", "?" or "#": a key may hide in any part after it
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    host, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    host = host.rpartition("@")[2]
    return f"{scheme}://{host}{'/<redacted>' if tail.strip('/') else ''}"
