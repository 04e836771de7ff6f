"""Password hashes: salted PBKDF2-HMAC-SHA256, stored as ``pbkdf2_sha256$iterations$salt$hash``
(salt and hash in Base64); never the password itself. And the password policy (``check_password``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from ..errors import InvalidParameter

log = logging.getLogger(__name__)

ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join(
        ["pbkdf2_sha256", str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def check_password(values: dict[str, Any], password: str, username: str) -> None:
    """The password policy (settings ``password.policy.*``, CloudStack's names and defaults)."""
    rules = (
        (int(values.get("password.policy.minimum.length", 0)), len(password), "characters"),
        (int(values.get("password.policy.minimum.uppercase.letters", 0)),
         sum(1 for c in password if "A" <= c <= "Z"), "uppercase letters"),
        (int(values.get("password.policy.minimum.lowercase.letters", 0)),
         sum(1 for c in password if "a" <= c <= "z"), "lowercase letters"),
        (int(values.get("password.policy.minimum.digits", 0)), sum(1 for c in password if c.isdigit()),
         "digits"),
        (int(values.get("password.policy.minimum.special.characters", 0)),
         sum(1 for c in password if not c.isalnum()), "special characters"),
    )
    if not password:
        raise InvalidParameter("the password is empty")
    for minimum, have, what in rules:
        if have < minimum:
            raise InvalidParameter(f"the password must have at least {minimum} {what}")
    if not values.get("password.policy.allowPasswordToContainUsername", True) and username \
            and username.lower() in password.lower():
        raise InvalidParameter("the password must not contain the user name")
    pattern = str(values.get("password.policy.regex", ".+")) or ".+"
    try:
        if re.fullmatch(pattern, password) is None:
            raise InvalidParameter("the password does not match the password policy's expression")
    except re.error:
        log.error("password.policy.regex %r is not a regular expression; it is not applied", pattern)
