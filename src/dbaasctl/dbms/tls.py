"""What a live DBMS link actually is, read from the connection itself, and the policy over it.

A DSN's `sslmode=prefer` (asyncpg's default) or a MySQL `ssl-mode=PREFERRED` says what the client would
like; a server without TLS silently turns that into plaintext, and an unverified certificate protects
against nobody who can intercept the link. The admin login and every password a procedure issues cross
it, so the state is taken from the connection the operator really uses:

- `verified`: TLS, and the client checked the server's certificate against a trusted CA
  (`sslmode=verify-ca` / `verify-full` with `sslrootcert`, MySQL `ssl-ca` / `ssl-mode=VERIFY_*`);
- `encrypted`: TLS without certificate verification (`sslmode=require` / `prefer`, `ssl-mode=REQUIRED`);
  confidential against a passive listener only;
- `plaintext`: no TLS;
- `unknown`: not observed yet, or the driver cannot tell (ODBC hides the socket; see the ODBC driver).

The policy (`minimum`) fails closed: `unknown` satisfies only `plaintext`.
"""

from __future__ import annotations

import ssl
from enum import StrEnum

__all__ = ["TlsState", "from_ssl_object", "satisfies"]


class TlsState(StrEnum):
    UNKNOWN = "unknown"
    PLAINTEXT = "plaintext"
    ENCRYPTED = "encrypted"
    VERIFIED = "verified"


_RANK = {TlsState.UNKNOWN: 0, TlsState.PLAINTEXT: 0, TlsState.ENCRYPTED: 1, TlsState.VERIFIED: 2}
#: Policy values, weakest first (the CRD enum of spec.tls.minimum).
MINIMUMS = (TlsState.PLAINTEXT, TlsState.ENCRYPTED, TlsState.VERIFIED)


def from_ssl_object(obj: ssl.SSLObject | ssl.SSLSocket | None) -> TlsState:
    """The state of one connection from its transport's `ssl_object` (None: a plain socket)."""
    if obj is None:
        return TlsState.PLAINTEXT
    context = obj.context
    if context.verify_mode == ssl.CERT_REQUIRED and obj.getpeercert() is not None:
        return TlsState.VERIFIED
    return TlsState.ENCRYPTED


def satisfies(state: TlsState, minimum: TlsState) -> bool:
    """Does a link in `state` meet the policy `minimum`? `unknown` meets only `plaintext`."""
    if minimum is TlsState.PLAINTEXT or minimum is TlsState.UNKNOWN:
        return True
    return state is not TlsState.UNKNOWN and _RANK[state] >= _RANK[minimum]
