"""The one exception tree (bot/errors.py): every error class the bot defines lives there, and its
branch says what ``run`` does with it (retry, exit 3, stop)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import bot
from bot import errors
from bot.errors import (
    BotError,
    ConfigError,
    ConnectionLost,
    FatalError,
    MalformedAnswer,
    ProviderMismatchError,
    QueueRaceError,
    RpcError,
    RpcUnavailableError,
    StaleStreamError,
    SubscriptionLost,
    TransientError,
    is_provider_trouble,
)

PENDING_MOVE: set[str] = set()  # every exception class lives in bot/errors.py


def _bot_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(bot.__path__, prefix="bot.")
        if not info.name.startswith("bot.__main__")
    ]


def test_every_exception_class_of_the_bot_is_defined_in_errors() -> None:
    outside = set()
    for name in _bot_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            is_error = inspect.isclass(value) and issubclass(value, BaseException)
            if is_error and value.__module__ == name and name != "bot.errors":
                outside.add(f"{name}.{attr}")
    assert outside <= PENDING_MOVE, sorted(outside - PENDING_MOVE)


def test_every_class_in_errors_is_a_bot_error_drawn_in_the_docstring() -> None:
    doc = errors.__doc__ or ""
    classes = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and value.__module__ == "bot.errors"
    ]
    assert len(classes) > 30
    for cls in classes:
        assert issubclass(cls, BotError), cls
        assert cls.__name__ in doc, f"{cls.__name__} is not drawn in the tree"


def test_old_import_paths_still_work() -> None:
    from bot.chain.parse import MalformedAnswer as FromParse
    from bot.chain.ws import ConnectionLost as FromWs
    from bot.chain.ws import RpcError as FromWsRpc

    assert (FromParse, FromWs, FromWsRpc) == (MalformedAnswer, ConnectionLost, RpcError)


@pytest.mark.parametrize(
    "error",
    [
        RpcError("internal error", code=-32603),
        RpcError("Too many requests, rate limit exceeded", code=-32005),
        RpcUnavailableError("Bad Gateway", http_status=502),
        ConnectionLost("refused"),
        SubscriptionLost(ConnectionLost("closed by peer")),
        MalformedAnswer("eth_getLogs answered null"),
        StaleStreamError("quiet"),
        QueueRaceError("row 3 is no longer pending"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_provider_trouble_is_waited_out(error: BotError) -> None:
    assert is_provider_trouble(error)
    assert not isinstance(error, ConfigError | FatalError)


def test_a_malformed_answer_is_transient_not_a_value_error() -> None:
    assert issubclass(MalformedAnswer, TransientError)
    assert not issubclass(MalformedAnswer, ValueError)


@pytest.mark.parametrize("error", [ConfigError("x"), ProviderMismatchError("x"), FatalError("x")])
def test_config_and_fatal_errors_are_not_provider_trouble(error: BotError) -> None:
    assert not is_provider_trouble(error)
