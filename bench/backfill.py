"""(a) Catch-up: ``bot backfill`` next to the raw ``eth_getLogs`` of the same anvil chain.

One anvil serves the cached chain (40,000 ``TakeOrderV2`` over ~2,000 blocks, ~10 % ours). Each
run, in order: the raw fetch (aiohttp + ``json.loads``, 500-block windows, 4 in flight), ``bot
backfill`` as a whole process on a fresh database (the bot's default workers and window), the
same again with nothing left to do (the fixed cost of a process: imports, connect, migrations).
A plain web3.py ``get_logs`` loop runs once (it is 30+ s). The phases come from the bot's own log
lines: start-up → ``database … ready`` → fetch+store → ``backfill done`` → drain + exit.
"""

from __future__ import annotations

import time

from bench import anvil_chain, botproc, rawfetch
from bench.context import Context
from bench.report import Row, Section, log, median, ratio
from bot.devnet.deploy import Deployment
from bot.devnet.rpc import JsonRpcClient

NAME = "backfill"
TITLE = "Catch-up: bot backfill vs raw eth_getLogs"
PRE_HEDGING_EXECUTIONS = 2985  # issue 9: the same 40k chain before the net was hedged per pass


def run(ctx: Context) -> Section:
    takes = ctx.size(40_000, 1_000)
    state, deployment_file = anvil_chain.build(ctx.cache, takes)
    deployment = Deployment.load(deployment_file)
    raws: list[float] = []
    bots: list[botproc.BotRun] = []
    drain_after: list[botproc.BotRun] = []  # backfill.drain_behind = false: drain after fetch
    fixed: list[float] = []
    counts: dict[str, int] = {}
    began = time.monotonic()
    with anvil_chain.load(state, ctx.work) as anvil, JsonRpcClient(anvil.http_url) as rpc:
        log(f"anvil loaded {state.name} in {time.monotonic() - began:.1f} s")
        end = int(rpc.call("eth_blockNumber"), 16)
        start = deployment.deployment_block
        for number in range(ctx.runs):
            r = rawfetch.child("raw", anvil.http_url, deployment.orderbook, start, end, 500, 4)
            raws.append(r["seconds"])
            configs = []
            for variant in ("", "-after"):
                folder = ctx.work / f"backfill-{number}{variant}"
                folder.mkdir()
                configs.append(
                    botproc.write_config(
                        folder,
                        http_url=anvil.http_url,
                        ws_url=anvil.ws_url,
                        orderbook=deployment.orderbook,
                        owner=deployment.order_owner,
                        deployment_block=deployment.deployment_block,
                        db=folder / "bot.db",
                    )
                )
            config, db = configs[0], configs[0].parent / "bot.db"
            drain_after.append(
                botproc.run_backfill(configs[1], env={"BOT__BACKFILL__DRAIN_BEHIND": "false"})
            )
            bot = botproc.run_backfill(config)
            bots.append(bot)
            again = botproc.run_backfill(config)
            fixed.append(again.wall_s)
            counts = botproc.db_counts(db)
            if bot.summary["events"] != r["events"]:
                raise SystemExit(f"bot saw {bot.summary['events']} events, raw {r['events']}")
            log(
                f"run {number + 1}: raw {r['seconds']:.2f} s, bot {bot.wall_s:.2f} s "
                f"{bot.phases()}, drain after the fetch {drain_after[-1].wall_s:.2f} s "
                f"{drain_after[-1].phases()}, nothing to do {again.wall_s:.2f} s, {counts}"
            )
        w3 = rawfetch.child("web3", anvil.http_url, deployment.orderbook, start, end, 1000)
        log(f"web3 loop: {w3['seconds']:.2f} s")
    events = int(bots[0].summary["events"])
    raw_s = median(raws)
    bot_s = median(b.wall_s for b in bots)
    fixed_s = median(fixed)
    work_s = bot_s - fixed_s
    phases = [b.phases() for b in bots]
    fetch_store = median(p.get("fetch_store_s", float("nan")) for p in phases)
    after = median(p.get("after_backfill_s", float("nan")) for p in phases)
    startup = median(p.get("startup_s", float("nan")) for p in phases)
    after_work_s = median(b.wall_s for b in drain_after) - fixed_s
    store_alone = median(b.phases().get("fetch_store_s", float("nan")) for b in drain_after)
    rows = [
        Row(
            f"catch-up of {events:,} logs (blocks {start}-{end}): `bot backfill` − fixed cost",
            f"{work_s:.2f} s",
            f"raw eth_getLogs {raw_s:.2f} s",
            ratio(work_s, raw_s),
            "≤ 2× (29.5× before)",
        ),
        Row(
            "… the same with `backfill.drain_behind = false` (the drain after the fetch)",
            f"{after_work_s:.2f} s",
            f"raw eth_getLogs {raw_s:.2f} s",
            ratio(after_work_s, raw_s),
            "",
        ),
        Row(
            "fetch + store phase alone (database ready → backfill done, drain_behind = false)",
            f"{store_alone:.2f} s",
            f"raw eth_getLogs {raw_s:.2f} s",
            ratio(store_alone, raw_s),
            "≤ 1.5×",
        ),
        Row(
            "fetch + store phase with the drain behind it (defaults)",
            f"{fetch_store:.2f} s",
            f"raw eth_getLogs {raw_s:.2f} s",
            ratio(fetch_store, raw_s),
            "",
        ),
        Row(
            "orders placed for the catch-up (executions)",
            f"{counts.get('executions', 0):,}",
            f"{PRE_HEDGING_EXECUTIONS:,} before the net hedging",
            "",
            "a handful",
        ),
        Row(
            "plain web3.py `get_logs` loop (1,000-block windows, one run)",
            f"{w3['seconds']:.2f} s",
            f"raw eth_getLogs {raw_s:.2f} s",
            ratio(w3["seconds"], raw_s),
            "(reference)",
        ),
    ]
    per_run = "\n".join(
        f"| {i + 1} | {raws[i]:.2f} | {b.wall_s:.2f} | {fixed[i]:.2f} | "
        f"{b.phases().get('startup_s', 0):.2f} | {b.phases().get('fetch_store_s', 0):.2f} | "
        f"{b.phases().get('after_backfill_s', 0):.2f} | {b.rss_mb:.0f} |"
        for i, b in enumerate(bots)
    )
    body = f"""Chain: {events:,} `TakeOrderV2` logs ({takes:,} takes, 20 per transaction, one block
each), {counts.get("trades", 0):,} of them ours (trades booked), cached in `{state.name}` and served
by one anvil 1.7.1 (`--load-state`, no mining). The bot runs with its default `[backfill]`
settings (as a new user would), and again on a fresh database with `backfill.drain_behind =
false` (the drain after the whole fetch, so the fetch + store phase is measured alone); the raw
reference uses 500-block windows, 4 in flight. Runs interleave the three.

| run | raw s | bot s | nothing to do s | start-up s | fetch+store s | drain+exit s | RSS MB |
|---|---|---|---|---|---|---|---|
{per_run}

Drain after the fetch: {", ".join(f"{b.wall_s:.2f} s {b.phases()}" for b in drain_after)}.

Medians: start-up {startup:.2f} s, fetch+store {fetch_store:.2f} s, drain + exit {after:.2f} s;
database after the catch-up: {counts}.
"""
    return Section(NAME, TITLE, rows, body)
