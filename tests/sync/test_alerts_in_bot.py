"""Alerts from a running bot reach the operator's webhook (SPEC §10): a broker that does not
answer at start is alerted once (repeats are not sent again), and cleared once it answers."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.devnet.fake_alpaca import FakeAlpaca
from tests.support.botproc import BotProcess, wait_for, write_config
from tests.support.chain import Chain


class Receiver:
    """A local webhook: every POSTed JSON object, in arrival order."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def kinds(self) -> list[str]:
        return [str(a["kind"]) for a in list(self.alerts)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_broker_unreachable_is_alerted_once_then_cleared(chain: Chain, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.thread.start()
    port = _free_port()
    extra = (
        f'\n[alerts]\nwebhook_url = "{receiver.url}"\n'
        '\n[broker]\nkind = "alpaca"\n'
        f'\n[broker.alpaca]\nbase_url = "http://127.0.0.1:{port}"\n'
        'api_key_id = "fake-key-id"\napi_secret = "fake-secret"\ntimeout_s = 0.5\n'
    )
    config = write_config(
        tmp_path / "bot.toml",
        chain.deployment,
        ws_url=chain.ws_url,
        database=tmp_path / "bot.db",
        first_event_timeout_s=0.5,
        extra=extra,
    )
    bot = BotProcess(config).start()
    try:
        wait_for(
            lambda: "broker_unreachable" in receiver.kinds(),
            timeout_s=60,
            what="the broker_unreachable alert",
            on_timeout=bot.log_tail,
        )
        bot.wait_for_log("live: following heads", timeout_s=60)
        with FakeAlpaca().serve_in_thread(port=port):
            wait_for(
                lambda: "broker_unreachable_cleared" in receiver.kinds(),
                timeout_s=60,
                what="the broker_unreachable_cleared alert",
                on_timeout=bot.log_tail,
            )
            assert bot.stop() == 0, bot.log_tail()
    finally:
        if bot.running():
            bot.kill()
        receiver.server.shutdown()
        receiver.server.server_close()
    alerts = [a for a in receiver.alerts if a["kind"].startswith("broker_unreachable")]
    assert [a["kind"] for a in alerts] == ["broker_unreachable", "broker_unreachable_cleared"]
    assert all({"kind", "message", "at"} <= set(a) for a in alerts)
    log = bot.log_path.read_text()
    assert "SECRET-TOKEN" not in log  # the webhook's token never reaches the logs
