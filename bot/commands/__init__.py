"""Command handlers wired into the CLI (``bot.cli``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bot.commands import admin, demo, doctor, inspect, service

Handler = Callable[[argparse.Namespace], int]
CommandFactory = Callable[[str, Handler, str], argparse.ArgumentParser]


def register(command: CommandFactory) -> None:
    """Add every command of this package to the CLI."""
    service.register(command)
    inspect.register(command)
    admin.register(command)
    demo.register(command)
    doctor.register(command)
