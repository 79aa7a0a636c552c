"""Process settings of `dbaasctl run`: command-line flags > `DBAASCTL_*` environment > YAML file > defaults.

One table (`FIELDS`, in dbaasctl.settings_flags) drives all three sources and `--help`, so a setting cannot exist in one place and be
forgotten in another. Every source is merged as raw values first and validated once by the pydantic model,
and a validation error names the source that supplied the bad value (`--workers`, `DBAASCTL_WORKERS` or
`workers` in the file), because "invalid int" without a location is useless in a CrashLoopBackOff.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dbaasctl.settings_flags import BY_NAME as _BY_NAME
from dbaasctl.settings_flags import CONFIG_FILE_ENV, ENV_PREFIX, FIELDS

__all__ = [
    "ENV_PREFIX",
    "FIELDS",
    "SERVICE_ACCOUNT_NAMESPACE_FILE",
    "Address",
    "Settings",
    "SettingsError",
    "add_arguments",
    "describe",
    "load_settings",
    "parse_address",
    "parse_args",
]

SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SettingsError(ValueError):
    """Bad settings; the message says which flag, variable or file key to fix."""


@dataclass(frozen=True)
class Address:
    """A listen address; `host` "" means all interfaces, like Go's ":8080"."""

    host: str
    port: int


def parse_address(value: str) -> Address | None:
    """`host:port`, `:port` or `[v6]:port`; "0" (the controller-runtime convention) disables the listener."""
    text = value.strip()
    if text in {"0", ""}:
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not an address; use host:port, :port, or 0 to disable")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return Address(host=host.strip("[]"), port=port)


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(str(part).strip() for part in value if str(part).strip())
    return value


class Settings(BaseModel):
    """Everything `dbaasctl run` is configured with. Immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kubeconfig: str | None = None
    namespace: str | None = None
    config_name: str = "dbaasctl"
    workers: int = Field(default=8, ge=1, le=512)
    leader_elect: bool = True
    leader_election_id: str = "dbaasctl-leader"
    lease_duration: float = Field(default=15.0, gt=0)
    renew_deadline: float = Field(default=10.0, gt=0)
    retry_period: float = Field(default=2.0, gt=0)
    shutdown_timeout: float = Field(default=20.0, gt=0)
    template_deadline: float = Field(default=1.0, gt=0, le=60)
    health_addr: str = ":8081"
    metrics_addr: str = ":8080"
    secure_metrics: bool = False
    metrics_cert_file: str | None = None
    metrics_key_file: str | None = None
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["info", "debug", "trace"] = "info"
    watch_namespaces: tuple[str, ...] = ()
    rollout_workloads: bool = False
    watch_list: bool = False

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("watch_namespaces")
    @classmethod
    def _namespaces_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [ns for ns in value if not _DNS_LABEL.match(ns) or len(ns) > 63]
        if bad:
            raise ValueError(f"not namespace names: {', '.join(bad)}")
        return tuple(dict.fromkeys(value))  # keep order, drop duplicates

    @field_validator("namespace", "config_name")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_LABEL.match(value) or len(value) > 63):
            raise ValueError(f"{value!r} is not a valid Kubernetes name (RFC 1123 label)")
        return value

    @field_validator("leader_election_id")
    @classmethod
    def _lease_name(cls, value: str) -> str:
        if not _DNS_SUBDOMAIN.match(value) or len(value) > 253:
            raise ValueError(f"{value!r} is not a valid Lease name (RFC 1123 subdomain)")
        return value

    @field_validator("health_addr")
    @classmethod
    def _probe_address(cls, value: str) -> str:
        if parse_address(value) is None:
            raise ValueError("the probe listener cannot be disabled; give host:port or :port")
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_address(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.metrics_cert_file is None) != (self.metrics_key_file is None):
            raise ValueError("metrics-cert-file and metrics-key-file go together")
        return self

    @model_validator(mode="after")
    def _election_timings(self) -> Settings:
        # client-go's rules: the leader must renew well before others may take over, and retry often
        # enough to renew in time (JitterFactor 1.2).
        if self.leader_elect:
            if not self.lease_duration > self.renew_deadline:
                raise ValueError("lease-duration must be greater than renew-deadline")
            if not self.renew_deadline > 1.2 * self.retry_period:
                raise ValueError("renew-deadline must be greater than 1.2 x retry-period")
        return self

    @property
    def health_address(self) -> Address:
        address = parse_address(self.health_addr)
        assert address is not None  # validated
        return address

    @property
    def metrics_address(self) -> Address | None:
        return parse_address(self.metrics_addr)

    def operator_namespace(self, environ: Mapping[str, str] | None = None) -> str:
        """--namespace, else $POD_NAMESPACE, else the pod's service-account namespace, else "default"."""
        if self.namespace:
            return self.namespace
        env = os.environ if environ is None else environ
        if env.get("POD_NAMESPACE"):
            return env["POD_NAMESPACE"]
        try:
            text = SERVICE_ACCOUNT_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text or "default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the `run` flags. Defaults are suppressed so that only flags given on the command line
    override the environment and the file."""
    defaults = Settings()
    parser.add_argument(
        "--config-file",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"YAML file with any of the settings below (keys as flag names without '--', or snake_case); "
        f"env {CONFIG_FILE_ENV}",
    )
    for field in FIELDS:
        default = getattr(defaults, field.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        suffix = f" (env {field.env}; default: {shown if shown not in (None, '') else 'unset'})"
        if field.kind == "bool":
            parser.add_argument(
                field.flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=field.help + suffix,
            )
            continue
        parser.add_argument(
            field.flag,
            dest=field.name,
            metavar=field.metavar,
            choices=field.choices,
            default=argparse.SUPPRESS,
            help=field.help + suffix,
        )


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for field in FIELDS:
        if field.env in environ and environ[field.env] != "":
            out[field.name] = (environ[field.env], field.env)
    return out


def _file_values(path: Path) -> dict[str, tuple[Any, str]]:
    import yaml  # only a config file is YAML: a process configured by flags and environment never loads it

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise SettingsError(f"config file {path} must be a mapping of setting names to values")
    out: dict[str, tuple[Any, str]] = {}
    for raw_key, value in doc.items():
        key = str(raw_key).replace("-", "_")
        if key not in _BY_NAME:
            known = ", ".join(f.flag[2:] for f in FIELDS)
            raise SettingsError(f"config file {path}: unknown setting {raw_key!r} (known: {known})")
        out[key] = (value, f"{path}: {raw_key}")
    return out


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge the three sources (flags > env > file > defaults) and validate once."""
    env = os.environ if environ is None else environ
    flags = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
    config_file = flags.pop("config_file", None) or env.get(CONFIG_FILE_ENV) or None
    merged: dict[str, tuple[Any, str]] = {}
    if config_file:
        merged.update(_file_values(Path(config_file)))
    merged.update(_env_values(env))
    for name, value in flags.items():
        if name in _BY_NAME:
            merged[name] = (value, _BY_NAME[name].flag)
    try:
        return Settings.model_validate({name: value for name, (value, _) in merged.items()})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            name = str(loc[0]) if loc else ""
            source = (
                merged[name][1]
                if name in merged
                else (_BY_NAME[name].flag if name in _BY_NAME else "settings")
            )
            problems.append(f"{source}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def describe(settings: Settings) -> dict[str, Any]:
    """The effective settings for the start-up log line (nothing here is secret)."""
    return settings.model_dump(mode="json")


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Stand-alone parse of `run` flags; used by tests and embedders."""
    parser = argparse.ArgumentParser(prog="dbaasctl run")
    add_arguments(parser)
    return load_settings(parser.parse_args(list(argv)), environ)
