"""Where the time of a catch-up goes: ``bot backfill`` of the cached 40k chain (fresh database)
under cProfile, whole process; the top 15 functions by cumulative and by own time.

cProfile slows pure-Python code more than C (JSON, SQLite, keccak), so it over-weights Python
frames; use the shares, not the absolute seconds. When ``py-spy`` is installed (in the venv or
on PATH) a second run is sampled by it (100 Hz, low overhead, whole-process wall time
including the idle wait on the node) and summarised per function: the share of samples in which
it is on the stack (inclusive) and at the top (own).
"""

from __future__ import annotations

import io
import pstats
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from bench import anvil_chain, botproc
from bench.context import Context
from bench.report import Row, Section, log
from bot.devnet.deploy import Deployment

NAME = "profile"
TITLE = "Profile of a catch-up (cProfile, bot backfill of the 40k chain)"
TOP = 15


def _tidy(text: str) -> str:
    """Shorten file paths: site-packages/…, the project root, the stdlib."""
    text = re.sub(r"\S*/site-packages/", "", text)
    text = text.replace(str(botproc.ROOT) + "/", "")
    stdlib = str(Path(sys.base_prefix) / "lib")
    return re.sub(re.escape(stdlib) + r"/python3\.\d+/", "", text)


_GENERIC = re.compile(r"<frozen |builtins\.exec|<string>|runpy|builtins\.__import__|\(<module>\)")


def top(path: Path, key: str) -> str:
    """The top functions by ``key``; start-up and interpreter frames (imports, runpy, module
    bodies) hidden so the catch-up's own frames show."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats(key).print_stats(TOP + 60)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    kept = [lines[start]] + [
        line.rstrip() for line in lines[start + 1 :] if line.strip() and not _GENERIC.search(line)
    ]
    return _tidy("\n".join(kept[: TOP + 1]))


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def spy_summary(raw: Path) -> str:
    """Inclusive and own shares per function from py-spy's raw (collapsed) stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return "(no samples)"
    rows = [
        "The project's functions by share of samples on the stack:",
        "",
        "| function | on stack % | own % |",
        "|---|---|---|",
    ]
    shown = 0
    for frame, count in inclusive.most_common():
        if "(bot/" not in _tidy(frame) or _GENERIC.search(frame):
            continue  # the project's own functions: where a fix would go
        rows.append(
            f"| `{_tidy(frame)}` | {100 * count / total:.1f} | {100 * own[frame] / total:.1f} |"
        )
        shown += 1
        if shown == TOP:
            break
    rows += [
        "",
        f"Top {TOP} by own time (the leaf frame):",
        "",
        "| function | own % |",
        "|---|---|",
    ]
    for frame, count in own.most_common(TOP):
        rows.append(f"| `{_tidy(frame)}` | {100 * count / total:.1f} |")
    return f"{total:,} samples.\n\n" + "\n".join(rows)


def _phases(run: botproc.BotRun) -> str:
    return ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in run.phases().items())


def run(ctx: Context) -> Section:
    takes = ctx.size(40_000, 1_000)
    state, deployment_file = anvil_chain.build(ctx.cache, takes)
    deployment = Deployment.load(deployment_file)
    folder = ctx.work / "profile"
    folder.mkdir()
    db = folder / "bot.db"
    profile = folder / "backfill.prof"
    with anvil_chain.load(state, ctx.work) as anvil:
        config = botproc.write_config(
            folder,
            http_url=anvil.http_url,
            ws_url=anvil.ws_url,
            orderbook=deployment.orderbook,
            owner=deployment.order_owner,
            deployment_block=deployment.deployment_block,
            db=db,
        )
        bot = botproc.run_backfill(config, profile=profile)
        spy_text = "py-spy is not installed: not sampled."
        spy = py_spy()
        if spy is not None:
            db.unlink()
            for extra in folder.glob("bot.db-*"):
                extra.unlink()
            raw = folder / "stacks.txt"
            wrapper = [spy, "record", "--format", "raw", "--rate", "100", "-o", str(raw), "--"]
            sampled = botproc.run_backfill(config, wrapper=wrapper)
            spy_text = (
                f"Wall {sampled.wall_s:.1f} s under py-spy, phases {_phases(sampled)}. "
                + spy_summary(raw)
            )
    total = pstats.Stats(str(profile)).total_tt  # type: ignore[attr-defined]
    log(f"profiled bot backfill: {bot.wall_s:.1f} s wall, {total:.1f} s profiled, {bot.phases()}")
    phases = bot.phases()
    rows = [
        Row(
            f"`bot backfill` of {bot.summary['events']:,} logs under cProfile",
            f"{bot.wall_s:.1f} s wall",
            f"fetch+store {phases.get('fetch_store_s', 0):.1f} s, "
            f"drain + exit {phases.get('after_backfill_s', 0):.1f} s",
            "",
            "",
        )
    ]
    body = f"""Total profiled time {total:.1f} s (the anvil serving the logs is another process:
not in it).

Top {TOP} by cumulative time:

```
{top(profile, "cumulative")}
```

Top {TOP} by own time (tottime):

```
{top(profile, "tottime")}
```

### py-spy (sampling)

{spy_text}
"""
    return Section(NAME, TITLE, rows, body)
