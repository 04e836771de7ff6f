"""CloudStack request signatures, as the server checks them and as real clients compute them.

The reference form: every parameter but ``signature``, names sorted as they are (byte order), joined
as ``name=ENC(value)`` with ``&``, lowercased, HMAC-SHA1 with the user's secret key, standard Base64.
ENC is Java's ``URLEncoder`` (UTF-8; only ``A-Z a-z 0-9 . - * _`` kept; space as ``+``) with ``+``
then written ``%20``. Clients deviate, and each deviation is accepted: libcloud, CloudMonkey 5 and
Marvin sort by the lowercased name; cs, libcloud and the Go clients leave ``~`` unescaped; libcloud
also leaves ``[`` and ``]``. Each candidate form is compared in constant time; the form a key's client
matched with last time is tried first (a client signs one way), so a request usually costs one HMAC.
Which form matched is no secret (it is how the client encodes), only the signature is.

``signatureVersion=3`` requires ``expires`` in the future (``2026-01-01T00:00:00+0000``, ``+00:00`` or
``Z``); without a version, no expiry check (as libcloud and the Go clients send none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

_KEEPS = ("", "~", "~[]")  # Java's URLEncoder, then what client libraries also leave alone


def encode(value: str, keep: str = "") -> str:
    """Java's URLEncoder on UTF-8 (space as %20 after the ``+`` replacement), keeping ``keep`` too."""
    # quote() keeps letters, digits and ``_.-~`` and writes %XX in capitals; Java also keeps ``*``
    # and escapes ``~``.
    out = quote(value, safe="*" + keep, encoding="utf-8", errors="strict")
    return out if "~" in keep or "~" not in out else out.replace("~", "%7E")


FORMS = [(by_lowered, keep) for by_lowered in (False, True) for keep in _KEEPS]  # (name order, kept)


def canonical_form(params: Mapping[str, str], form: int) -> str:
    """The string signed in form ``form`` (an index into FORMS), lowercased."""
    by_lowered, keep = FORMS[form]
    items = [(k, v) for k, v in params.items() if k.lower() != "signature"]
    items.sort(key=(lambda kv: (kv[0].lower(), kv[0])) if by_lowered else None)
    return "&".join(f"{k}={encode(v, keep)}" for k, v in items).lower()


def canonical_forms(params: Mapping[str, str]) -> set[str]:
    """Every string a real client may have signed for these parameters (lowercased)."""
    return {canonical_form(params, form) for form in range(len(FORMS))}


def sign(text: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(params: Mapping[str, str], secret: str, first: int = 0) -> int | None:
    """The form (index into FORMS) in which ``params['signature']`` signs ``params`` with ``secret``,
    trying form ``first`` first; None when it signs none of them."""
    given = next((v for k, v in params.items() if k.lower() == "signature"), "").encode()
    if not given:
        return None
    tried: set[str] = set()
    for form in [first, *(f for f in range(len(FORMS)) if f != first)]:
        text = canonical_form(params, form)
        if text in tried:
            continue
        tried.add(text)
        if hmac.compare_digest(sign(text, secret).encode(), given):
            return form
    return None


def parse_expires(text: str) -> datetime:
    """``2026-01-01T00:00:00+0000``, ``...+00:00`` or ``...Z`` (an offset is required)."""
    normalized = text.strip().replace(" ", "+")  # a '+' sent unescaped in a query string arrives as ' '
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    stamp = datetime.fromisoformat(normalized)
    if stamp.tzinfo is None:
        raise ValueError(f"expires {text!r} has no time zone offset")
    return stamp


def expiry_problem(params: Mapping[str, str], now: datetime) -> str:
    """Why the request's expiry rules it out ("" when it does not)."""
    lowered = {k.lower(): v for k, v in params.items()}
    if lowered.get("signatureversion") != "3":
        return ""
    if "expires" not in lowered:
        return "signatureVersion=3 needs an expires parameter"
    try:
        expires = parse_expires(lowered["expires"])
    except ValueError:
        return f"expires {lowered['expires']!r} is not a date like 2026-01-01T00:00:00+0000"
    return "" if expires > now else "the request expired"
