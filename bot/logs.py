"""Logging via loguru: human-readable on a TTY, JSON lines with ``--log-json``."""

from __future__ import annotations

import sys

from loguru import logger


def configure(*, json_lines: bool = False, level: str = "INFO") -> None:
    """Send logs to stderr; stdout stays clean for command output (``--json``)."""
    logger.remove()
    if json_lines:
        logger.add(sys.stderr, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level,
            colorize=sys.stderr.isatty(),
            backtrace=False,
            diagnose=False,
            format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}",
        )
