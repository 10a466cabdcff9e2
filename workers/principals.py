"""Who is calling: named principals behind bearer tokens, the admin role, signed session values.

``PDEFORGE_API_TOKENS="alice:tokA,bob:tokB"`` names two principals; a plain entry
(``"tokC"``, the earlier form) becomes a principal named after a hash of its token
(``token-1a2b3c4d5e6f``), so old deployments keep working and their jobs stay apart.
Principals listed in ``PDEFORGE_API_ADMINS`` see and change every job.  With no token
configured there is no authentication and every caller is :data:`ANONYMOUS`, an admin.

A session value (the browser cookie) is ``principal.expiry.signature`` with an HMAC-SHA256
signature; it is accepted wherever a bearer token is, until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """A caller: ``name`` owns job handles; an ``admin`` sees and changes every job."""

    name: str
    admin: bool = False


#: the caller when authentication is off (it sees everything, like an admin)
ANONYMOUS = Principal("anonymous", admin=True)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"principal name {name!r} is invalid; allowed: letters, digits, '_', '.', '-' "
                         "(at most 64, starting with a letter or digit)")
    return name


def legacy_name(token: str) -> str:
    """The principal of a plain (unnamed) token."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def parse_tokens(entries: list[str], admins: set[str]) -> dict[str, Principal]:
    """``["alice:tokA", "tokC"]`` -> ``{token: Principal}``; raises ValueError on a bad entry, a
    token given twice, or an admin name that names no principal."""
    out: dict[str, Principal] = {}
    for entry in entries:
        name, sep, token = entry.partition(":")
        if not sep or not _NAME.match(name) or not token:
            name, token = legacy_name(entry), entry
        if token in out:
            raise ValueError(f"a token of principal {name!r} is configured twice")
        out[token] = Principal(name, admin=name in admins)
    unknown = admins - {p.name for p in out.values()}
    if out and unknown:
        raise ValueError(f"api_admins names unknown principals: {', '.join(sorted(unknown))}")
    return out


def sign_session(principal: str, expires: float, secret: bytes) -> str:
    payload = f"{principal}.{int(expires)}"
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def verify_session(value: str, secret: bytes, *, now: float | None = None) -> str | None:
    """The principal named by a valid, unexpired session value, else None."""
    try:
        principal, expires, mac = value.rsplit(".", 2)
        expiry = int(expires)
    except ValueError:
        return None
    good = sign_session(principal, expiry, secret).rsplit(".", 1)[1]
    if not hmac.compare_digest(good.encode(), mac.encode()):
        return None
    if expiry < (time.time() if now is None else now):
        return None
    return principal
