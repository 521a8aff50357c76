"""Command line: ``bot [--config PATH] COMMAND …`` (SPEC §9).

Exit codes: 0 ok, 1 runtime error, 2 usage, 3 config error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from loguru import logger

from bot import __version__, logs
from bot.commands import register as register_commands
from bot.config import LoadedConfig, load, redacted
from bot.devnet.cli import add_devnet_parser
from bot.errors import BotError, ConfigError

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3

Handler = Callable[[argparse.Namespace], int]


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config`` and ``--log-json`` are accepted before and after the command."""
    default: object = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        type=Path,
        default=default if not top else Path("config.toml"),
        help="config file (default: ./config.toml)",
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log JSON lines to stderr instead of human-readable text",
    )


def load_config(args: argparse.Namespace) -> LoadedConfig:
    return load(args.config)


def _check_config(args: argparse.Namespace) -> int:
    loaded = load_config(args)
    print(json.dumps(redacted(loaded.settings), indent=2))
    print("where each value came from:", file=sys.stderr)
    for key, origin in sorted(loaded.origins.items()):
        print(f"  {key}: {origin}", file=sys.stderr)
    confirmations = loaded.settings.live.confirmations
    if confirmations is None:
        print(
            "note: live.confirmations is not set; only a devnet (chain id 31337) may run "
            "without it",
            file=sys.stderr,
        )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot",
        description="Hedges Raindex OrderBook fills of tokenized equities at a stock broker.",
    )
    parser.add_argument("--version", action="version", version=f"bot {__version__}")
    _common_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common_options(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    command("check-config", _check_config, "print the effective config, secrets redacted")
    register_commands(command)
    add_devnet_parser(commands)
    return parser


def _sigterm_as_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM (systemd, docker stop, kill) stops a command as cleanly as Ctrl-C does
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(json_lines=bool(getattr(args, "log_json", False)))
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BotError as exc:
        logger.error("{}: {}", type(exc).__name__, exc)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_OK
