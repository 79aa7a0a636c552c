"""The default Secret layout (Service Binding): result names mapped onto well-known keys, fallbacks
from the endpoint and the driver, nothing usable dropped."""

from __future__ import annotations

import pytest

from dbaasctl.controller.binding import MissingResultKey, binding_data


def test_binding_layout_from_reference_style_result() -> None:
    result = {
        "username": "u",
        "password": "p@ss:w/rd",
        "dbName": "d1",
        "server": "db.example",
        "port": "5433",
    }
    data = binding_data(result, driver="postgres")
    assert data["type"] == "postgresql"
    assert data["provider"] == "postgres"
    assert (data["username"], data["password"], data["database"], data["host"], data["port"]) == (
        "u",
        "p@ss:w/rd",
        "d1",
        "db.example",
        "5433",
    )
    assert data["uri"] == "postgresql://u:p%40ss%3Aw%2Frd@db.example:5433/d1"
    assert "dbName" not in data  # mapped, not duplicated
    assert "server" not in data


def test_binding_layout_fallbacks() -> None:
    data = binding_data({"user": "u", "pwd": "p", "lastRotation": "t"}, driver="mariadb", endpoint_host="::1")
    assert data["type"] == "mysql"
    assert data["provider"] == "mariadb"
    assert data["port"] == "3306"
    assert data["uri"] == "mariadb://u:p@[::1]:3306"
    assert data["lastRotation"] == "t"  # unmapped keys are kept...
    odd = binding_data({"username": "u", "password": "p", "last rotation": "t"}, driver="postgres")
    assert "last rotation" not in odd  # ...when they are valid Secret keys
    no_host = binding_data({"username": "u", "password": "p"}, driver="sqlserver")
    assert "uri" not in no_host
    assert no_host["port"] == "1433"
    with pytest.raises(MissingResultKey, match="no password"):
        binding_data({"username": "u"}, driver="postgres")
