"""Shared fixtures: a real anvil (session-wide, or fresh per test with a deployment) and db_path.

Fixtures that need anvil fail (never skip) when the binary is missing: ``npm ci`` installs it.
When a test using anvil fails, the tail of anvil's log is attached to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from bot.devnet.anvil import AnvilProcess
from bot.devnet.deploy import deploy
from bot.devnet.rpc import JsonRpcClient
from tests.support.chain import Chain

_ANVILS = pytest.StashKey[list[AnvilProcess]]()
_SESSION_ANVILS: list[AnvilProcess] = []
_SESSION_FIXTURES = {"anvil_session", "session_chain"}


def _attach(request: pytest.FixtureRequest, anvil: AnvilProcess) -> None:
    request.node.stash.setdefault(_ANVILS, []).append(anvil)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        attached: list[AnvilProcess] = item.stash.get(_ANVILS, [])
        anvils = [*attached]
        if _SESSION_FIXTURES & set(getattr(item, "fixturenames", ())):
            anvils.extend(_SESSION_ANVILS)
        for anvil in anvils:
            report.sections.append((f"anvil log tail ({anvil.log_path})", anvil.log_tail()))
    return report


@pytest.fixture(scope="session")
def anvil_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilProcess]:
    """One anvil for the whole session (do not rewind it: other tests share it)."""
    anvil = AnvilProcess(tmp_path_factory.mktemp("anvil-session") / "anvil.log")
    with anvil:
        _SESSION_ANVILS.append(anvil)
        yield anvil
    _SESSION_ANVILS.remove(anvil)


@pytest.fixture(scope="session")
def session_chain(anvil_session: AnvilProcess) -> Iterator[Chain]:
    """The test contracts deployed once on the session anvil (append-only use)."""
    with JsonRpcClient(anvil_session.http_url) as rpc:
        yield Chain(anvil_session, rpc, deploy(rpc))


@pytest.fixture
def anvil(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnvilProcess]:
    """A fresh anvil for this test (starts in well under 0.1 s)."""
    process = AnvilProcess(tmp_path / "anvil.log")
    _attach(request, process)
    with process:
        yield process


@pytest.fixture
def chain(anvil: AnvilProcess) -> Iterator[Chain]:
    """A fresh anvil with tokens and orderbook deployed, funded and approved (~0.15 s)."""
    with JsonRpcClient(anvil.http_url) as rpc:
        yield Chain(anvil, rpc, deploy(rpc))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"
