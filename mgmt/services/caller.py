"""Who makes a call: the user, their account and domain, and whether they administer the cloud."""

from __future__ import annotations

from dataclasses import dataclass

ROOT_ADMIN, USER = 1, 0  # CloudStack's account types


@dataclass(frozen=True)
class Caller:
    """Who made a request."""

    user_id: int
    account_id: int
    account_type: int
    secret_key: str
    username: str = ""
    user_uuid: str = ""
    account_name: str = ""
    account_uuid: str = ""
    domain_id: int = 0
    domain_uuid: str = ""
    domain_name: str = ""

    @property
    def is_admin(self) -> bool:
        return self.account_type == ROOT_ADMIN
