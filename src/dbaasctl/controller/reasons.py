"""The stable vocabulary of the Database controller: condition reasons and Event reasons.

Alerting rules, dashboards and runbooks key on these strings, so they are an interface: add new ones,
never rename. `docs/conditions.md` is generated from `CATALOGUE` (a unit test fails when it is stale),
so the documentation cannot drift from what the operator emits.

Messages that accompany a reason are written by the controller from facts it owns (names, keys, counts,
exception *class* names); a DBMS's own error text never goes into an Event or a condition, because it
may echo a password or a DSN. The full, redacted error is logged instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CATALOGUE",
    "COND_READY",
    "Reason",
    "render_markdown",
]

COND_READY = "Ready"

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Reason:
    name: str
    event: EventType | None  # the Event type when emitted as an Event; None: condition only
    ready: Literal["True", "False", "Unknown"] | None  # the Ready status when used as its reason
    meaning: str


# --- progress (Normal events) --------------------------------------------------------------------
CREATED = "Created"
PROVISIONED = "Provisioned"
ROTATED = "Rotated"
SECRET_REPAIRED = "SecretRepaired"
DELETED = "Deleted"
RETAINED = "Retained"
RETIRED = "Retired"
ROLLED_OUT = "RolledOut"
ROTATION_QUEUED = "RotationQueued"

# --- admission: wrong configuration, no DBMS call was made ---------------------------------------
CONFIG_NOT_FOUND = "ConfigNotFound"
ENDPOINT_NOT_FOUND = "EndpointNotFound"
CLASS_NOT_FOUND = "ClassNotFound"
CLASS_INVALID = "ClassInvalid"
DRIVER_NOT_SUPPORTED = "DriverNotSupported"
OPERATION_NOT_SUPPORTED = "OperationNotSupported"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
INVALID_PARAMETERS = "InvalidParameters"
TEMPLATE_ERROR = "TemplateError"
SECRET_CONFLICT = "SecretConflict"

# --- DBMS and API failures -------------------------------------------------------------------------
ENDPOINT_UNAVAILABLE = "EndpointUnavailable"
CREATE_FAILED = "CreateFailed"
ROTATE_FAILED = "RotateFailed"
DELETE_FAILED = "DeleteFailed"
SECRET_TEMPLATE_ERROR = "SecretTemplateError"
SECRET_WRITE_FAILED = "SecretWriteFailed"
RETIRE_FAILED = "RetireFailed"
ROLLOUT_FAILED = "RolloutFailed"
LEGACY_ANNOTATION = "LegacyAnnotation"

CATALOGUE: tuple[Reason, ...] = (
    Reason(
        CREATED,
        "Normal",
        None,
        "The create procedure succeeded and its credentials were written to the Secret (named in the note).",
    ),
    Reason(
        PROVISIONED,
        None,
        "True",
        "The database exists and the Secret holds working credentials (set after create).",
    ),
    Reason(
        ROTATED,
        "Normal",
        "True",
        "New credentials were issued and written to the Secret; the note says why (annotation, Secret "
        "deleted or changed, schedule).",
    ),
    Reason(
        RETIRED,
        "Normal",
        None,
        "Two-phase rotation: the retire procedure ended the credentials the last rotation superseded, "
        "after the class's rotation.gracePeriod (the new ones were in the Secret all along).",
    ),
    Reason(
        ROTATION_QUEUED,
        "Normal",
        "True",
        "A rotation was asked for while the previous credentials are still in their grace period; it runs "
        "once they are retired (status.previousCredentialsRetireAt), once, whatever asked for it. Ready is "
        "False instead when the Secret is missing or modified meanwhile.",
    ),
    Reason(
        ROLLED_OUT,
        "Normal",
        None,
        "After a rotation, the pod templates of the workloads that opted in (annotation "
        "dbaasctl.io/rollout-on-rotation) were annotated with the credential generation, rolling them.",
    ),
    Reason(
        SECRET_REPAIRED,
        "Normal",
        None,
        "Our labels were missing from our Secret (owner reference intact) and were put back; data untouched.",
    ),
    Reason(
        DELETED,
        "Normal",
        "False",
        "The delete procedure succeeded; the Secret is removed and the finalizer dropped next.",
    ),
    Reason(
        RETAINED,
        "Normal",
        None,
        "deletionPolicy is Retain: the database and the Secret were kept and released from the operator.",
    ),
    Reason(
        CONFIG_NOT_FOUND,
        "Warning",
        "False",
        "The OperatorConfig named by --config-name does not exist in the operator's namespace.",
    ),
    Reason(ENDPOINT_NOT_FOUND, "Warning", "False", "spec.endpoint is not declared in the OperatorConfig."),
    Reason(
        CLASS_NOT_FOUND,
        "Warning",
        "False",
        "The DatabaseClass the endpoint is bound to does not exist.",
    ),
    Reason(
        CLASS_INVALID,
        "Warning",
        "False",
        "The DatabaseClass does not pass validation (e.g. positional input keys with gaps).",
    ),
    Reason(
        DRIVER_NOT_SUPPORTED,
        "Warning",
        "False",
        "The class's driver is not available in this operator build or the endpoint was opened with another.",
    ),
    Reason(
        OPERATION_NOT_SUPPORTED,
        "Warning",
        "False",
        "The class declares no procedure for the operation needed (e.g. no rotate).",
    ),
    Reason(
        NAMESPACE_NOT_ALLOWED,
        "Warning",
        "False",
        "The endpoint's allowedNamespaces does not admit the Database's namespace.",
    ),
    Reason(
        INVALID_PARAMETERS,
        "Warning",
        "False",
        "spec.params violates the class's declared parameters (unknown, missing required, pattern, length).",
    ),
    Reason(
        TEMPLATE_ERROR,
        "Warning",
        "False",
        "A procedure input template of the class cannot be rendered for this Database (missing key, "
        "syntax error).",
    ),
    Reason(
        SECRET_CONFLICT,
        "Warning",
        "False",
        "A Secret with the target name exists and is not owned by this Database; it is never overwritten.",
    ),
    Reason(
        ENDPOINT_UNAVAILABLE,
        "Warning",
        "False",
        "Create could not reach the endpoint, or the endpoint is not usable: DSN Secret missing, DSN "
        "invalid, connection refused, timeout. Retried with backoff, and at once when the endpoint is back.",
    ),
    Reason(
        CREATE_FAILED,
        "Warning",
        "False",
        "The create procedure raised an error or returned an invalid result.",
    ),
    Reason(
        ROTATE_FAILED,
        "Warning",
        "True",
        "The rotate procedure failed. Ready stays True when the DBMS answered with an error (the Secret "
        "still holds the previous, working credentials), is Unknown when the call's outcome is unknown "
        "(timeout, broken connection: the password may have changed), False when the Secret is gone. "
        "The database is never re-created. Retried with backoff.",
    ),
    Reason(
        DELETE_FAILED,
        "Warning",
        "False",
        "The delete procedure failed or cannot be called; the Database stays (Terminating) and is retried "
        "with backoff until it succeeds.",
    ),
    Reason(
        SECRET_TEMPLATE_ERROR,
        "Warning",
        "False",
        "The class's secretFormat cannot be rendered from the procedure result; fix the class, the next "
        "attempt rotates to obtain a fresh result.",
    ),
    Reason(
        SECRET_WRITE_FAILED,
        "Warning",
        "False",
        "The DBMS issued credentials but the Secret could not be written (API server unreachable, RBAC, "
        "quota). The operator keeps them in memory and writes them before anything else; only if it "
        "restarted meanwhile does it rotate to obtain fresh ones. Never a second create.",
    ),
    Reason(
        RETIRE_FAILED,
        "Warning",
        "True",
        "The retire procedure failed; the Secret holds the new credentials (Ready stays True) and the "
        "previous ones stay valid until a retry succeeds. Rotations wait for it. Retried with backoff.",
    ),
    Reason(
        ROLLOUT_FAILED,
        "Warning",
        None,
        "A workload that opted in could not be rolled after a rotation (RBAC not granted: the chart's "
        "operator.rolloutWorkloads; API failure). The rotation itself stands; the roll-out is tried again "
        "every 30 s (status.rolledOutGeneration stays behind until it succeeds), never in retire's way.",
    ),
    Reason(
        LEGACY_ANNOTATION,
        "Normal",
        None,
        "The reference operator's annotation dbaas.bedag.ch/rotate was honoured; use dbaasctl.io/rotate "
        "(emitted once per Database and operator run).",
    ),
)

_BY_NAME = {r.name: r for r in CATALOGUE}


def get(name: str) -> Reason:
    return _BY_NAME[name]


def render_markdown() -> str:
    """The body of docs/conditions.md."""
    lines = [
        "# Conditions and Events",
        "",
        "<!-- Generated from src/dbaasctl/controller/reasons.py; tests/unit/test_controller_reasons.py"
        " fails when this file is stale. Regenerate with:",
        "     python -c 'from dbaasctl.controller.reasons import render_markdown as r; print(r(), end=\"\")'"
        " > docs/conditions.md -->",
        "",
        "Every `Database` carries a `Ready` condition (with `observedGeneration`) whose `reason` says what",
        "happened last, and the operator records an Event for each step and each failure. Reasons are a",
        "stable interface: alert on them. `kubectl get db` shows the Ready status and reason;",
        "`kubectl describe db <name>` shows the Events.",
        "",
        "Messages never contain credentials, DSNs or a DBMS's own error text (which may echo either); the",
        "operator's log has the full error, with secrets masked.",
        "",
        "Ready semantics: `True` means the database exists and the Secret holds working credentials.",
        "`status.provisionedAt` and `status.pendingOperation` (not `Ready`) decide whether the create",
        "procedure runs, so a failed rotation, a lost Secret or a call whose outcome is unknown never leads",
        "to a second create. Every condition carries the `metadata.generation` it was written for, so",
        "`kubectl wait --for=condition=Ready` works after any spec change.",
        "",
        "| Reason | Event | Ready | Meaning |",
        "|---|---|---|---|",
    ]
    for reason in CATALOGUE:
        lines.append(
            f"| `{reason.name}` | {reason.event or '-'} | {reason.ready or '-'} | {reason.meaning} |"
        )
    lines += [
        "",
        "## Rotation",
        "",
        "Credentials are rotated by the class's `rotate` procedure (never by a second `create`) when (the",
        "reference operator's annotation `dbaas.bedag.ch/rotate` is honoured like `dbaasctl.io/rotate`, with a",
        "one-time `LegacyAnnotation` Event):",
        "",
        '- the annotation `dbaasctl.io/rotate` is `"true"` (or empty, as the reference operator accepted):',
        "  rotate, then the operator removes the annotation as soon as the new credentials are in the Secret",
        "  (setting it again after that is a new request);",
        "- the annotation has any other value not yet honoured: rotate once per distinct value, recorded in",
        "  `status.rotationToken` (the annotation stays, so GitOps tools see no drift); set a new value",
        "  (a date, a counter) to rotate again;",
        "- the credentials Secret was deleted, or the data of a key the operator wrote was changed or",
        "  removed. A password cannot be re-derived, so the repair is fresh credentials. Keys, labels and",
        "  annotations a user adds to the Secret are left alone and survive rotations;",
        "- the class's `rotation.interval` has elapsed since the last rotation (or creation).",
        "",
        "A failed rotation keeps `Ready=True` with reason `RotateFailed` while the Secret still holds the",
        "previous, working credentials, and retries with backoff; `status.provisionedAt` guarantees it never",
        "turns into a create.",
        "",
        "## Deletion",
        "",
        "The finalizer `dbaasctl.io/finalizer` is added right before the first create call, so a Database",
        "that never passed admission is deleted at once. With `deletionPolicy: Delete` (default) the delete",
        "procedure runs, then the operator deletes the Secret and removes the finalizer. With `Retain` no",
        "procedure runs: the database stays, and the Secret is released (owner reference, operator labels",
        "and bookkeeping annotations removed) so it survives the Database. A delete that keeps failing",
        "leaves the Database Terminating with `Ready=False` reason `DeleteFailed` and a Warning Event;",
        "setting `spec.deletionPolicy: Retain` on it is the way out when the database cannot be deleted.",
        "",
        "## Secrets",
        "",
        "The Secret (`spec.secretName`, default `<name>-credentials`) carries the labels",
        "`app.kubernetes.io/managed-by: dbaasctl` and `dbaasctl.io/database: <name>` and a controller owner",
        "reference; the operator watches only Secrets with that label and writes only Secrets it owns. A",
        "Secret with the same name that it does not own is never overwritten (`SecretConflict`). Without a",
        "`secretFormat` in the class, the Secret has the Service Binding keys `type`, `provider`, `host`,",
        "`port`, `username`, `password`, `database` and `uri`, mapped from the usual result keys",
        "(username/user, password, database/dbName, host/server/fqdn, port); unmapped result keys are kept.",
        "",
        "Metrics for the same facts: `dbaasctl_database_operations_total{operation,result}`,",
        "`dbaasctl_databases_not_ready{reason}`, `dbaasctl_database_rotations_failing` and",
        "`dbaasctl_database_deletes_failing`.",
        "",
    ]
    return "\n".join(lines)
