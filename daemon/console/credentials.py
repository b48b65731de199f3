"""Nurse passwords, stored as scrypt hashes (hashlib.scrypt: a standard memory-hard KDF in the
standard library, so no extra dependency), and the sessions that a login opens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

# n=2**14, r=8, p=1: the parameters RFC 7914 and OWASP list for interactive logins (~16 MiB).
_N, _R, _P = 2**14, 8, 1
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"{_PREFIX}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    return len(parts) == 6 and parts[0] == _PREFIX and all(p.isdigit() for p in parts[1:4])


def verify_password(password: str, stored: str) -> bool:
    if not is_password_hash(stored):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    try:
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


# A dummy hash checked for unknown usernames, so a login's timing does not say who exists.
DUMMY_HASH = hash_password(secrets.token_hex(8))


@dataclass
class Session:
    username: str
    created_s: float
    last_seen_s: float
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def expired(self, now_s: float, ttl_s: float, idle_s: float) -> bool:
        return now_s - self.created_s > ttl_s or now_s - self.last_seen_s > idle_s

    def __repr__(self) -> str:  # never print the tokens
        return f"Session({self.username!r})"


class Sessions:
    """In memory: a console restart logs everyone out, which is the safe direction."""

    def __init__(self, ttl_s: float, idle_s: float) -> None:
        self.ttl_s, self.idle_s = ttl_s, idle_s
        self._by_token: dict[str, Session] = {}

    def open(self, username: str, now_s: float) -> Session:
        session = Session(username, now_s, now_s)
        self._by_token[session.token] = session
        return session

    def get(self, token: str | None, now_s: float) -> Session | None:
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if session.expired(now_s, self.ttl_s, self.idle_s):
            del self._by_token[token]
            return None
        session.last_seen_s = now_s
        return session

    def close(self, token: str) -> Session | None:
        return self._by_token.pop(token, None)

    def expire(self, now_s: float) -> list[Session]:
        gone = [s for s in self._by_token.values() if s.expired(now_s, self.ttl_s, self.idle_s)]
        for session in gone:
            del self._by_token[session.token]
        return gone

    def users(self) -> set[str]:
        return {s.username for s in self._by_token.values()}
