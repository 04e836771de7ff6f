"""Request signatures as real clients make them, checked by the server's rules; expiry; passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cs.client import CloudStack, transform

from mgmt.api.signing import (
    FORMS,
    canonical_form,
    canonical_forms,
    encode,
    expiry_problem,
    parse_expires,
    sign,
    signature_matches,
)
from mgmt.services.passwords import hash_password, verify_password

KEY, SECRET = "apikey-1", "s3cr3t/+=="
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def cs_signed(command: str, **params: object) -> dict[str, str]:
    """The parameters exactly as the ``cs`` library sends them, signature included."""
    client = CloudStack(endpoint="http://127.0.0.1:9/client/api", key=KEY, secret=SECRET)
    _kind, prepared = client._prepare_request(command, **params)
    transform(prepared)
    client._sign(prepared)
    return {k: str(v) for k, v in prepared.items()}


def test_java_urlencoder_rules() -> None:
    assert encode("a b*-_.~[x]+/é") == "a%20b*-_.%7E%5Bx%5D%2B%2F%C3%A9"
    assert encode("~[x]", keep="~[]") == "~[x]"


def test_signatures_from_the_cs_library_verify() -> None:
    params = cs_signed(
        "deployVirtualMachine",
        zoneid="z-1",
        displayname="web server ~1",
        details={"cpuNumber": "2"},
        networkids=["n-1", "n-2"],
        startvm=True,
    )
    assert params["signatureVersion"] == "3" and "expires" in params
    assert signature_matches(params, SECRET) is not None
    for first in range(len(FORMS)):  # whichever form is tried first, a form that matches
        form = signature_matches(params, SECRET, first)
        assert form is not None and canonical_form(params, form) in canonical_forms(params)
    assert signature_matches(params, "another secret") is None
    assert signature_matches({**params, "zoneid": "z-2"}, SECRET) is None
    assert signature_matches({k: v for k, v in params.items() if k != "signature"}, SECRET) is None


def test_the_reference_form_and_the_client_variants_verify() -> None:
    params = {
        "command": "listVirtualMachines",
        "apiKey": KEY,
        "response": "json",
        "Zeta": "x y",
        "name": "a~[1]",
    }
    # The server's own reference: byte-order names, Java encoding.
    reference = "&".join(f"{k}={encode(v)}" for k, v in sorted(params.items())).lower()
    # libcloud: lowercased-name order, ~ [ ] left alone.
    libcloud = "&".join(
        f"{k}={encode(v, '~[]')}" for k, v in sorted(params.items(), key=lambda kv: kv[0].lower())
    ).lower()
    assert reference != libcloud
    assert {reference, libcloud} <= canonical_forms(params)
    for text in (reference, libcloud):
        assert signature_matches({**params, "signature": sign(text, SECRET)}, SECRET) is not None
    wrong_order = "&".join(f"{k}={encode(v)}" for k, v in sorted(params.items(), reverse=True)).lower()
    assert signature_matches({**params, "signature": sign(wrong_order, SECRET)}, SECRET) is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T12:30:00+0000",
        "2026-11-22T12:30:00+00:00",
        "2026-11-22T12:30:00Z",
        "2026-11-22T12:30:00 0000",
    ],
)
def test_expiry_formats(text: str) -> None:
    assert parse_expires(text) == NOW + timedelta(minutes=30)
    assert expiry_problem({"signatureVersion": "3", "expires": text}, NOW) == ""
    assert (
        expiry_problem({"signatureVersion": "3", "expires": text}, NOW + timedelta(hours=1))
        == "the request expired"
    )


def test_expiry_rules() -> None:
    assert expiry_problem({}, NOW) == ""  # no version: no expiry check (libcloud, Go clients)
    assert expiry_problem({"signatureversion": "3"}, NOW) == "signatureVersion=3 needs an expires parameter"
    assert "is not a date" in expiry_problem({"signatureVersion": "3", "expires": "soon"}, NOW)
    assert "is not a date" in expiry_problem({"signatureVersion": "3", "expires": "2026-11-22T12:30:00"}, NOW)


def test_passwords_are_salted_pbkdf2_and_verify() -> None:
    stored = hash_password("correct horse", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert hash_password("correct horse", iterations=1000) != stored  # a new salt each time
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$1$a$b")
