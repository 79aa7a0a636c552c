"""Secret leakage scan: every password and DSN password a run used, searched for in everything the
operator lets a human (or a log pipeline, or a Prometheus server) read. The expected number of hits is 0.

Needles come from the sources of truth, not from what the operator reports: the DBMS admin passwords
(the DSN credentials), every password a create or rotate issued on the server (the PostgreSQL audit table
keeps them, including those no Secret ever held because a fault hit first), and every password seen in a
credentials Secret. Each is searched in the forms a careless log line would carry it: as is, URL-quoted
(inside a DSN), JSON-escaped and base64-encoded (a Secret's `data`).

Sinks: operator log files (run at trace level: every watch event and API call), Events (both APIs),
Databases (conditions, status, everything), OperatorConfig and DatabaseClass status, Leases, /metrics
output of every live operator, and any extra text a test captured (exception messages).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:  # the operator runner feeds SUITE, so it imports this module, not the other way round
    from testbed.controlplane import KubeTools
    from testbed.operator import OperatorProcess

__all__ = ["SUITE", "Hit", "LeakScan"]

#: Shorter values would match by accident (and no generated password is this short).
MIN_NEEDLE = 8
#: Secret keys whose values are credentials, whatever a class's secretFormat calls them.
CREDENTIAL_KEYS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key", "credential")


@dataclass(frozen=True)
class Hit:
    sink: str
    origin: str  # where the leaked value came from (never the value itself)
    form: str
    context: str  # the text around the hit with the value masked


def _forms(value: str) -> dict[str, str]:
    forms = {"raw": value, "url-quoted": quote(value, safe=""), "json": json.dumps(value)[1:-1]}
    forms["base64"] = base64.b64encode(value.encode()).decode()
    return {k: v for k, v in forms.items() if len(v) >= MIN_NEEDLE}


@dataclass
class LeakScan:
    """Collect needles during a run, gather sinks at its end, scan."""

    needles: dict[str, str] = field(default_factory=dict)  # value -> origin
    sinks: dict[str, str] = field(default_factory=dict)  # name -> text

    # -- needles -------------------------------------------------------------------------------------

    def add(self, value: str | None, origin: str) -> None:
        if value and len(value) >= MIN_NEEDLE:
            self.needles.setdefault(value, origin)

    def add_all(self, values: Iterable[str], origin: str) -> None:
        for value in values:
            self.add(value, origin)

    def add_dsn(self, dsn: str, origin: str) -> None:
        """The password inside a URL-form DSN (and the DSN itself: it is a credential as a whole)."""
        password = urlsplit(dsn).password
        if password:
            self.add(unquote(password), f"{origin} (DSN password)")
        self.add(dsn, f"{origin} (DSN)")

    def add_secret(self, secret: Mapping[str, object], origin: str) -> int:
        """The credential keys of one Secret object (as the API returns it, data base64-encoded)."""
        count = 0
        data = secret.get("data") or {}
        assert isinstance(data, Mapping)
        for key, encoded in data.items():
            value = base64.b64decode(str(encoded)).decode("utf-8", "replace")
            if any(word in key.lower() for word in CREDENTIAL_KEYS):
                self.add(value, f"{origin} key {key}")
                count += 1
            elif key.lower() in ("dsn", "uri", "url") and "://" in value:
                self.add_dsn(value, f"{origin} key {key}")
                count += 1
        return count

    def add_secrets_in(self, kube: KubeTools, namespaces: Iterable[str]) -> int:
        """Every password-like key of every Secret in these namespaces (ours, DSN Secrets, foreign)."""
        count = 0
        for ns in namespaces:
            proc = kube.kubectl("get", "secrets", "-n", ns, "-o", "json", check=False)
            if proc.returncode != 0:
                continue
            for secret in json.loads(proc.stdout)["items"]:
                count += self.add_secret(secret, f"Secret {ns}/{secret['metadata']['name']}")
        return count

    # -- sinks ---------------------------------------------------------------------------------------

    def add_sink(self, name: str, text: str) -> None:
        self.sinks[name] = self.sinks.get(name, "") + text

    def gather(
        self,
        kube: KubeTools,
        namespaces: Iterable[str],
        operators: Iterable[OperatorProcess] = (),
        *,
        system_namespace: str | None = None,
    ) -> None:
        """Read every sink now (call it while the operators still run, for /metrics)."""
        for i, op in enumerate(operators):
            self.add_sink(f"operator {i} log", op.log_text())
            if op.running:
                try:
                    self.add_sink(f"operator {i} /metrics", op.metrics())
                except OSError as exc:
                    self.add_sink(f"operator {i} /metrics", f"unreachable: {exc}")
        for ns in [*namespaces, *([system_namespace] if system_namespace else [])]:
            for kind in ("events.events.k8s.io", "events", "databases", "leases"):
                proc = kube.kubectl("get", kind, "-n", ns, "-o", "json", check=False)
                self.add_sink(f"{kind} in {ns}", proc.stdout)
        if system_namespace:
            proc = kube.kubectl("get", "operatorconfigs", "-n", system_namespace, "-o", "json", check=False)
            if proc.returncode == 0:
                # The spec may hold inline DSNs by design (the administrator's own input); status may not.
                statuses = [item.get("status") for item in json.loads(proc.stdout)["items"]]
                self.add_sink(f"operatorconfig status in {system_namespace}", json.dumps(statuses))
        proc = kube.kubectl("get", "databaseclasses", "-o", "json", check=False)
        if proc.returncode == 0:
            statuses = [item.get("status") for item in json.loads(proc.stdout)["items"]]
            self.add_sink("databaseclass status", json.dumps(statuses))

    # -- scan ----------------------------------------------------------------------------------------

    def scan(self) -> list[Hit]:
        hits: list[Hit] = []
        for value, origin in self.needles.items():
            for form, needle in _forms(value).items():
                for sink, text in self.sinks.items():
                    at = text.find(needle)
                    if at < 0:
                        continue
                    before = text[max(0, at - 80) : at]
                    after = text[at + len(needle) : at + len(needle) + 80]
                    hits.append(Hit(sink, origin, form, f"{before}<{form} value>{after}"))
        return hits

    def assert_clean(self, *, min_needles: int = 1) -> dict[str, int]:
        """Fail on any hit; returns the figures (needles, sinks, bytes scanned) for the report."""
        assert len(self.needles) >= min_needles, (
            f"only {len(self.needles)} secrets collected: the scan would prove nothing"
        )
        assert self.sinks, "no sink gathered"
        # Positive control: a secret planted in a sink, base64-encoded as in a Secret's data, is found.
        probe = next(iter(self.needles))
        planted = LeakScan({probe: "probe"}, {"probe": f"data: {base64.b64encode(probe.encode()).decode()}"})
        assert planted.scan(), "the scanner misses a planted secret"
        hits = self.scan()
        if hits:
            shown = "\n".join(f"  {h.sink}: {h.origin} as {h.form}: …{h.context}…" for h in hits[:20])
            raise AssertionError(f"{len(hits)} secret leak(s):\n{shown}")
        return {
            "secrets": len(self.needles),
            "sinks": len(self.sinks),
            "bytes_scanned": sum(len(t) for t in self.sinks.values()),
        }


def merge(scans: Mapping[str, LeakScan]) -> LeakScan:
    """One scan over several (e.g. one per module), for a run-wide check."""
    out = LeakScan()
    for scan in scans.values():
        for value, origin in scan.needles.items():
            out.add(value, origin)
        for name, text in scan.sinks.items():
            out.add_sink(name, text)
    return out


#: The run-wide scan of the e2e suite: fixtures add every credential they create or see (DBMS admin
#: passwords, the control plane's admin token, every password in a test namespace's Secrets before the
#: namespace goes), and at the end of the session every operator log is scanned for all of them.
SUITE = LeakScan()
