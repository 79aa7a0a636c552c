"""The table of `dbaasctl run` settings: each one's flag, environment variable, help and kind.

dbaasctl.settings validates them (the pydantic model holds types, bounds and defaults) and merges the
sources; this table is the one place a setting is named, so `--help`, the environment and the config
file cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ENV_PREFIX = "DBAASCTL_"


@dataclass(frozen=True)
class Flag:
    """One setting as the three sources and `--help` name it."""

    name: str  # the Settings attribute
    help: str
    kind: Literal["str", "int", "float", "bool"] = "str"
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


FIELDS: tuple[Flag, ...] = (
    Flag(
        "kubeconfig",
        "kubeconfig file to use; default: $KUBECONFIG, then the in-cluster service account, "
        "then ~/.kube/config",
        metavar="PATH",
    ),
    Flag(
        "namespace",
        "the operator's own namespace, where the OperatorConfig, DSN Secrets and the leader Lease live; "
        "default: $POD_NAMESPACE, then the service account's namespace, then 'default'",
        metavar="NS",
    ),
    Flag("config_name", "name of the OperatorConfig to watch in the operator namespace", metavar="NAME"),
    Flag("workers", "Databases reconciled concurrently", "int", metavar="N"),
    Flag(
        "leader_elect",
        "elect a leader through a coordination.k8s.io Lease so only one replica reconciles",
        "bool",
    ),
    Flag("leader_election_id", "name of the leader-election Lease", metavar="NAME"),
    Flag(
        "watch_list",
        "fill the caches with streaming lists (one watch with sendInitialEvents=true) instead of paged LISTs",
        "bool",
    ),
    Flag(
        "lease_duration",
        "seconds a non-leader waits before it may take over an unrenewed lease",
        "float",
        metavar="SECONDS",
    ),
    Flag(
        "renew_deadline",
        "seconds the leader keeps trying to renew before it steps down",
        "float",
        metavar="SECONDS",
    ),
    Flag("retry_period", "seconds between leader-election attempts", "float", metavar="SECONDS"),
    Flag(
        "shutdown_timeout",
        "seconds in-flight reconciles get to finish on SIGTERM; the pod's terminationGracePeriodSeconds "
        "must exceed it plus the renew deadline, or the Lease is never released",
        "float",
        metavar="SECONDS",
    ),
    Flag(
        "template_deadline",
        "seconds one template render may take (DatabaseClass inputs and secretFormat); past it the "
        "Database shows TemplateError and no procedure is called",
        "float",
        metavar="SECONDS",
    ),
    Flag(
        "health_addr",
        "listen address of /healthz and /readyz (host:port or :port)",
        metavar="ADDR",
    ),
    Flag("metrics_addr", "listen address of /metrics (host:port or :port; 0 disables)", metavar="ADDR"),
    Flag(
        "secure_metrics",
        "answer /metrics only for bearer tokens the API server authorises (TokenReview + SubjectAccessReview "
        "for GET /metrics); HTTPS when --metrics-cert-file is given",
        "bool",
    ),
    Flag(
        "metrics_cert_file",
        "PEM certificate for HTTPS on the metrics listener (with --metrics-key-file); without one, "
        "--secure-metrics still checks bearer tokens but over plain HTTP",
        metavar="PATH",
    ),
    Flag("metrics_key_file", "PEM private key for --metrics-cert-file", metavar="PATH"),
    Flag("log_format", "log line format", choices=("json", "console")),
    Flag(
        "log_level",
        "log verbosity; trace also logs every API request",
        choices=("info", "debug", "trace"),
    ),
    Flag(
        "watch_namespaces",
        "comma-separated namespaces whose Databases are reconciled; default: all namespaces",
        metavar="NS[,NS...]",
    ),
    Flag(
        "rollout_workloads",
        "after a rotation, roll the Deployments, StatefulSets and DaemonSets annotated "
        "dbaasctl.io/rollout-on-rotation (needs list and patch on them)",
        "bool",
    ),
)
BY_NAME = {f.name: f for f in FIELDS}
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG_FILE"
