"""The manager's process-level knobs, the Lease they describe, and what they add up to at shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbaasctl.kube.leader import LeaderElectionConfig, default_identity

#: How long queued Events may still be written during a graceful stop.
EVENT_FLUSH_SECONDS = 2.0


@dataclass
class ManagerSettings:
    """Process-level knobs; the CLI maps its flags/env/config onto these."""

    probe_host: str = "0.0.0.0"  # noqa: S104 - kubelet probes come from outside the pod
    probe_port: int = 8081
    # None: serve /metrics on the probe server. 0: any free port.
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: int | None = 8080
    metrics_enabled: bool = True
    metrics_secure: bool = False
    metrics_cert_file: str | None = None
    metrics_key_file: str | None = None
    leader_election: bool = True
    lease_name: str = "dbaasctl-leader"
    lease_namespace: str = "default"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    leader_healthz_slack: float = 20.0
    cache_sync_timeout: float = 120.0
    #: In-flight reconciles get this long on stop; keep `stop_budget()` under the pod's grace period.
    graceful_shutdown_timeout: float = 20.0
    event_loop_max_lag: float = 10.0
    handle_signals: bool = True
    #: Informers fill their caches with streaming lists (WatchList) instead of paged LISTs.
    watch_list: bool = False

    def lease_config(self) -> LeaderElectionConfig:
        """The Lease this process competes for, in the terms `LeaderElector` takes."""
        return LeaderElectionConfig(
            lease_name=self.lease_name,
            namespace=self.lease_namespace,
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )

    def stop_budget(self) -> float:
        """The longest a graceful stop can take: the drain, the Event flush, then the Lease release
        (bounded by the renew deadline). The kubelet's SIGKILL must come later than this."""
        release = self.renew_deadline if self.leader_election else 0.0
        return self.graceful_shutdown_timeout + EVENT_FLUSH_SECONDS + release
