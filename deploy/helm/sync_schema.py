#!/usr/bin/env python3
"""Writes the CRD-defined parts of the chart's values.schema.json from deploy/crds/ (the source of truth).

Values that become custom resources (`operatorConfig.rps/keepalive/dbms`, `databaseClasses[].spec`) must be
refused by `helm install` exactly where the API server would refuse them; otherwise a typo such as
`operationTimeout: 60 seconds` passes the schema and leaves a failed release. So those subtrees are the
CRD's OpenAPI schema, converted to JSON Schema: Kubernetes extensions dropped (CEL rules cannot be
expressed; the API server still applies them), and unknown keys refused instead of silently pruned.
Run it after editing a CRD; tests/unit/test_chart_schema.py fails while the file is stale.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CRDS = HERE.parent / "crds"
SCHEMA = HERE / "dbaasctl" / "values.schema.json"
#: Descriptions stay in the CRDs (`kubectl explain`); here they would only repeat them.
_DROPPED = ("default", "format", "nullable", "description")
#: Stricter than the CRDs, because these name Kubernetes objects (RFC 1123 subdomains).
_SUBDOMAIN = {
    "type": "string",
    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "minLength": 1,
    "maxLength": 253,
}


def crd_spec(filename: str) -> dict[str, Any]:
    doc = yaml.safe_load((CRDS / filename).read_text(encoding="utf-8"))
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3 (structural, as in a CRD) to JSON Schema draft-07."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`null` means "the operator's default" in values."""
    return {**schema, "type": [schema["type"], "null"]}


def derived() -> dict[str, Any]:
    """values.schema.json with its CRD-defined subtrees replaced."""
    values = json.loads(SCHEMA.read_text(encoding="utf-8"))
    config = to_json_schema(crd_spec("operatorconfigs.dbaasctl.io.yaml"))
    props = values["properties"]["operatorConfig"]["properties"]
    props["rps"] = nullable(config["properties"]["rps"])
    props["keepalive"] = nullable(config["properties"]["keepalive"])
    props["tls"] = nullable(config["properties"]["tls"])
    dbms = config["properties"]["dbms"]
    dbms["items"]["properties"]["databaseClassName"] = {
        **dbms["items"]["properties"]["databaseClassName"],
        **_SUBDOMAIN,
    }
    endpoint = dbms["items"]["properties"]["endpoints"]["items"]
    endpoint["properties"]["secretKeyRef"]["properties"]["name"] = {
        **endpoint["properties"]["secretKeyRef"]["properties"]["name"],
        **_SUBDOMAIN,
    }
    # The CRD's CEL rule `has(self.dsn) != has(self.secretKeyRef)`.
    endpoint["oneOf"] = [{"required": ["dsn"]}, {"required": ["secretKeyRef"]}]
    props["dbms"] = dbms
    klass = values["properties"]["databaseClasses"]["items"]["properties"]
    klass["spec"] = to_json_schema(crd_spec("databaseclasses.dbaasctl.io.yaml"))
    return values


def render() -> str:
    return json.dumps(derived(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA.write_text(render(), encoding="utf-8")
    print(f"wrote {SCHEMA}", file=sys.stderr)
