"""`python -m bench [--quick] [--n 100,1000] [--long] [--load quiet,busy] [--only storm,raw,single,kopf,...]`.

One run, one test bed: the control plane and PostgreSQL are started once and every scenario runs
against them in turn (storms per N: operator, raw, single worker, the kopf peer; then the real sample procedures;
then cache; then idle), so the ratios in the report compare numbers taken on the same machine, in the
same state, minutes apart. Results go to `bench/results/<name>.{json,md,png}` (name: `quick` or `full`).

`--load quiet,busy` runs the whole scenario set twice, the second time with the bench's own background
load (bench/load.py, `--busy-cpus` CPUs' worth), and writes one results file per set
(`<name>-quiet.*`, `<name>-busy.*`), each with the machine's state. `--long` adds N=10,000 to the storm
sizes: the scale curve (`<name>-scale.png`) is the operator's create phase at every N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCENARIOS = ("storm", "raw", "single", "kopf", "sample", "cache", "idle")
RESULTS = Path(__file__).resolve().parent / "results"

log = logging.getLogger("bench")


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("give positive integers, e.g. 100,1000")
    return values


def _csv_scenarios(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in values if v not in SCENARIOS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SCENARIOS)}")
    return values


def _csv_loads(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values or any(v not in ("quiet", "busy") for v in values):
        raise argparse.ArgumentTypeError("choose from quiet, busy")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke-size run: N=50, cache 1,000, idle 30 s, sample N=10"
    )
    p.add_argument("--n", type=_csv_ints, help="storm sizes (default 100,1000)")
    p.add_argument(
        "--kopf-n",
        type=_csv_ints,
        default=[100, 1000],
        help="storm sizes the kopf peer runs at (default 100,1000)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        help="also storm a `baseline` subject: the operator run from this source directory (another "
        "revision's src/, e.g. from `git archive REV src | tar -x -C DIR`), before/after in one run",
    )
    p.add_argument("--long", action="store_true", help="add N=10,000 to the storm sizes (the scale curve)")
    p.add_argument(
        "--load",
        type=_csv_loads,
        default=["quiet"],
        help="scenario sets: quiet (nothing added) and/or busy (the bench's own background load)",
    )
    p.add_argument(
        "--busy-cpus",
        type=float,
        default=1.0,
        help="CPUs' worth of background load in the busy set, spread over one process per CPU (default 1)",
    )
    p.add_argument(
        "--only", type=_csv_scenarios, help=f"scenarios to run (default all: {','.join(SCENARIOS)})"
    )
    p.add_argument(
        "--concurrency", type=int, default=8, help="operator workers = endpoint concurrency = raw concurrency"
    )
    p.add_argument(
        "--single-rps",
        type=float,
        default=1.0,
        help="rps of the single-worker baseline (default 1: the reference operator's chart value)",
    )
    p.add_argument(
        "--single-n",
        type=int,
        help="cap on N for the single-worker baseline: at 1 rps its throughput is steady after a few "
        "dozen objects (default 100; quick: 20)",
    )
    p.add_argument("--apply-concurrency", type=int, default=32, help="requests the driver keeps in flight")
    p.add_argument(
        "--cache-size", type=int, help="Databases (and Secrets) for the cache scenario (default 10,000)"
    )
    p.add_argument(
        "--initial-list",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=["list", "watch-list"],
        help="how the start-up scenario's operator fills its caches, each measured in turn "
        "(list: paged LIST then WATCH; watch-list: one streaming WATCH with sendInitialEvents)",
    )
    p.add_argument("--idle-seconds", type=float, help="idle window (default 300)")
    p.add_argument("--sample-n", type=int, help="storm size with the real sample procedures (default 100)")
    p.add_argument("--name", help="results file name (default: quick or full)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    p.add_argument(
        "--operator-log-level",
        choices=("info", "debug", "trace"),
        default="info",
        help="dbaasctl's log level; trace logs every API request (slows it down: for diagnosis only)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="run every operator under cProfile (<name>-profiles/*.prof and .txt); slows it: numbers are "
        "then not comparable",
    )
    p.add_argument(
        "--keep-logs", action="store_true", help="copy every subject's log next to the results (<name>-logs/)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def options(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(args.quick)
    return {
        "n": sorted({*(args.n or ([50] if quick else [100, 1000])), *([10_000] if args.long else [])}),
        "only": args.only or list(SCENARIOS),
        "concurrency": args.concurrency,
        "apply_concurrency": args.apply_concurrency,
        "cache_size": args.cache_size or (1000 if quick else 10_000),
        "idle_seconds": args.idle_seconds or (30.0 if quick else 300.0),
        "sample_n": args.sample_n or (10 if quick else 100),
        "single_rps": args.single_rps,
        "single_n": args.single_n or (20 if quick else 100),
        "operator_log_level": args.operator_log_level,
        "profiled": bool(args.profile),
        "loads": list(dict.fromkeys(args.load)),
        "kopf_n": args.kopf_n,
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "busy_cpus": args.busy_cpus,
        "initial_list": args.initial_list,
    }


async def run(
    opts: dict[str, Any], sets: list[ScenarioSet], logs_dir: Path | None, profile_dir: Path | None
) -> None:
    from bench.load import BackgroundLoad
    from bench.world import World

    log.info("starting the test bed (control plane + PostgreSQL)")
    world = await asyncio.to_thread(World.start)
    world.operator_log_level = opts["operator_log_level"]
    if opts["baseline_src"]:
        world.baseline_src = Path(opts["baseline_src"])
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        world.profile_dir = profile_dir
    try:
        for i, scenario_set in enumerate(sets):
            results = scenario_set.results
            results["machine"] = world.machine()
            background = BackgroundLoad(opts["busy_cpus"] if scenario_set.load == "busy" else 0.0)
            log.info("scenario set %s (background load: %s CPUs)", scenario_set.name, background.cpus)
            background.start()
            try:
                # Start-up, sample procedures and idle once, in the first set: they measure the operator
                # alone, not its share of a contended machine.
                await _run_set(world, opts, scenario_set, first=i == 0, background=background)
            finally:
                results["load"] = background.state()
                background.stop()
                results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
                scenario_set.save()
    finally:
        if logs_dir is not None:
            shutil.copytree(
                world.workdir, logs_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.json")
            )
        await asyncio.to_thread(world.close)


async def _run_set(
    world: Any, opts: dict[str, Any], scenario_set: ScenarioSet, *, first: bool, background: Any
) -> None:
    from bench.cache import run_cache
    from bench.idle import run_idle
    from bench.storm import run_storm

    results, save = scenario_set.results, scenario_set.save
    only = opts["only"]
    pairs = (("operator", "storm"), ("raw", "raw"), ("single", "single"), ("kopf", "kopf"))
    kinds = [k for k, key in pairs if key in only]
    if opts["baseline_src"] and "storm" in only:
        kinds.insert(kinds.index("operator") + 1, "baseline")
    single_sizes: set[int] = set()
    for n in opts["n"]:
        for kind in kinds:
            size = min(n, opts["single_n"]) if kind == "single" else n
            if kind == "single":
                if size in single_sizes:
                    continue  # its capped size already ran: the same measurement again
                single_sizes.add(size)
            if kind == "kopf" and n not in opts["kopf_n"]:
                continue  # the peer is compared at its own sizes; the other sizes are the scale curve
            storm = await run_storm(
                world,
                kind,
                size,
                concurrency=opts["concurrency"],
                apply_concurrency=opts["apply_concurrency"],
                single_rps=opts["single_rps"],
            )
            results["storms"].append(storm.to_json())
            results["load"] = background.state()
            save()
    if not first:
        return
    if "sample" in only:
        for kind in ("operator", "raw"):
            storm = await run_storm(
                world,
                kind,
                opts["sample_n"],
                procedures="sample",
                concurrency=opts["concurrency"],
                apply_concurrency=opts["apply_concurrency"],
            )
            results["storms"].append(storm.to_json())
            save()
    if "cache" in only:
        results["startup"] = await run_cache(
            world, opts["cache_size"], initial_lists=tuple(opts["initial_list"])
        )
        results["cache"] = results["startup"][0]
        save()
    if "idle" in only:
        results["idle"] = await run_idle(world, opts["idle_seconds"])
        save()


class ScenarioSet:
    """One results file: the scenarios run under one machine state (quiet, or the background load)."""

    def __init__(self, name: str, load: str, opts: dict[str, Any], out: Path) -> None:
        self.name, self.load, self.out = name, load, out
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "mode": name,
            "load_state": load,
            "started": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "options": opts,
            "storms": [],
            "cache": None,
            "idle": None,
        }

    def save(self) -> dict[str, Path]:
        from bench.goals import goal_rows, scale_rows
        from bench.report import goals, peer_ratios, write_report

        results = self.results
        results["elapsed_s"] = round(time.monotonic() - self.started, 1)
        results["goals"] = goals(results)
        results["goal_rows"] = goal_rows(results)
        results["scale"] = scale_rows(results)
        results["kopf_ratios"] = peer_ratios(results, "kopf")
        return write_report(results, self.out, self.name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    opts = options(args)
    name = args.name or ("quick" if args.quick else "full")
    loads: list[str] = list(dict.fromkeys(args.load))
    sets = [
        ScenarioSet(name if loads == ["quiet"] else f"{name}-{load}", load, opts, args.out) for load in loads
    ]
    code = 0
    try:
        logs = args.out / f"{name}-logs" if args.keep_logs else None
        profiles = args.out / f"{name}-profiles" if args.profile else None
        asyncio.run(run(opts, sets, logs, profiles))
    except KeyboardInterrupt:
        log.warning("interrupted: writing what was measured so far")
        code = 130
    except Exception:
        log.exception("benchmark failed: writing what was measured so far")
        code = 1
    failures = []
    for scenario_set in sets:
        paths = scenario_set.save()
        print((args.out / f"{scenario_set.name}.md").read_text(encoding="utf-8"))
        print(json.dumps({k: str(v) for k, v in paths.items()}), file=sys.stderr)
        failures += [s for s in scenario_set.results["storms"] if s.get("failure")]
    return code or (2 if failures else 0)
