"""The benchmark's goal rows are what a program reads: every row names its phase, N, subject, baseline and
ratio, and the verdict follows from the numbers of the same run (never assumed)."""

from __future__ import annotations

from typing import Any

from bench.goals import goal_rows, markdown_lines, scale_rows


def _phase(name: str, n: int, throughput: float, cpu_s: float, requests: float, rss: float) -> dict[str, Any]:
    return {
        "phase": name,
        "n": n,
        "completed": n,
        "throughput_per_s": throughput,
        "cpu_seconds": cpu_s,
        "requests": {"GET": requests * n},
        "peak_rss_mb": rss,
        "latency": {"p99_ms": 1000.0},
    }


def _storm(
    subject: str, n: int, throughput: float, cpu_s: float, requests: float, rss: float
) -> dict[str, Any]:
    return {
        "subject": subject,
        "procedures": "fast",
        "n": n,
        "phases": [_phase(p, n, throughput, cpu_s, requests, rss) for p in ("create", "rotate", "delete")],
    }


def _results(load_cpus: float) -> dict[str, Any]:
    return {
        "load": {"background_cpus": load_cpus},
        "storms": [
            _storm("operator", 100, 50.0, 1.0, 6.0, 50.0),
            _storm("operator", 500, 45.0, 5.0, 6.0, 55.0),
            _storm("raw", 500, 50.0, 2.0, 3.0, 50.0),
            _storm("kopf", 500, 30.0, 6.0, 4.0, 150.0),
        ],
        "startup": [
            {
                "initial_list": "list",
                "databases": 10_000,
                "start_to_ready_s": 6.0,
                "rss_after_sync_mb": 120.0,
            },
            {
                "initial_list": "watch-list",
                "databases": 10_000,
                "start_to_ready_s": 4.0,
                "rss_after_sync_mb": 110.0,
            },
        ],
    }


def _row(rows: list[dict[str, Any]], goal: str, phase: str = "create", **match: Any) -> dict[str, Any]:
    found = [r for r in rows if r["goal"] == goal and r["phase"] == phase]
    found = [r for r in found if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


def test_every_goal_row_carries_phase_n_subject_and_ratio() -> None:
    rows = goal_rows(_results(0))
    assert rows
    for row in rows:
        assert {
            "goal",
            "phase",
            "n",
            "subject",
            "baseline",
            "ratio",
            "bound",
            "op",
            "met",
            "load",
        } <= row.keys()
    quiet = _row(rows, "throughput_vs_raw", n=500)
    assert (quiet["ratio"], quiet["bound"], quiet["met"], quiet["load"]) == (0.9, 0.9, True, "quiet")
    cpu = _row(rows, "cpu_per_db_vs_raw", "rotate", n=500)
    assert (cpu["value"], cpu["baseline_value"], cpu["ratio"], cpu["met"]) == (10.0, 4.0, 2.5, False)
    rss = _row(rows, "storm_peak_rss", "delete", n=500)
    assert (rss["value"], rss["met"]) == (55.0, True)
    assert _row(rows, "requests_per_db_vs_kopf", n=500)["ratio"] == 1.5
    assert _row(rows, "startup_ready_s", "start-up", subject="operator (list)")["met"] is False
    assert _row(rows, "startup_ready_s", "start-up", subject="operator (watch-list)")["met"] is True
    # 10 ms per Database at N=500 against 10 ms at N=100: the cost did not grow.
    assert _row(rows, "scale_cpu_per_db_growth", n=500)["ratio"] == 1.0


def test_the_busy_set_is_judged_against_the_busy_bound() -> None:
    row = _row(goal_rows(_results(1.0)), "throughput_vs_raw", n=500)
    assert (row["load"], row["bound"], row["met"]) == ("busy", 0.8, True)


def test_scale_rows_and_tables() -> None:
    results = _results(0)
    assert [r["n"] for r in scale_rows(results)] == [100, 500]
    assert scale_rows(results)[1]["cpu_ms_per_db"] == 10.0
    text = "\n".join(markdown_lines(results))
    assert "| throughput_vs_raw | create | 500 | operator | raw |" in text
    assert "## Scale curve" in text
