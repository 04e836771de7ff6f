"""Who makes a call: the user, their account and domain, and whether they administer the cloud."""

from __future__ import annotations

from dataclasses import dataclass

USER, ROOT_ADMIN, DOMAIN_ADMIN = 0, 1, 2  # CloudStack's account types
PROJECT = 5  # a project's own account: it owns the project's resources and has no users


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
    domain_path: str = "/"  # "/" for ROOT, "/sales/eu/" below it

    @property
    def is_admin(self) -> bool:
        """The root admin: the whole cloud."""
        return self.account_type == ROOT_ADMIN

    @property
    def is_domain_admin(self) -> bool:
        """An admin of their domain and every domain below it."""
        return self.account_type == DOMAIN_ADMIN

    @property
    def manages_accounts(self) -> bool:
        """Whether the caller administers accounts (a root or domain admin)."""
        return self.account_type in (ROOT_ADMIN, DOMAIN_ADMIN)

    def sees_domain(self, path: str) -> bool:
        """Whether a domain (by path) is in this caller's reach: an admin's subtree, a user's own."""
        if self.is_admin:
            return True
        if self.is_domain_admin:
            return path.startswith(self.domain_path)
        return path == self.domain_path
