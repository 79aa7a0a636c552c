"""The resource models: camelCase in and out, conditions, selectors, durations, class rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from dbaasctl.api import (
    Condition,
    Database,
    DatabaseClass,
    EndpointSpec,
    LabelSelector,
    OperatorConfig,
    ParameterError,
    find_condition,
    format_duration,
    is_condition_true,
    parse_duration,
    positional_keys,
    remove_condition,
    set_condition,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 1, 13, 0, 0, tzinfo=UTC)


def test_database_from_api_json_and_back() -> None:
    raw = {
        "apiVersion": "dbaasctl.io/v1",
        "kind": "Database",
        "metadata": {
            "name": "orders",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 2,
            "labels": {"app.kubernetes.io/name": "shop"},
            "annotations": {"dbaasctl.io/rotate": "r1"},
            "managedFields": [{"manager": "kubectl"}],
            "creationTimestamp": "2024-05-01T12:00:00Z",
        },
        "spec": {"endpoint": "pg-eu", "params": {"size": "10"}, "deletionPolicy": "Retain"},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Provisioned",
                    "message": "",
                    "lastTransitionTime": "2024-05-01T12:00:00Z",
                    "observedGeneration": 2,
                }
            ],
            "secretName": "orders-credentials",
            "provisionedAt": "2024-05-01T12:00:00Z",
            "rotationToken": "r0",
            "credentialGeneration": 3,
        },
    }
    db = Database.model_validate(raw)
    assert db.key == "shop/orders"
    assert db.spec.deletion_policy == "Retain"
    assert db.metadata.resource_version == "42"
    assert db.status.provisioned_at == T0
    assert db.status.credential_generation == 3
    assert db.secret_name == "orders-credentials"
    out = db.to_api()
    assert out["spec"] == {"endpoint": "pg-eu", "params": {"size": "10"}, "deletionPolicy": "Retain"}
    assert out["status"]["conditions"][0]["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert out["status"]["rotationToken"] == "r0"
    assert "lastRotationTime" not in out["status"]  # exclude_none
    assert "managedFields" not in out["metadata"]


def test_database_defaults_and_snake_case_input() -> None:
    db = Database(metadata={"name": "a", "namespace": "n"}, spec={"endpoint": "e"})  # type: ignore[arg-type]
    assert db.spec.deletion_policy == "Delete"
    assert db.spec.params == {}
    assert db.secret_name == "a-credentials"
    db2 = Database.model_validate({"metadata": {"name": "a"}, "spec": {"endpoint": "e", "secret_name": "s"}})
    assert db2.secret_name == "s"
    with pytest.raises(ValidationError):
        Database.model_validate({"spec": {"endpoint": "e", "deletionPolicy": "Orphan"}})
    with pytest.raises(ValidationError):
        Database.model_validate({"spec": {}})


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    conds: list[Condition] = []
    assert set_condition(conds, "Ready", "False", "Creating", "calling create", observed_generation=1, now=T0)
    assert conds[0].last_transition_time == T0
    # Same everything: no change reported, nothing touched.
    assert not set_condition(
        conds, "Ready", "False", "Creating", "calling create", observed_generation=1, now=T1
    )
    # Reason/message change: changed, but the transition time stays.
    assert set_condition(conds, "Ready", "False", "CreateFailed", "boom", observed_generation=1, now=T1)
    assert conds[0].last_transition_time == T0
    assert conds[0].reason == "CreateFailed"
    # Status flip: the transition time moves.
    assert set_condition(conds, "Ready", "True", "Provisioned", "", observed_generation=2, now=T1)
    assert conds[0].last_transition_time == T1
    assert conds[0].observed_generation == 2
    assert is_condition_true(conds, "Ready")
    assert len(conds) == 1
    set_condition(conds, "Deleting", "Unknown", "Waiting", "", now=T1)
    assert find_condition(conds, "Deleting") is not None
    assert remove_condition(conds, "Deleting")
    assert not remove_condition(conds, "Deleting")
    assert [c.type for c in conds] == ["Ready"]


def test_set_condition_default_time_is_whole_seconds_utc() -> None:
    conds: list[Condition] = []
    set_condition(conds, "Ready", "Unknown", "Queued")
    stamp = conds[0].last_transition_time
    assert stamp.tzinfo is not None
    assert stamp.microsecond == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("720h", 720 * 3600), ("30m", 1800), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("250ms", 0.25),
     ("2h45m30.5s", 9930.5), ("0", 0), ("10us", 1e-5), ("10µs", 1e-5), (30, 30), (2.5, 2.5)],
)  # fmt: skip
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "5 m", "-5s", "1h x", "1.2.3s", "s30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "td", [timedelta(hours=720), timedelta(minutes=90), timedelta(seconds=1.5), timedelta(0)]
)
def test_format_duration_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


def test_endpoint_duration_and_source_rules() -> None:
    ep = EndpointSpec.model_validate({"name": "pg", "dsn": "postgres://h/db", "operationTimeout": "1m30s"})
    assert ep.operation_timeout == timedelta(seconds=90)
    assert ep.to_api()["operationTimeout"] == "1m30s"
    with pytest.raises(ValidationError, match="exactly one of dsn or secretKeyRef"):
        EndpointSpec.model_validate({"name": "pg"})
    with pytest.raises(ValidationError, match="exactly one of dsn or secretKeyRef"):
        EndpointSpec.model_validate({"name": "pg", "dsn": "x", "secretKeyRef": {"name": "s", "key": "k"}})


def test_label_selector_matches_like_kubernetes() -> None:
    labels = {"team": "a", "env": "prod"}
    assert LabelSelector().matches(labels)
    assert LabelSelector().matches(None)
    assert LabelSelector(match_labels={"team": "a"}).matches(labels)
    assert not LabelSelector(match_labels={"team": "b"}).matches(labels)
    sel = LabelSelector.model_validate(
        {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}
    )
    assert sel.matches(labels)
    assert not sel.matches({"env": "dev"})
    assert not sel.matches({})
    notin = LabelSelector.model_validate(
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}
    )
    assert notin.matches(labels)
    assert notin.matches({})
    assert not notin.matches({"env": "dev"})
    exists = LabelSelector.model_validate({"matchExpressions": [{"key": "team", "operator": "Exists"}]})
    assert exists.matches(labels)
    assert not exists.matches({"env": "prod"})
    absent = LabelSelector.model_validate({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})
    assert not absent.matches(labels)
    assert absent.matches({"env": "prod"})
    with pytest.raises(ValidationError, match="needs values"):
        LabelSelector.model_validate({"matchExpressions": [{"key": "a", "operator": "In"}]})
    with pytest.raises(ValidationError, match="takes no values"):
        LabelSelector.model_validate(
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
        )


def test_operator_config() -> None:
    cfg = OperatorConfig.model_validate(
        {
            "metadata": {"name": "cfg", "namespace": "dbaas-system"},
            "spec": {
                "rps": 2,
                "dbms": [
                    {
                        "databaseClassName": "pg-class",
                        "endpoints": [
                            {"name": "pg-a", "dsn": "postgres://u:p@h/db", "rps": 0.5, "burst": 2},
                            {
                                "name": "pg-b",
                                "secretKeyRef": {"name": "dsns", "key": "pg-b"},
                                "allowedNamespaces": {
                                    "names": ["x"],
                                    "selector": {"matchLabels": {"t": "1"}},
                                },
                            },
                        ],
                    }
                ],
            },
        }
    )
    assert cfg.spec.keepalive == 30
    eps = dict((ep.name, (cls, ep)) for cls, ep in cfg.spec.endpoints())
    assert eps["pg-a"][0] == "pg-class"
    assert cfg.spec.endpoint_rps(eps["pg-a"][1]) == 0.5
    assert cfg.spec.endpoint_rps(eps["pg-b"][1]) == 2
    assert eps["pg-a"][1].allows("anything")
    pg_b = eps["pg-b"][1]
    assert pg_b.allows("x")
    assert pg_b.allows("y", {"t": "1"})
    assert not pg_b.allows("y", {"t": "2"})
    with pytest.raises(ValidationError, match="used more than once"):
        OperatorConfig.model_validate(
            {
                "spec": {
                    "dbms": [
                        {"databaseClassName": "a", "endpoints": [{"name": "e", "dsn": "x"}]},
                        {"databaseClassName": "b", "endpoints": [{"name": "e", "dsn": "y"}]},
                    ]
                }
            }
        )


def make_class(driver: str = "postgres", **spec: object) -> dict[str, object]:
    base: dict[str, object] = {
        "driver": driver,
        "operations": {
            "create": {"name": "sp_create", "inputs": {"k8sName": "{{ metadata.name }}"}},
            "delete": {"name": "sp_delete", "inputs": {"k8sName": "{{ metadata.name }}"}},
        },
        "secretFormat": {"password": "{{ result.password }}"},
    }
    base.update(spec)
    return {"metadata": {"name": "c"}, "spec": base}


def test_positional_keys() -> None:
    assert positional_keys({"1": "b", "0": "a", "2": "c"}) == ["0", "1", "2"]
    assert positional_keys({}) == []
    with pytest.raises(ValueError, match="not numeric: 'k8sName'"):
        positional_keys({"k8sName": "x"})
    with pytest.raises(ValueError, match="missing '1'"):
        positional_keys({"0": "a", "2": "c"})
    with pytest.raises(ValueError, match="not numeric: '01'"):
        positional_keys({"0": "a", "01": "c"})


def test_class_rules() -> None:
    DatabaseClass.model_validate(make_class())
    maria = make_class(
        "mariadb",
        operations={
            "create": {"name": "db1.sp_create", "inputs": {"0": "a", "1": "b"}},
            "delete": {"name": "d"},
        },
    )
    assert DatabaseClass.model_validate(maria).spec.operations.rotate is None
    with pytest.raises(ValidationError, match=r"mariadb operations.create.inputs: .*missing '1'"):
        DatabaseClass.model_validate(
            make_class(
                "mariadb",
                operations={"create": {"name": "c", "inputs": {"0": "a", "2": "b"}}, "delete": {"name": "d"}},
            )
        )
    with pytest.raises(ValidationError, match="not a procedure name"):
        DatabaseClass.model_validate(
            make_class(operations={"create": {"name": "x; DROP TABLE t"}, "delete": {"name": "d"}})
        )
    with pytest.raises(ValidationError, match="invalid: 'a-b'"):
        DatabaseClass.model_validate(
            make_class(operations={"create": {"name": "c", "inputs": {"a-b": "x"}}, "delete": {"name": "d"}})
        )
    with pytest.raises(ValidationError, match="declared twice"):
        DatabaseClass.model_validate(make_class(parameters=[{"name": "a"}, {"name": "a"}]))
    with pytest.raises(ValidationError, match="not a valid regex"):
        DatabaseClass.model_validate(make_class(parameters=[{"name": "a", "pattern": "("}]))
    rotation = DatabaseClass.model_validate(make_class(rotation={"interval": "720h"})).spec.rotation
    assert rotation is not None
    assert rotation.interval == timedelta(days=30)


def test_resolve_params() -> None:
    open_class = DatabaseClass.model_validate(make_class()).spec
    assert open_class.resolve_params({"anything": "goes"}) == {"anything": "goes"}
    spec = DatabaseClass.model_validate(
        make_class(
            parameters=[
                {"name": "size", "required": True, "pattern": "[0-9]+", "description": "size in GiB"},
                {"name": "tier", "default": "standard", "maxLength": 10},
                {"name": "comment"},
            ]
        )
    ).spec
    assert spec.resolve_params({"size": "10"}) == {"size": "10", "tier": "standard", "comment": ""}
    assert spec.resolve_params({"size": "10", "tier": "gold"})["tier"] == "gold"
    with pytest.raises(ParameterError) as info:
        spec.resolve_params({"sise": "10", "tier": "x" * 11})
    problems = info.value.problems
    assert any("unknown params sise" in p and "comment, size, tier" in p for p in problems)
    assert any("params.size is required (size in GiB)" in p for p in problems)
    assert any("params.tier is longer than 10" in p for p in problems)
    with pytest.raises(ParameterError, match="does not match the pattern") as info:
        spec.resolve_params({"size": "10 OR 1=1"})
    assert "1=1" not in str(info.value)  # values are not echoed


def test_parameter_patterns_run_in_linear_time() -> None:
    """A backtracking engine needs hours here (the time doubles every two characters).

    Run in a child process: a backtracking match holds the GIL, so a thread could not be timed out.
    """
    import subprocess
    import sys

    code = (
        "from dbaasctl.api.databaseclass import DatabaseClass, ParameterError\n"
        f"spec = DatabaseClass.model_validate({make_class(parameters=[{'name': 'name', 'pattern': '^([a-z0-9]+[-_]?)+$'}])!r}).spec\n"
        "assert spec.resolve_params({'name': 'my-db_1'}) == {'name': 'my-db_1'}\n"
        "try:\n    spec.resolve_params({'name': 'a' * 40 + '!'})\n"
        "except ParameterError as exc:\n    print(exc)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the pattern check did not finish: backtracking regex engine")
    assert "params.name does not match the pattern" in done.stdout


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)a", r"(?<!x)y"])
def test_patterns_re2_cannot_run_are_refused_at_validation(pattern: str) -> None:
    with pytest.raises(ValidationError, match=r"parameters\.a\.pattern is not a valid regex.*RE2"):
        DatabaseClass.model_validate(make_class(parameters=[{"name": "a", "pattern": pattern}]))
