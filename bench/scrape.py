"""Reading a subject's /metrics: REST requests by verb, Event writes, reconcile progress.

The operator and the raw baseline both export client-go's `rest_client_requests_total{method,code}`, so
one scraper serves both and their numbers are comparable by construction.
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    #: (method, code) → requests so far.
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Event API writes: created (POST) + aggregated (PATCH of a series).
    event_writes: float = 0.0
    reconciles: float = 0.0
    queue_depth: float = 0.0

    def total_requests(self) -> float:
        return sum(self.requests.values())

    def minus(self, before: Scrape) -> Scrape:
        keys = set(self.requests) | set(before.requests)
        return Scrape(
            requests={k: self.requests.get(k, 0.0) - before.requests.get(k, 0.0) for k in sorted(keys)},
            event_writes=self.event_writes - before.event_writes,
            reconciles=self.reconciles - before.reconciles,
            queue_depth=self.queue_depth,
        )


def parse(text: str) -> Scrape:
    requests: dict[tuple[str, str], float] = {}
    event_writes = reconciles = depth = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "rest_client_requests_total":
                key = (s.labels.get("method", "?"), s.labels.get("code", "?"))
                requests[key] = requests.get(key, 0.0) + s.value
            elif s.name == "dbaasctl_events_total" and s.labels.get("result") in ("created", "aggregated"):
                event_writes += s.value
            elif s.name == "controller_runtime_reconcile_total" and s.labels.get("controller") == "database":
                reconciles += s.value
            elif s.name == "workqueue_depth" and s.labels.get("name") == "database":
                depth += s.value
    return Scrape(requests=requests, event_writes=event_writes, reconciles=reconciles, queue_depth=depth)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode("utf-8"))


async def scrape(url: str) -> Scrape:
    return parse(await asyncio.to_thread(_fetch, url))


async def settle(url: str, *, quiet: float = 2.0, limit: float = 30.0, interval: float = 1.0) -> Scrape:
    """Wait until the subject's request counters stop moving for `quiet` seconds (trailing Events,
    status writes), at most `limit` seconds; returns the last scrape.

    Scraping costs the subject CPU (a profile of the operator put /metrics exposition at a tenth of its
    CPU when scraped every 0.5 s), so it is done once a second and only around phases."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last = await scrape(url)
    still_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(interval)
        current = await scrape(url)
        if current.requests != last.requests or current.event_writes != last.event_writes:
            still_since = loop.time()
        elif loop.time() - still_since >= quiet:
            return current
        last = current
    return last
