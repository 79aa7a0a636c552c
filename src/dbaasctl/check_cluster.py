"""`dbaasctl check --kubeconfig`: the OperatorConfig, DatabaseClasses and DSN Secrets as the cluster has them.

A DBA should not have to export YAML to check what is deployed. This reads, with the caller's own
credentials, the OperatorConfig(s) in the operator's namespace, every DatabaseClass, and each DSN Secret
an endpoint references (one GET per Secret, so `get` on those Secrets is all the access it needs).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from dbaasctl.api.operatorconfig import OperatorConfig
from dbaasctl.check import CLUSTER, CheckInputError, Inputs
from dbaasctl.connect import open_client
from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import SECRETS, ResourceRef
from dbaasctl.kube.rest import KubeClient

OPERATOR_CONFIGS = ResourceRef("dbaasctl.io", "v1", "operatorconfigs", True, "OperatorConfig")
DATABASE_CLASSES = ResourceRef("dbaasctl.io", "v1", "databaseclasses", False, "DatabaseClass")
#: Where the chart and the samples install the operator.
DEFAULT_NAMESPACE = "dbaasctl-system"


@dataclass(frozen=True)
class LiveSource:
    kubeconfig: str | None
    context: str | None
    namespace: str
    #: None: every OperatorConfig in the namespace.
    config_name: str | None


def _denied(exc: ApiError, what: str) -> CheckInputError:
    if exc.is_forbidden or exc.is_unauthorized:
        return CheckInputError(
            f"the API server refused to let you read {what} (HTTP {exc.status}); ask for get/list"
        )
    if exc.is_not_found:
        return CheckInputError(f"{what} not found")
    return CheckInputError(f"cannot read {what}: HTTP {exc.status}")


async def _read(client: KubeClient, source: LiveSource, inputs: Inputs) -> None:
    ns = source.namespace
    if source.config_name:
        what = f"OperatorConfig {ns}/{source.config_name}"
        try:
            configs = [await client.get(OPERATOR_CONFIGS.path(ns, source.config_name))]
        except ApiError as exc:
            raise _denied(exc, what) from None
    else:
        what = f"the OperatorConfigs in namespace {ns}"
        try:
            configs = (await client.list(OPERATOR_CONFIGS.path(ns))).get("items") or []
        except ApiError as exc:
            raise _denied(exc, what) from None
        if not configs:
            raise CheckInputError(f"no OperatorConfig in namespace {ns} (see --namespace)")
    try:
        classes = (await client.list(DATABASE_CLASSES.path())).get("items") or []
    except ApiError as exc:
        raise _denied(exc, "DatabaseClasses") from None
    for doc in configs:
        doc.setdefault("kind", "OperatorConfig")
        inputs.add(doc, CLUSTER)
    for doc in classes:
        doc.setdefault("kind", "DatabaseClass")
        inputs.add(doc, CLUSTER)
    wanted = {
        ep.secret_key_ref.name
        for config in configs
        for _, ep in OperatorConfig.model_validate(config).spec.endpoints()
        if ep.secret_key_ref is not None
    }
    for name in sorted(wanted):
        try:
            secret = await client.get(SECRETS.path(ns, name))
        except ApiError as exc:
            if exc.is_not_found:
                continue  # reported per endpoint, like a Secret missing from the files
            raise _denied(exc, f"Secret {ns}/{name}") from None
        secret.setdefault("kind", "Secret")
        inputs.add(secret, CLUSTER)


async def read_cluster(source: LiveSource, inputs: Inputs) -> None:
    """Add the live objects to `inputs`. Raises CheckInputError (and KubeconfigError) for the user."""
    client = await open_client(source.kubeconfig, context=source.context)
    try:
        await _read(client, source, inputs)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CheckInputError(f"cannot reach the API server at {client.base_url}: {exc}") from None
    finally:
        await client.close()
