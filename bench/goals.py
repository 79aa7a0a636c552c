"""The performance goals as rows a program can read: one row per goal, phase, N and subject.

Every row carries `goal`, `metric`, `phase`, `n`, `subject`, `baseline`, `value`, `baseline_value`,
`ratio` (value / baseline_value, or value / bound for absolute goals), `op` and `bound` (the goal is
`ratio op bound`), `met` (None when not measured) and `load` (`quiet`, or `busy` when the bench kept
the machine busy with its own background load). Ratios compare numbers of the same run only.

The scale curve (`scale_rows`) is the operator's create phase at every N of the run: throughput, p99
apply→Ready latency, API requests and CPU per Database, peak RSS.
"""

from __future__ import annotations

from typing import Any

PHASES = ("create", "rotate", "delete")
#: Throughput against the raw baseline, quiet and with the background load.
THROUGHPUT_VS_RAW = {"quiet": 0.9, "busy": 0.8}
CPU_PER_DB_VS_RAW = 1.5
#: The Go reference operator's peak RSS in a 500-Database storm.
STORM_RSS_MB, STORM_RSS_N = 56.0, 500
STARTUP_S, STARTUP_RSS_MB, STARTUP_N = 5.0, 150.0, 10_000
#: "Cost per Database must not grow with N": CPU per Database at the largest N over the smallest.
SCALE_GROWTH = 1.25


def load_state(results: dict[str, Any]) -> str:
    return "busy" if ((results.get("load") or {}).get("background_cpus") or 0) > 0 else "quiet"


def _storm(results: dict[str, Any], subject: str, n: int) -> dict[str, Any] | None:
    return next(
        (
            s
            for s in results.get("storms") or []
            if s["subject"] == subject and s["n"] == n and s["procedures"] == "fast"
        ),
        None,
    )


def _phase(storm: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if storm is None:
        return None
    return next((p for p in storm["phases"] if p["phase"] == name and p["completed"] == p["n"]), None)


def metric(phase: dict[str, Any] | None, name: str) -> float | None:
    """A phase's figure per Database (or as measured, for throughput and RSS)."""
    if not phase or not phase.get("n"):
        return None
    n = phase["n"]
    if name == "throughput_per_s":
        value: float | None = phase.get("throughput_per_s")
        return value
    if name == "cpu_ms_per_db":
        return round(1000.0 * phase["cpu_seconds"] / n, 3)
    if name == "requests_per_db":
        return round(sum((phase.get("requests") or {}).values()) / n, 2)
    if name == "peak_rss_mb":
        value = phase.get("peak_rss_mb")
        return value
    if name == "p99_ms":
        value = (phase.get("latency") or {}).get("p99_ms")
        return value
    raise ValueError(f"unknown metric {name!r}")


def _row(
    goal: str,
    metric_name: str,
    phase: str | None,
    n: int | None,
    subject: str,
    baseline: str | None,
    value: float | None,
    baseline_value: float | None,
    op: str,
    bound: float,
    load: str,
) -> dict[str, Any]:
    if baseline is None:
        ratio = round(value / bound, 3) if value is not None else None
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
    else:
        ratio = round(value / baseline_value, 3) if value and baseline_value else None
        met = None if ratio is None else (ratio <= bound if op == "<=" else ratio >= bound)
    return {
        "goal": goal,
        "metric": metric_name,
        "phase": phase,
        "n": n,
        "subject": subject,
        "baseline": baseline,
        "value": value,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "op": op,
        "bound": bound,
        "met": met,
        "load": load,
    }


def goal_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    load = load_state(results)
    rows: list[dict[str, Any]] = []
    storms = results.get("storms") or []
    ns = sorted({s["n"] for s in storms if s["subject"] == "operator" and s["procedures"] == "fast"})
    for n in ns:
        op = _storm(results, "operator", n)
        raw, kopf = _storm(results, "raw", n), _storm(results, "kopf", n)
        before = _storm(results, "baseline", n)
        for phase in PHASES:
            mine = _phase(op, phase)
            if before is not None:
                old = _phase(before, phase)
                for name, op_ in (
                    ("throughput_per_s", ">="),
                    ("cpu_ms_per_db", "<="),
                    ("requests_per_db", "<="),
                ):
                    rows.append(
                        _row(f"{name}_vs_baseline", name, phase, n, "operator", "baseline",
                             metric(mine, name), metric(old, name), op_, 1.0, load)
                    )  # fmt: skip
            if raw is not None:
                base = _phase(raw, phase)
                rows.append(
                    _row("throughput_vs_raw", "throughput_per_s", phase, n, "operator", "raw",
                         metric(mine, "throughput_per_s"), metric(base, "throughput_per_s"),
                         ">=", THROUGHPUT_VS_RAW[load], load)
                )  # fmt: skip
                rows.append(
                    _row("cpu_per_db_vs_raw", "cpu_ms_per_db", phase, n, "operator", "raw",
                         metric(mine, "cpu_ms_per_db"), metric(base, "cpu_ms_per_db"),
                         "<=", CPU_PER_DB_VS_RAW, load)
                )  # fmt: skip
            if kopf is not None:
                peer = _phase(kopf, phase)
                for name, op_ in (
                    ("throughput_per_s", ">="),
                    ("cpu_ms_per_db", "<="),
                    ("requests_per_db", "<="),
                    ("peak_rss_mb", "<="),
                ):
                    rows.append(
                        _row(f"{name}_vs_kopf", name, phase, n, "operator", "kopf",
                             metric(mine, name), metric(peer, name), op_, 1.0, load)
                    )  # fmt: skip
            if n == STORM_RSS_N:
                rows.append(
                    _row("storm_peak_rss", "peak_rss_mb", phase, n, "operator", None,
                         metric(mine, "peak_rss_mb"), None, "<=", STORM_RSS_MB, load)
                )  # fmt: skip
    rows += _startup_rows(results, load)
    scale = scale_rows(results)
    if len(scale) >= 2 and scale[0]["cpu_ms_per_db"] and scale[-1]["cpu_ms_per_db"]:
        rows.append(
            _row("scale_cpu_per_db_growth", "cpu_ms_per_db", "create", scale[-1]["n"], "operator",
                 f"operator@N={scale[0]['n']}", scale[-1]["cpu_ms_per_db"], scale[0]["cpu_ms_per_db"],
                 "<=", SCALE_GROWTH, load)
        )  # fmt: skip
    return rows


def _startup_rows(results: dict[str, Any], load: str) -> list[dict[str, Any]]:
    rows = []
    caches = results.get("startup") or ([results["cache"]] if results.get("cache") else [])
    for cache in caches:
        n = cache["databases"]
        subject = f"operator ({cache.get('initial_list', 'list')})"
        rows.append(
            _row("startup_ready_s", "start_to_ready_s", "start-up", n, subject, None,
                 cache.get("start_to_ready_s"), None, "<=", STARTUP_S, load)
        )  # fmt: skip
        rows.append(
            _row("startup_rss", "rss_after_sync_mb", "start-up", n, subject, None,
                 cache.get("rss_after_sync_mb"), None, "<=", STARTUP_RSS_MB, load)
        )  # fmt: skip
    return rows


def scale_rows(results: dict[str, Any], subject: str = "operator") -> list[dict[str, Any]]:
    out = []
    for storm in sorted(
        (s for s in results.get("storms") or [] if s["subject"] == subject and s["procedures"] == "fast"),
        key=lambda s: int(s["n"]),
    ):
        create = _phase(storm, "create")
        if create is None:
            continue
        out.append(
            {
                "n": storm["n"],
                "subject": subject,
                "throughput_per_s": metric(create, "throughput_per_s"),
                "p99_ms": metric(create, "p99_ms"),
                "requests_per_db": metric(create, "requests_per_db"),
                "cpu_ms_per_db": metric(create, "cpu_ms_per_db"),
                "peak_rss_mb": metric(create, "peak_rss_mb"),
            }
        )
    return out


def plot_scale(results: dict[str, Any], path: Any) -> bool:
    """Throughput, p99 latency, CPU per Database and peak RSS against N (log scale); False when fewer
    than two N were measured or matplotlib is missing."""
    rows = scale_rows(results)
    if len(rows) < 2:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ns = [r["n"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    for ax, (key, label) in zip(
        axes,
        (
            ("throughput_per_s", "create DB/s"),
            ("p99_ms", "p99 apply→Ready ms"),
            ("cpu_ms_per_db", "CPU ms per Database"),
            ("peak_rss_mb", "peak RSS MB"),
        ),
        strict=True,
    ):
        ax.plot(ns, [r[key] or 0 for r in rows], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("N")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"operator scale curve ({load_state(results)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_lines(results: dict[str, Any]) -> list[str]:
    """The goal rows and the scale curve as Markdown tables."""
    lines: list[str] = []
    rows = results.get("goal_rows") or goal_rows(results)
    load = results.get("load") or {}
    if rows:
        lines += [
            f"## Goal rows ({load_state(results)}; background load {load.get('background_cpus', 0)} CPUs, "
            f"load average {load.get('load_average_at_start')} → {load.get('load_average_now')})",
            "",
            "| goal | phase | N | subject | baseline | value | baseline value | ratio | goal | met |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
            lines.append(
                f"| {r['goal']} | {r['phase']} | {r['n']} | {r['subject']} | {r['baseline'] or '—'} | "
                f"{_cell(r['value'])} | {_cell(r['baseline_value'])} | {_cell(r['ratio'])} | "
                f"{r['op']} {r['bound']} | {met} |"
            )
        lines.append("")
    scale = results.get("scale") or scale_rows(results)
    if len(scale) >= 2:
        lines += [
            "## Scale curve (operator, create)",
            "",
            "| N | DB/s | p99 ms | requests/DB | CPU ms/DB | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['n']} | {_cell(r['throughput_per_s'])} | {_cell(r['p99_ms'])} | "
            f"{_cell(r['requests_per_db'])} | {_cell(r['cpu_ms_per_db'])} | {_cell(r['peak_rss_mb'])} |"
            for r in scale
        ]
        lines.append("")
    return lines
