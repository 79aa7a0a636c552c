"""The CRD schemas in deploy/crds/ and the pydantic models in dbaasctl.api describe the same fields.

Walks each CRD's openAPIV3Schema and the matching model side by side: same property names (by
their camelCase alias), same shapes (object / map / list / scalar), same enums, same required
fields and the same defaults. Also checks every property carries a description, so
`kubectl explain` is always useful.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from dbaasctl.api import Database, DatabaseClass, OperatorConfig
from dbaasctl.api.common import DURATION_PATTERN

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"
CASES = [
    ("databases.dbaasctl.io.yaml", Database),
    ("databaseclasses.dbaasctl.io.yaml", DatabaseClass),
    ("operatorconfigs.dbaasctl.io.yaml", OperatorConfig),
]
SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str, datetime, timedelta),
    "integer": (int,),
    "number": (float,),
    "boolean": (bool,),
}


def load_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / filename).read_text(encoding="utf-8"))
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Annotated[...] and Optional[...]; report whether None was allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            assert len(args) == 1, f"unions other than Optional are not mirrored in CRDs: {annotation}"
            annotation = args[0]
        else:
            return annotation, optional


def is_required(info: FieldInfo) -> bool:
    return info.default is PydanticUndefined and info.default_factory is None


def compare(schema: dict[str, Any], annotation: Any, path: str, problems: list[str]) -> None:
    annotation, _ = unwrap(annotation)
    origin = typing.get_origin(annotation)
    kind = schema.get("type")
    if "properties" in schema:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            problems.append(f"{path}: CRD has an object with properties, model has {annotation}")
            return
        compare_object(schema, annotation, path, problems)
    elif kind == "object":
        if origin is not dict:
            problems.append(f"{path}: CRD has a map, model has {annotation}")
            return
        key_type, value_type = typing.get_args(annotation)
        assert key_type is str
        compare(schema["additionalProperties"], value_type, f"{path}.*", problems)
    elif kind == "array":
        if origin is not list:
            problems.append(f"{path}: CRD has a list, model has {annotation}")
            return
        compare(schema["items"], typing.get_args(annotation)[0], f"{path}[]", problems)
    else:
        compare_scalar(schema, annotation, path, problems)


def compare_scalar(schema: dict[str, Any], annotation: Any, path: str, problems: list[str]) -> None:
    kind = schema["type"]
    if typing.get_origin(annotation) is typing.Literal:
        values = set(typing.get_args(annotation))
        if set(schema.get("enum", [])) != values:
            problems.append(f"{path}: enum {schema.get('enum')} vs Literal {sorted(values)}")
        return
    if "enum" in schema:
        problems.append(f"{path}: CRD has enum {schema['enum']}, model has plain {annotation}")
    allowed = SCALARS[kind]
    if annotation not in allowed:
        problems.append(f"{path}: CRD type {kind}, model type {annotation}")
    if schema.get("format") == "date-time" and annotation is not datetime:
        problems.append(f"{path}: CRD date-time, model {annotation}")
    if annotation is timedelta and schema.get("pattern") != DURATION_PATTERN:
        problems.append(f"{path}: duration field without the shared duration pattern")


def compare_object(schema: dict[str, Any], model: type[BaseModel], path: str, problems: list[str]) -> None:
    props: dict[str, Any] = schema["properties"]
    fields = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
    for missing in sorted(set(props) - set(fields)):
        problems.append(f"{path}.{missing}: in the CRD, not in {model.__name__}")
    for missing in sorted(set(fields) - set(props)):
        problems.append(f"{path}.{missing}: in {model.__name__}, not in the CRD")
    required = set(schema.get("required", []))
    for key in sorted(set(props) & set(fields)):
        _, info = fields[key]
        sub = props[key]
        where = f"{path}.{key}"
        if key == "metadata" and path == "":
            continue  # ObjectMeta is the API server's, not ours
        if (key in required) != is_required(info):
            problems.append(
                f"{where}: required in CRD={key in required}, required in model={is_required(info)}"
            )
        if "default" in sub:
            model_default = info.get_default(call_default_factory=True)
            if model_default != sub["default"]:
                problems.append(f"{where}: CRD default {sub['default']!r}, model default {model_default!r}")
        compare(sub, info.annotation, where, problems)


@pytest.mark.parametrize(("filename", "model"), CASES, ids=[c[0] for c in CASES])
def test_crd_and_model_have_the_same_fields(filename: str, model: type[BaseModel]) -> None:
    problems: list[str] = []
    compare_object(load_schema(filename), model, "", problems)
    assert not problems, "CRD and model drifted:\n" + "\n".join(problems)


def test_drift_check_notices_a_missing_field() -> None:
    """The checker itself must fail on drift, or the test above proves nothing."""
    schema = load_schema("databases.dbaasctl.io.yaml")
    schema["properties"]["spec"]["properties"]["newField"] = {"type": "string", "description": "x"}
    del schema["properties"]["status"]["properties"]["rotationToken"]
    schema["properties"]["spec"]["properties"]["deletionPolicy"]["enum"].append("Orphan")
    problems: list[str] = []
    compare_object(schema, Database, "", problems)
    assert any(".spec.newField" in p for p in problems)
    assert any(".status.rotationToken" in p for p in problems)
    assert any(".spec.deletionPolicy" in p and "Orphan" in p for p in problems)


def walk_properties(schema: dict[str, Any], path: str) -> typing.Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}.{key}", sub
        yield from walk_properties(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_properties(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk_properties(schema["items"], f"{path}[]")


@pytest.mark.parametrize("filename", [c[0] for c in CASES])
def test_every_field_is_described(filename: str) -> None:
    schema = load_schema(filename)
    assert schema.get("description")
    undocumented = [
        path
        for path, sub in walk_properties(schema, "")
        if path != ".metadata" and not sub.get("description")
    ]
    assert not undocumented, f"fields without description: {undocumented}"


@pytest.mark.parametrize("filename", [c[0] for c in CASES])
def test_crd_shape(filename: str) -> None:
    crd = yaml.safe_load((CRDS / filename).read_text(encoding="utf-8"))
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == "dbaasctl.io"
    assert crd["spec"]["names"]["categories"] == ["dbaas"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1"
    assert version["served"]
    assert version["storage"]
    assert version["subresources"] == {"status": {}}
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    ready = [c for c in version.get("additionalPrinterColumns", []) if c["name"] == "Ready"]
    if ready:
        assert ready[0]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'


def test_database_printer_columns() -> None:
    crd = yaml.safe_load((CRDS / "databases.dbaasctl.io.yaml").read_text(encoding="utf-8"))
    printed = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    columns = [c["name"] for c in printed if not c.get("priority")]
    assert columns == ["Ready", "Reason", "Endpoint", "Secret", "Deleting", "Age"]
    wide = [c for c in printed if c.get("priority")]
    assert [(c["name"], c["priority"], c["jsonPath"]) for c in wide] == [
        ("Message", 1, '.status.conditions[?(@.type=="Ready")].message')
    ]
    assert crd["spec"]["names"]["shortNames"] == ["db"]


def test_class_name_and_key_rules_match_the_model() -> None:
    """The CRD's admission patterns and the model's own checks accept the same names."""
    from dbaasctl.api import databaseclass

    ops = load_schema("databaseclasses.dbaasctl.io.yaml")["properties"]["spec"]["properties"]["operations"]
    for op in ("create", "delete", "rotate"):
        props = ops["properties"][op]["properties"]
        assert props["name"]["pattern"] == f"^{databaseclass._PROCEDURE.pattern}$"
        (rule,) = props["inputs"]["x-kubernetes-validations"]
        assert f"'^{databaseclass._IDENT.pattern}$'" in rule["rule"]
        assert f"'^({databaseclass._INDEX.pattern})$'" in rule["rule"]
