"""`Database` (dbaasctl.io/v1, namespaced, short name `db`): one end-user request for a database.

Mirrors deploy/crds/databases.dbaasctl.io.yaml; tests/unit/test_api_drift.py fails when the
two disagree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dbaasctl.api.common import ApiModel, ObjectMeta, Timestamp
from dbaasctl.api.conditions import Condition

__all__ = [
    "API_VERSION",
    "DELETION_POLICIES",
    "FINALIZER",
    "GROUP",
    "KIND",
    "LEGACY_ROTATE_ANNOTATION",
    "PLURAL",
    "ROTATE_ANNOTATION",
    "VERSION",
    "Database",
    "DatabaseSpec",
    "DatabaseStatus",
    "DeletionPolicy",
    "PendingOperation",
]

GROUP = "dbaasctl.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Database"
PLURAL = "databases"
#: Setting this annotation asks for a credential rotation; see DatabaseStatus.rotation_token.
ROTATE_ANNOTATION = "dbaasctl.io/rotate"
#: The reference operator's rotate annotation, honoured as an alias of ROTATE_ANNOTATION.
LEGACY_ROTATE_ANNOTATION = "dbaas.bedag.ch/rotate"
FINALIZER = "dbaasctl.io/finalizer"

DeletionPolicy = Literal["Delete", "Retain"]
#: What each policy does, in the words the CRD's description uses (a unit test holds them together).
DELETION_POLICIES: dict[str, str] = {
    "Delete": "Delete (default): the class's delete procedure drops the database, then the Secret is deleted",
    "Retain": "Retain: no procedure runs; the database and the Secret are kept, and the Secret is released "
    "(owner reference and operator labels removed) so that it outlives this object",
}


class DatabaseSpec(ApiModel):
    endpoint: str
    params: dict[str, str] = Field(default_factory=dict)
    deletion_policy: DeletionPolicy = "Delete"
    secret_name: str | None = None


class PendingOperation(ApiModel):
    """A procedure call that was started and whose outcome is not recorded yet (the intent marker)."""

    name: Literal["create", "rotate", "retire"]
    started_at: Timestamp
    #: The rotate annotation value this call honours; recorded as status.rotationToken with its outcome.
    rotation_token: str | None = None


class DatabaseStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    secret_name: str | None = None
    endpoint: str | None = None
    provisioned_at: Timestamp | None = None
    last_rotation_time: Timestamp | None = None
    #: The last distinct value of the rotate annotation (other than "true") already honoured;
    #: a new value means "rotate again", the same value means "already done".
    rotation_token: str | None = None
    credential_generation: int | None = None
    #: Written (with a resourceVersion precondition) right before create or rotate is called, cleared
    #: when the outcome is recorded; while set, spec.endpoint and spec.params are immutable.
    pending_operation: PendingOperation | None = None
    #: Two-phase rotation: when the retire procedure is due to end the credentials the last rotation
    #: superseded (kept in the Secret `<secretName>-previous` until then); None when none are pending.
    previous_credentials_retire_at: Timestamp | None = None
    #: With roll-out of consumers on: the credential generation the opted-in workloads were rolled to.
    #: Set behind credentialGeneration in the same write that records a rotation, caught up once the
    #: roll-out is done, so an operator that stops in between still rolls them after its restart.
    rolled_out_generation: int | None = None
    #: When the delete procedure succeeded; from then on only the Secret and the finalizer are removed.
    deleted_at: Timestamp | None = None


class Database(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: DatabaseSpec
    status: DatabaseStatus = Field(default_factory=DatabaseStatus)

    @property
    def key(self) -> str:
        """The work-queue key, `namespace/name`."""
        return f"{self.metadata.namespace or ''}/{self.metadata.name}"

    @property
    def secret_name(self) -> str:
        """The credentials Secret's name: `spec.secretName`, else `<name>-credentials`."""
        return self.spec.secret_name or f"{self.metadata.name}-credentials"
