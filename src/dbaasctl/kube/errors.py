"""What went wrong talking to the API server: `ApiError` (a parsed Status) and its classification.

Callers branch on the properties (`is_conflict`, `is_gone`, ...) rather than on raw codes, so the
reading of a Status (HTTP code, reason, causes) lives in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from dbaasctl.kube.resources import JsonDict
from dbaasctl.observability.logging import redact


class ApiError(Exception):
    """A non-2xx answer (or an ERROR watch event) from the API server, parsed from its Status."""

    def __init__(
        self,
        status: int,
        reason: str = "",
        message: str = "",
        *,
        method: str = "",
        path: str = "",
        body: JsonDict | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        # Server messages can echo request content; scrub and bound them before they reach a log line.
        self.message = redact(message)[:1024]
        self.method = method
        self.path = path
        self.body = body
        self.retry_after = retry_after
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{status} {reason}: {self.message}".rstrip(": "))

    @classmethod
    def from_status(
        cls, status_obj: Mapping[str, Any], *, http_status: int = 0, method: str = "", path: str = ""
    ) -> ApiError:
        code = status_obj.get("code") or http_status or 500
        return cls(
            int(code),
            str(status_obj.get("reason") or ""),
            str(status_obj.get("message") or ""),
            method=method,
            path=path,
            body=dict(status_obj),
        )

    @property
    def causes(self) -> list[JsonDict]:
        details = (self.body or {}).get("details") or {}
        causes = details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_conflict(self) -> bool:
        return self.status == 409

    @property
    def is_already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def is_gone(self) -> bool:
        """410 Gone / Expired: the resourceVersion left history, relist."""
        return self.status == 410 or self.reason in ("Expired", "Gone")

    @property
    def is_resource_version_too_large(self) -> bool:
        if any(c.get("reason") == "ResourceVersionTooLarge" for c in self.causes):
            return True
        return self.status == 504 and "too large resource version" in self.message.lower()

    @property
    def is_forbidden(self) -> bool:
        return self.status == 403

    @property
    def is_unauthorized(self) -> bool:
        return self.status == 401

    @property
    def is_too_many_requests(self) -> bool:
        return self.status == 429

    @property
    def is_invalid(self) -> bool:
        return self.status == 422

    @property
    def is_server_error(self) -> bool:
        return self.status >= 500


class WatchIdleTimeout(Exception):
    """A watch stream was silent for longer than its idle timeout (no event, no bookmark)."""


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The Retry-After header in seconds (API Priority and Fairness sends it with 429), if readable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def error_from_response(resp: aiohttp.ClientResponse, method: str, path: str) -> ApiError:
    """Read a non-2xx answer into an ApiError (a Status body when there is one, else the raw text)."""
    text = await resp.text(errors="replace")
    retry_after = retry_after_seconds(resp.headers)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        err = ApiError.from_status(parsed, http_status=resp.status, method=method, path=path)
        err.status = resp.status
        err.retry_after = retry_after
        return err
    return ApiError(
        resp.status, resp.reason or "", text[:512], method=method, path=path, retry_after=retry_after
    )


_EXPLAINED_REFUSALS = frozenset({403})


def describe_failure(exc: BaseException) -> str:
    """A failed API call in a user's words: the server's status and reason, or what happened to the link.

    For a permission refusal (403) the server's own message follows: it names the missing right or the
    admission plugin that refused, and an administrator must act on it. Other messages (400, 422) can
    quote the request body, which may hold credentials, so they stay in the operator's log. Anything
    else is named by its type only: its text may be anything, and not every caller logs it.
    """
    if isinstance(exc, ApiError):
        status = f"{exc.status} {exc.reason}".strip()
        if exc.status in _EXPLAINED_REFUSALS and exc.message:
            return f"{status}: {exc.message}"
        return status
    if isinstance(exc, TimeoutError):
        return "the API server did not answer in time"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "the connection to the API server failed"
    return f"unexpected error ({type(exc).__name__})"
