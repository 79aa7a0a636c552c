"""The previous Secret of a two-phase rotation: where the superseded credentials wait for retire.

Status may not hold credentials, and the retire procedure's inputs may need them (`previous.username`)
after an operator restart, so they are kept in a Secret of their own, owned by the Database like the
credentials Secret: written before the new credentials, deleted only after retire succeeded. Its absence
while a retire intent is recorded is therefore the durable evidence that retire ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from dbaasctl.controller.secrets import decode_data, inspect_secret

__all__ = ["PREVIOUS_SUFFIX", "previous_secret_name", "superseded_data"]

PREVIOUS_SUFFIX = "-previous"
_MAX_NAME = 253


def previous_secret_name(secret_name: str) -> str:
    """`<secretName>-previous`, shortened with a digest when that would exceed a Secret name's length."""
    name = secret_name + PREVIOUS_SUFFIX
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(secret_name.encode()).hexdigest()[:10]
    keep = _MAX_NAME - len(PREVIOUS_SUFFIX) - len(digest) - 1
    return f"{secret_name[:keep].rstrip('.-')}-{digest}{PREVIOUS_SUFFIX}"


def superseded_data(secret: Mapping[str, Any] | None, db: Mapping[str, Any]) -> dict[str, str]:
    """The data of our Secret as we wrote it, which a rotation supersedes; empty when the Secret is
    missing, not ours or modified (then nothing trustworthy names the credentials in use)."""
    state = inspect_secret(secret, db)
    if secret is None or not state.owned or state.drifted:
        return {}
    return {k: v or "" for k, v in decode_data(secret).items()}


def previous_view_data(secret: Mapping[str, Any] | None, db: Mapping[str, Any]) -> dict[str, str] | None:
    """The previous Secret's data, None when it does not exist or is not ours."""
    if secret is None or not inspect_secret(secret, db).owned:
        return None
    return {k: v or "" for k, v in decode_data(secret).items()}
