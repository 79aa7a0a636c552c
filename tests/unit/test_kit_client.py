"""Client pieces that need no server: paths, keys, Status parsing, wire formats, leader config rules."""

from __future__ import annotations

import pytest

from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.leader import LeaderElectionConfig
from dbaasctl.kube.resources import CONFIGMAPS, LEASES, NAMESPACES, ResourceRef, object_key, split_key
from dbaasctl.kube.transport import encode_params
from dbaasctl.observability.logging import register_secret

DATABASES = ResourceRef("dbaasctl.io", "v1", "databases", kind="Database")


def test_paths_for_core_custom_namespaced_and_cluster_scoped() -> None:
    assert CONFIGMAPS.path() == "/api/v1/configmaps"
    assert CONFIGMAPS.path("ns") == "/api/v1/namespaces/ns/configmaps"
    assert CONFIGMAPS.path("ns", "a") == "/api/v1/namespaces/ns/configmaps/a"
    assert (
        DATABASES.path("team", "db", "status") == "/apis/dbaasctl.io/v1/namespaces/team/databases/db/status"
    )
    assert DATABASES.path() == "/apis/dbaasctl.io/v1/databases"
    assert NAMESPACES.path(name="team") == "/api/v1/namespaces/team"
    assert LEASES.api_version == "coordination.k8s.io/v1"
    assert CONFIGMAPS.api_version == "v1"
    with pytest.raises(ValueError, match="cluster-scoped"):
        NAMESPACES.path("ns", "x")
    with pytest.raises(ValueError, match="needs a namespace"):
        DATABASES.path(name="db")
    with pytest.raises(ValueError, match="subresource"):
        DATABASES.path("ns", subresource="status")


def test_keys() -> None:
    assert object_key({"metadata": {"name": "a", "namespace": "ns"}}) == "ns/a"
    assert object_key({"metadata": {"name": "cluster-thing"}}) == "cluster-thing"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("cluster-thing") == (None, "cluster-thing")
    assert DATABASES.key("ns", "db") == "ns/db"
    assert NAMESPACES.key(None, "team") == "team"


def test_api_error_classification_from_status() -> None:
    gone = ApiError.from_status(
        {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1 (5)"}
    )
    assert gone.is_gone
    assert not gone.is_conflict
    assert ApiError(409, "Conflict").is_conflict
    assert ApiError(409, "AlreadyExists").is_already_exists
    assert ApiError(404, "NotFound").is_not_found
    assert ApiError(403, "Forbidden").is_forbidden
    assert ApiError(429, "TooManyRequests").is_too_many_requests
    too_large = ApiError.from_status(
        {"code": 504, "reason": "Timeout", "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}}
    )
    assert too_large.is_resource_version_too_large


def test_api_error_message_is_scrubbed_and_bounded() -> None:
    register_secret("leaky-password-123")
    err = ApiError(422, "Invalid", "value leaky-password-123 " + "x" * 5000, method="POST", path="/api/v1/x")
    assert "leaky-password-123" not in str(err)
    assert len(err.message) <= 1024
    assert str(err).startswith("POST /api/v1/x: 422 Invalid: value ***")


def test_query_params_encoding() -> None:
    assert encode_params({"watch": True, "limit": 500, "continue": None, "labelSelector": "a=b"}) == [
        ("watch", "true"),
        ("limit", "500"),
        ("labelSelector", "a=b"),
    ]
    assert encode_params([("force", False)]) == [("force", "false")]


def test_leader_config_validation_matches_client_go() -> None:
    LeaderElectionConfig("l", "ns").validate()
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaderElectionConfig("l", "ns", lease_duration=10, renew_deadline=10).validate()
    with pytest.raises(ValueError, match=r"1\.2 x retry period"):
        LeaderElectionConfig("l", "ns", renew_deadline=2.4, retry_period=2).validate()
    with pytest.raises(ValueError, match="positive"):
        LeaderElectionConfig("l", "ns", retry_period=0).validate()
    a, b = LeaderElectionConfig("l", "ns"), LeaderElectionConfig("l", "ns")
    assert a.identity != b.identity, "identities are unique per process"
