"""The credentials Secret: what we write, how we recognise ours, how we notice tampering.

Ownership is the controller ownerReference carrying the Database's uid, nothing weaker: a Secret that
merely has the right name (or even our labels) is someone else's and is never overwritten
(`SecretConflict`). Our labels exist so the operator can watch only its own Secrets.

Drift: we cannot re-derive a password (only the DBA's procedure can issue one), so when the data of our
keys was edited or removed the repair is a rotation, which yields fresh, consistent credentials. To notice
edits without keeping a copy, each write stamps the Secret with a SHA-256 checksum of our keys and values
(the annotation sits on the Secret itself, so it tells a reader nothing the data does not already) and
the list of our keys. Keys a user adds, and labels or annotations a user sets, are left alone: rotation
patches only our keys, our labels and our bookkeeping annotations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbaasctl.primitives.versionmemo import VersionMemo

__all__ = [
    "CHECKSUM_ANNOTATION",
    "DATABASE_LABEL",
    "GENERATION_ANNOTATION",
    "KEYS_ANNOTATION",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "SecretState",
    "build_secret",
    "checksum",
    "decode_data",
    "inspect_secret",
    "metadata_repair_patch",
    "owner_reference",
    "release_patch",
    "secret_generation",
    "write_patch",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "dbaasctl"
DATABASE_LABEL = "dbaasctl.io/database"
CHECKSUM_ANNOTATION = "dbaasctl.io/data-checksum"
KEYS_ANNOTATION = "dbaasctl.io/data-keys"
#: The credential generation the Secret holds: durable evidence that a create or rotate happened even
#: when recording it in the Database's status failed (see controller/database).
GENERATION_ANNOTATION = "dbaasctl.io/credential-generation"
#: The label selector of the operator's Secret informer.
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def checksum(data: Mapping[str, str]) -> str:
    canonical = json.dumps(sorted(data.items()), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def owner_reference(db: Mapping[str, Any]) -> dict[str, Any]:
    meta = db["metadata"]
    return {
        "apiVersion": db.get("apiVersion", "dbaasctl.io/v1"),
        "kind": db.get("kind", "Database"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(db_name: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, DATABASE_LABEL: _label_value(db_name)}


def _label_value(name: str) -> str:
    # Label values are at most 63 characters; a Database name may be up to 253. The full name is in the
    # ownerReference, the label only narrows watches and `kubectl get secret -l`.
    return name if len(name) <= 63 else name[:54] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in data.items()}


def decode_data(secret: Mapping[str, Any]) -> dict[str, str | None]:
    """The Secret's data as text; None for a value that is not valid base64/UTF-8."""
    return dict(_DECODED.get(secret, _decode))


#: Every pass inspects the Secret (decoding each value, hashing them) whether or not it changed. The
#: passes that look at one version follow each other closely, so a few hundred decoded versions are
#: enough: each holds a Secret's data, and this cache is not to grow the resident set with the fleet.
_DECODED: VersionMemo[dict[str, str | None]] = VersionMemo(capacity=256)
_DRIFTED: VersionMemo[bool] = VersionMemo()


def _decode(secret: Mapping[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            out[key] = None
    for key, value in (secret.get("stringData") or {}).items():  # never stored, but harmless to honour
        out[key] = value
    return out


def _annotations(data: Mapping[str, str], generation: int | None) -> dict[str, str]:
    out = {CHECKSUM_ANNOTATION: checksum(data), KEYS_ANNOTATION: ",".join(sorted(data))}
    if generation is not None:
        out[GENERATION_ANNOTATION] = str(generation)
    return out


def build_secret(
    db: Mapping[str, Any], name: str, data: Mapping[str, str], generation: int | None = None
) -> dict[str, Any]:
    """A new Secret owned by the Database."""
    meta = db["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": _labels(meta["name"]),
            "annotations": _annotations(data, generation),
            "ownerReferences": [owner_reference(db)],
        },
        "data": _encode(data),
    }


def write_patch(
    secret: Mapping[str, Any],
    db: Mapping[str, Any],
    data: Mapping[str, str],
    generation: int | None = None,
) -> dict[str, Any]:
    """Merge patch replacing our keys' data on an existing Secret of ours.

    It carries the resourceVersion we read, so a concurrent edit makes the write fail with 409 and the
    reconcile retries against the fresh object instead of overwriting what it did not see. Keys we wrote
    before and no longer produce are removed; keys we never wrote are the user's and stay, as do labels
    and annotations that are not ours.
    """
    meta = secret.get("metadata") or {}
    current = secret.get("data") or {}
    body_data: dict[str, str | None] = dict(_encode(data))
    for key in sorted(_our_keys(secret) - set(data)):
        if key in current:
            body_data[key] = None
    return {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "labels": _labels(db["metadata"]["name"]),
            "annotations": _annotations(data, generation),
        },
        "data": body_data,
    }


def metadata_repair_patch(secret: Mapping[str, Any], db: Mapping[str, Any]) -> dict[str, Any] | None:
    """Put our labels back on a Secret we own (ownerReference intact) whose labels were edited away.

    None when nothing needs repair.
    """
    meta = secret.get("metadata") or {}
    labels = meta.get("labels") or {}
    wanted = _labels(db["metadata"]["name"])
    if all(labels.get(k) == v for k, v in wanted.items()):
        return None
    return {"metadata": {"resourceVersion": meta["resourceVersion"], "labels": wanted}}


def release_patch(secret: Mapping[str, Any], db_uid: str) -> dict[str, Any] | None:
    """Hand a Secret over to its users (deletionPolicy Retain): drop our ownerReference (so garbage
    collection keeps it), our labels (so we stop watching it) and our bookkeeping annotations. The data,
    and every label, annotation or owner that is not ours, stays. None when there is nothing to drop."""
    meta = secret.get("metadata") or {}
    refs = list(meta.get("ownerReferences") or [])
    kept = [r for r in refs if r.get("uid") != db_uid]
    body: dict[str, Any] = {"resourceVersion": meta["resourceVersion"]}
    if len(kept) != len(refs):
        body["ownerReferences"] = kept or None
    labels = {k: None for k in (MANAGED_BY_LABEL, DATABASE_LABEL) if k in (meta.get("labels") or {})}
    if labels:
        body["labels"] = labels
    annotations = {
        k: None
        for k in (CHECKSUM_ANNOTATION, KEYS_ANNOTATION, GENERATION_ANNOTATION)
        if k in (meta.get("annotations") or {})
    }
    if annotations:
        body["annotations"] = annotations
    return {"metadata": body} if len(body) > 1 else None


def _our_keys(secret: Mapping[str, Any]) -> set[str]:
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(KEYS_ANNOTATION)
    if text is None:
        return set()
    return {k for k in text.split(",") if k}


@dataclass(frozen=True)
class SecretState:
    """What the controller needs to know about the Secret at the target name."""

    exists: bool
    owned: bool  # controller ownerReference with this Database's uid
    drifted: bool  # owned, but our keys' data differs from what we last wrote (or bookkeeping is gone)
    needs_metadata_repair: bool  # owned, data fine, but our labels are missing or wrong
    generation: int | None = None  # GENERATION_ANNOTATION of an owned Secret, None when absent


def secret_generation(secret: Mapping[str, Any] | None) -> int | None:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(GENERATION_ANNOTATION)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def inspect_secret(secret: Mapping[str, Any] | None, db: Mapping[str, Any]) -> SecretState:
    if secret is None:
        return SecretState(exists=False, owned=False, drifted=False, needs_metadata_repair=False)
    uid = db["metadata"]["uid"]
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    owned = any(r.get("uid") == uid and r.get("controller") for r in refs)
    if not owned:
        return SecretState(exists=True, owned=False, drifted=False, needs_metadata_repair=False)
    drifted = _DRIFTED.get(secret, _drifted)
    repair = metadata_repair_patch(secret, db) is not None
    return SecretState(
        exists=True,
        owned=True,
        drifted=drifted,
        needs_metadata_repair=repair,
        generation=secret_generation(secret),
    )


def _drifted(secret: Mapping[str, Any]) -> bool:
    """A key we wrote is gone or holds other data than the checksum we stamped says."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    keys = _our_keys(secret)
    if not keys or CHECKSUM_ANNOTATION not in annotations:
        return True
    data = decode_data(secret)
    ours: dict[str, str] = {}
    for key in keys:
        value = data.get(key)
        if value is None:
            return True
        ours[key] = value
    return bool(checksum(ours) != annotations[CHECKSUM_ANNOTATION])
