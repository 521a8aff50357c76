"""``python -m bench``: run the benchmarks and write ``bench/RESULTS.md``.

    python -m bench [--only NAME ...] [--quick] [--runs N] [--out PATH] [--cache DIR]

Benchmarks: backfill, decode, inserts, drain, memory, live, profile (in that order). ``--only``
runs some of them and replaces only their sections (the others are kept from ``results.json``
beside the output). ``--quick`` uses small sizes (a smoke run: the figures mean nothing).
``--runs`` takes the median of N runs where a benchmark repeats (default 3; 1 with --quick).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.context import Context
from bench.report import ORDER, Section, log, machine, save

MODULES = {
    "backfill": "bench.backfill",
    "decode": "bench.decoding",
    "inserts": "bench.inserts",
    "drain": "bench.drain",
    "memory": "bench.memory",
    "live": "bench.live",
    "profile": "bench.profiling",
}
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help=", ".join(ORDER))
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--runs", type=int, default=None, help="median of N runs (default 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    default_cache = Path(tempfile.gettempdir()) / "bot-bench-cache"
    parser.add_argument("--cache", type=Path, default=default_cache, help="built chains")
    parser.add_argument(
        "--no-install", action="store_true", help="never pip-install side venvs (faster-eth-abi)"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    names = args.only or list(ORDER)
    failed: list[str] = []
    for name in names:
        options = (" --quick" if args.quick else "") + (f" --runs {runs}" if args.runs else "")
        started = machine()  # the load when this benchmark began
        work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        log(f"== {name} (load {started['load average (1/5/15 min) at start']})")
        began = time.monotonic()
        try:
            module = importlib.import_module(MODULES[name])
            section: Section = module.run(
                Context(args.quick, runs, args.cache, work, install=not args.no_install)
            )
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        finally:
            shutil.rmtree(work, ignore_errors=True)
        section.machine = started
        section.when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        section.options = options
        section.body += f"\n_This benchmark took {time.monotonic() - began:.0f} s._\n"
        save(args.out, [section])
        log(f"== {name} done in {time.monotonic() - began:.0f} s; {args.out} written")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
