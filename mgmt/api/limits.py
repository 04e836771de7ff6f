"""What one client may cost the API: request rates per key (CloudStack's ``api.throttling.*``, answered
with 429) and failed logins per user and per source address (``incorrect.login.attempts.allowed``).

Both are in this server's memory, by design: they protect this process, reset when it restarts, and
need no write per request. Clocks are trio's (monotonic).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

LOCKOUT_SECONDS = 300.0  # how long a user (or an address) stays refused after too many failed logins
ADDRESS_FAILURES = 20  # failed logins from one address, over any users, before it is refused too
MAX_TRACKED = 100_000  # keys or names remembered at most (the oldest are forgotten first)


@dataclass
class Throttle:
    """At most ``limit`` calls per ``interval`` seconds for each key (a sliding window)."""

    enabled: bool = False
    interval: float = 1.0
    limit: int = 25
    calls: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        if not self.enabled:
            return True
        window = self.calls.get(key)
        if window is None:
            if len(self.calls) >= MAX_TRACKED:
                self.calls.pop(next(iter(self.calls)))
            window = self.calls[key] = deque()
        while window and window[0] <= now - self.interval:
            window.popleft()
        if len(window) >= self.limit:
            return False
        window.append(now)
        return True


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class LoginGuard:
    """After ``allowed`` failed logins in a row a user is refused for LOCKOUT_SECONDS, whatever the
    password (a right one then does not tell the guesser it was right); an address that fails
    ADDRESS_FAILURES times, over any users, likewise. A success clears the user's count."""

    allowed: int = 5
    users: dict[str, _Failures] = field(default_factory=dict)
    addresses: dict[str, _Failures] = field(default_factory=dict)

    def locked(self, user: str, address: str, now: float) -> bool:
        return any(f is not None and f.locked_until > now
                   for f in (self.users.get(user), self.addresses.get(address)))

    def failed(self, user: str, address: str, now: float) -> None:
        for table, key, limit in ((self.users, user, self.allowed),
                                  (self.addresses, address, ADDRESS_FAILURES)):
            entry = table.get(key)
            if entry is None:
                if len(table) >= MAX_TRACKED:
                    table.pop(next(iter(table)))
                entry = table[key] = _Failures()
            if entry.locked_until and entry.locked_until <= now:
                entry.count, entry.locked_until = 0, 0.0  # a lockout served: count afresh
            entry.count += 1
            if entry.count >= limit:
                entry.locked_until = now + LOCKOUT_SECONDS

    def succeeded(self, user: str) -> None:
        self.users.pop(user, None)
