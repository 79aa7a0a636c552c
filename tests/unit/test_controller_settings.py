"""`dbaasctl run` settings: precedence flags > env > file > defaults, validation naming the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dbaasctl import settings as settings_module
from dbaasctl.settings import FIELDS, Settings, SettingsError, parse_address, parse_args


def test_defaults() -> None:
    s = parse_args([], {})
    assert s == Settings()
    assert s.workers == 8
    assert s.config_name == "dbaasctl"
    assert s.leader_elect is True
    assert s.health_address.port == 8081
    assert s.metrics_address is not None
    assert s.metrics_address.port == 8080
    assert s.watch_namespaces == ()


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "dbaasctl.yaml"
    cfg.write_text("workers: 2\nlog-level: debug\nconfig_name: from-file\nwatch-namespaces: [a, b]\n")
    env = {"DBAASCTL_CONFIG_FILE": str(cfg), "DBAASCTL_WORKERS": "3", "DBAASCTL_LOG_FORMAT": "console"}
    s = parse_args(["--workers", "4"], env)
    assert s.workers == 4  # flag beats env and file
    assert s.log_format == "console"  # env beats default
    assert s.log_level == "debug"  # file beats default
    assert s.config_name == "from-file"
    assert s.watch_namespaces == ("a", "b")
    assert parse_args([], env).workers == 3  # env beats file
    assert parse_args(["--config-file", str(cfg)], {}).workers == 2


def test_bool_flags_and_env() -> None:
    assert parse_args(["--no-leader-elect"], {"DBAASCTL_LEADER_ELECT": "true"}).leader_elect is False
    assert parse_args([], {"DBAASCTL_LEADER_ELECT": "false"}).leader_elect is False
    assert parse_args([], {"DBAASCTL_SECURE_METRICS": "1"}).secure_metrics is True


def test_watch_namespaces_csv_deduplicated() -> None:
    s = parse_args(["--watch-namespaces", "team-a, team-b,team-a,"], {})
    assert s.watch_namespaces == ("team-a", "team-b")


@pytest.mark.parametrize(
    ("argv", "env", "where"),
    [
        (["--workers", "many"], {}, "--workers"),
        ([], {"DBAASCTL_WORKERS": "0"}, "DBAASCTL_WORKERS"),
        (["--watch-namespaces", "Bad_NS"], {}, "--watch-namespaces"),
        (["--metrics-addr", "localhost"], {}, "--metrics-addr"),
        (["--health-addr", "0"], {}, "--health-addr"),
        (["--namespace", "UPPER"], {}, "--namespace"),
        (["--lease-duration", "5"], {}, "lease-duration must be greater than renew-deadline"),
        (["--metrics-cert-file", "/x.pem"], {}, "go together"),
    ],
)
def test_errors_name_their_source(argv: list[str], env: dict[str, str], where: str) -> None:
    with pytest.raises(SettingsError, match="invalid settings") as info:
        parse_args(argv, env)
    assert where in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("wokers: 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'wokers'"):
        parse_args(["--config-file", str(cfg)], {})
    cfg.write_text("workers: [1\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        parse_args(["--config-file", str(cfg)], {})
    cfg.write_text("workers: x\n")
    with pytest.raises(SettingsError, match=r"c\.yaml: workers"):
        parse_args(["--config-file", str(cfg)], {})
    with pytest.raises(SettingsError, match="cannot read"):
        parse_args(["--config-file", str(tmp_path / "missing.yaml")], {})


def test_election_timings_only_checked_when_electing() -> None:
    s = parse_args(["--no-leader-elect", "--lease-duration", "1"], {})
    assert s.lease_duration == 1


def test_operator_namespace_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa_file = tmp_path / "namespace"
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE_FILE", sa_file)
    assert parse_args(["--namespace", "ops"], {}).operator_namespace({"POD_NAMESPACE": "pod"}) == "ops"
    assert parse_args([], {}).operator_namespace({"POD_NAMESPACE": "pod"}) == "pod"
    assert parse_args([], {}).operator_namespace({}) == "default"
    sa_file.write_text("from-sa\n")
    assert parse_args([], {}).operator_namespace({}) == "from-sa"


def test_parse_address() -> None:
    assert parse_address(":8080") is not None
    assert parse_address("0") is None
    addr = parse_address("[::1]:9000")
    assert addr is not None
    assert (addr.host, addr.port) == ("::1", 9000)
    with pytest.raises(ValueError, match="out of range"):
        parse_address(":70000")


def test_help_documents_every_setting() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dbaasctl", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for field in FIELDS:
        assert field.flag in out
        assert field.env in out
    assert "--config-file" in out


def test_bad_settings_exit_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dbaasctl", "run", "--workers", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--workers" in proc.stderr
    assert "Traceback" not in proc.stderr
