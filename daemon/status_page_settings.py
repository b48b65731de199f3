"""``[status_page]`` settings, apart from the page itself so that reading a config never loads the
web server (tornado is paid for only when the page runs)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StatusPageSettings(BaseModel):
    """``[status_page]`` in the hub's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # All interfaces: the page exists for the patient's phone on the home Wi-Fi, which a
    # loopback-only default could never reach. The access code, not the bind address, protects
    # it; set 127.0.0.1 to keep it on the hub alone (e.g. behind a reverse proxy).
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port (tests)
    # A phone stays signed in this long; then the access code is asked for again.
    session_lifetime_h: float = Field(12.0, gt=0, le=24 * 31)
    # Wrong access codes per phone in 15 minutes before it must wait.
    max_wrong_codes: int = Field(5, ge=1, le=100)
    # The status section refreshes itself this often (0: never; the patient can also stop it).
    refresh_s: int = Field(30, ge=0, le=3600)
    # Optional HTTPS (see docs/status-page.md for why it is off by default on a home network).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> StatusPageSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self
