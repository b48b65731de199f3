"""The status page's per-hub access code, its sessions, and the wrong-code rate limit.

The code is shown once (``crs-hub access-code``) and only a PBKDF2-HMAC-SHA256 hash of it is kept
(standard library, 600,000 iterations as OWASP recommends), in the data directory with mode 0600.
Not scrypt: its 16 MiB working set stays resident in the daemon after the first sign-in (glibc
keeps the freed arena), a sixth of the hub's whole memory goal, while PBKDF2 needs none. The code
is 12 random digits, not a chosen password, so the hash only matters if the 0600 file leaks.
Sessions live in memory only: a restart of the daemon signs the phone out (the safe direction).

Why the sessions and the rate limit are hand-written: they are a bounded dict and a sliding
window over a few dozen lines. Tornado's signed cookies would move the session into the phone,
where it cannot be revoked when the access code is rotated or the patient signs out; an
in-memory table can, and its state never leaves this process.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ACCESS_FILE = "status-page-access.json"

# About 0.1 s per attempt on a 2-core x86 runner, well under a second on a Raspberry Pi 4; run
# in an executor thread, and the wrong-code limit bounds how often.
_ITERATIONS = 600_000
_KDF = "pbkdf2_sha256"
_DIGITS = 12  # ~40 bits; with 5 tries per 15 min a guess takes longer than any treatment course


def generate_code() -> str:
    """A code a patient can type on a phone's number pad: 12 digits in groups of 4."""
    digits = "".join(secrets.choice("0123456789") for _ in range(_DIGITS))
    return "-".join(digits[i:i + 4] for i in range(0, _DIGITS, 4))


def normalize(code: str) -> str:
    """Spaces and dashes are typing aids, not part of the code."""
    return "".join(c for c in code if c not in " -\t")


def _hash(code: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", normalize(code).encode(), salt, iterations)


class AccessCodeMissing(Exception):
    """No access code has been set for this hub yet (or its file cannot be read)."""


@dataclass(frozen=True, slots=True)
class AccessCode:
    """The stored hash of the hub's access code."""

    salt: bytes
    digest: bytes
    iterations: int = _ITERATIONS

    @property
    def fingerprint(self) -> str:
        """Names this code (not the code itself): sessions made with an older code end."""
        return self.digest[:8].hex()

    def verify(self, code: str) -> bool:
        if len(code) > 64:  # never spend the KDF on a pasted novel
            return False
        return hmac.compare_digest(_hash(code, self.salt, self.iterations), self.digest)

    @classmethod
    def from_code(cls, code: str) -> AccessCode:
        salt = secrets.token_bytes(16)
        return cls(salt, _hash(code, salt, _ITERATIONS))

    def to_json(self) -> str:
        return json.dumps({"kdf": _KDF, "iterations": self.iterations,
                           "salt": self.salt.hex(), "hash": self.digest.hex()})

    @classmethod
    def load(cls, data_dir: Path) -> AccessCode:
        path = data_dir / ACCESS_FILE
        try:
            data = json.loads(path.read_text())
            if data.get("kdf") != _KDF:
                raise ValueError(f"unknown kdf {data.get('kdf')!r}")
            iterations = int(data["iterations"])
            if iterations < 100_000:
                raise ValueError(f"{iterations} iterations is too weak")
            return cls(bytes.fromhex(data["salt"]), bytes.fromhex(data["hash"]), iterations)
        except FileNotFoundError:
            raise AccessCodeMissing(f"{path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AccessCodeMissing(f"{path} cannot be used: {exc}") from None

    def save(self, data_dir: Path) -> Path:
        """Write atomically with mode 0600: a half-written file must never lock the patient out
        of the page, and no other user may read even the hash."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / ACCESS_FILE
        tmp = path.with_name(f".{ACCESS_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, self.to_json().encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        owner = data_dir.stat()
        if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
            # Run by root (sudo) in the service's own data directory: the daemon, not root,
            # must be able to read the hash.
            os.chown(path, owner.st_uid, owner.st_gid)
        return path


@dataclass
class Session:
    token: str
    csrf: str
    expires_mono: float
    authenticated: bool = False
    code_fingerprint: str = ""
    # One message shown on the next page (post/redirect/get), then dropped.
    flash: tuple[str, str] | None = None


@dataclass
class SessionStore:
    """Sessions by opaque random token, bounded: the oldest are evicted first.

    Anonymous sessions (the login form's CSRF token) are short-lived so that a flood of login
    page requests cannot push out the patient's own session for long.
    """

    lifetime_s: float
    clock: Callable[[], float] = time.monotonic
    max_sessions: int = 64
    anonymous_lifetime_s: float = 900.0
    _sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self.clock() >= session.expires_mono:
            del self._sessions[token]
            return None
        return session

    def new(self, *, authenticated: bool) -> Session:
        self._expire()
        lifetime = self.lifetime_s if authenticated else self.anonymous_lifetime_s
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                          self.clock() + lifetime, authenticated)
        self._sessions[session.token] = session
        while len(self._sessions) > self.max_sessions:
            # Evict anonymous sessions before authenticated ones.
            victim = next((t for t, s in self._sessions.items() if not s.authenticated),
                          next(iter(self._sessions)))
            del self._sessions[victim]
        return session

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._sessions.items() if now >= s.expires_mono]:
            del self._sessions[token]

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class WrongCodeLimiter:
    """At most ``max_failures`` wrong codes per client address, and ``max_failures * 4`` for
    all clients together, in any ``window_s``: guessing 12 digits stays hopeless, and a device
    on the home network cannot keep the CPU busy hashing guesses."""

    max_failures: int = 5
    window_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _by_client: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def retry_after_s(self, client: str) -> float:
        """0 when this client may try now, else seconds until it may."""
        now = self.clock()
        waits = [self._wait(self._all, self.max_failures * 4, now)]
        mine = self._by_client.get(client)
        if mine is not None:
            waits.append(self._wait(mine, self.max_failures, now))
        return max(waits)

    def failed(self, client: str) -> int:
        now = self.clock()
        mine = self._by_client.setdefault(client, deque())
        mine.append(now)
        self._all.append(now)
        self._trim(mine, now)
        self._trim(self._all, now)
        if len(self._by_client) > 1024:  # bounded: forget the quietest addresses
            for key in [k for k, v in self._by_client.items() if not v][:512]:
                del self._by_client[key]
        return len(mine)

    def succeeded(self, client: str) -> None:
        self._by_client.pop(client, None)

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self.window_s:
            times.popleft()

    def _wait(self, times: deque[float], limit: int, now: float) -> float:
        self._trim(times, now)
        if len(times) < limit:
            return 0.0
        return times[-limit] + self.window_s - now


# --- `crs-hub access-code --config FILE` -------------------------------------------------------

def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand on the crs-hub parser (daemon/cli.py)."""
    cmd = sub.add_parser(
        "access-code", help="create or replace the status page's access code and print it once",
        description="Creates a new access code for the patient's status page, prints it once and "
        "stores only its PBKDF2 hash (mode 0600) in the data directory. Any earlier code stops "
        "working, and phones signed in with it are signed out.")
    cmd.add_argument("--config", type=Path, required=True, help="the hub's TOML config file")
    cmd.add_argument("--if-missing", action="store_true",
                     help="only create a code if none exists (for the installer)")
    cmd.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    data_dir = config.hub.data_dir
    if args.if_missing and (data_dir / ACCESS_FILE).exists():
        print(f"access code already set ({data_dir / ACCESS_FILE}); run without --if-missing "
              "to replace it")
        return 0
    code = generate_code()
    try:
        path = AccessCode.from_code(code).save(data_dir)
    except OSError as exc:
        print(f"cannot write {data_dir / ACCESS_FILE}: {exc.strerror}", file=sys.stderr)
        return 2
    # The only time the code exists outside the patient's head: not logged, not stored.
    print(f"Status page access code: {code}")
    print("Give it to the patient now; it is not shown again (only a hash is kept in "
          f"{path}). Run this command again to replace it.")
    log.info("status page access code replaced")
    return 0
