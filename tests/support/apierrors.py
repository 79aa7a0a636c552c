"""API errors as FakeKube raises them, for tests that inject failures: the same ApiError KubeClient
builds from a Status answer, and the connection errors aiohttp raises."""

from __future__ import annotations

from typing import Any

import aiohttp

from dbaasctl.kube.errors import ApiError
from dbaasctl.kube.resources import JsonDict


def status_error(code: int, reason: str, message: str, **details: Any) -> ApiError:
    """An ApiError exactly as KubeClient builds it from a Status answer."""
    body: JsonDict = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    body |= {"reason": reason, "message": message, "details": details}
    return ApiError.from_status(body)


def conflict(
    message: str = "the object has been modified; please apply your changes to the latest version",
) -> ApiError:
    return status_error(409, "Conflict", message)


def server_error(code: int = 500, message: str = "etcdserver: request timed out") -> ApiError:
    return status_error(code, "InternalError" if code == 500 else "ServiceUnavailable", message)


def gone(message: str = "too old resource version") -> ApiError:
    return status_error(410, "Expired", message)


def connection_reset() -> aiohttp.ClientError:
    return aiohttp.ClientOSError(104, "Connection reset by peer")
