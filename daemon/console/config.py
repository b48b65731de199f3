"""The console's TOML config, validated by pydantic (unknown keys are errors).

Bad config: ``ConfigError`` with ``path.to.field: reason`` lines, like the hub's config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon.config import ConfigError, MqttSettings, problems_from, read_toml
from daemon.console.credentials import is_password_hash

PSEUDONYM = r"^[a-z0-9][a-z0-9-]*$"
# A nurse's username is the last level of the ack topic. "response" is taken by the hub's ack
# responses (.../alert/ack/response/<team>), so it can never be a login.
USERNAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
RESERVED_USERNAMES = frozenset({"response"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleSettings(_Section):
    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(8088, ge=0, le=65535)
    # A nurse's session ends this long after login (and after this long idle), whichever first.
    session_ttl_s: int = Field(8 * 3600, ge=60, le=7 * 24 * 3600)
    session_idle_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # Hubs send a heartbeat every 30 s; three missed ones make the hub "stale" on the page.
    heartbeat_stale_s: int = Field(90, ge=10)
    # The ward page reloads itself so that a screen left open shows new alerts (no JavaScript:
    # a meta refresh). 0 turns it off; a note being typed on the ward page is lost by a reload.
    refresh_s: int = Field(30, ge=0, le=3600)
    # Set behind TLS (a reverse proxy): the session cookie is then never sent over plain HTTP.
    cookie_secure: bool = False
    vitals_retention_days: int = Field(8, ge=1, le=400)
    # The broker keeps the console's MQTT session (and queues alert events) this long while the
    # console is down, so the history has what happened meanwhile; 0: a clean session each time.
    # The client id must then stay the same and be this console's alone.
    client_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "crs-console"
    session_expiry_s: int = Field(86400, ge=0, le=30 * 86400)


class PatientRef(_Section):
    hub: Annotated[str, Field(pattern=PSEUDONYM)]
    patient: Annotated[str, Field(pattern=PSEUDONYM)]


class Team(_Section):
    id: Annotated[str, Field(pattern=PSEUDONYM)]
    patients: list[PatientRef] = Field(default_factory=list)


class Nurse(_Section):
    username: Annotated[str, Field(pattern=USERNAME)]
    team: str
    # `crs-hub console --hash-password` prints one (scrypt). Never the password itself.
    password_hash: str

    @field_validator("username")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_USERNAMES:
            raise ValueError(f"{value!r} is reserved (a level of the hub's ack response topic)")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, value: str) -> str:
        if not is_password_hash(value):
            raise ValueError("not a scrypt hash from `crs-hub console --hash-password`")
        return value


class ConsoleConfig(_Section):
    console: ConsoleSettings
    mqtt: MqttSettings
    teams: list[Team] = Field(min_length=1)
    nurses: list[Nurse] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> ConsoleConfig:
        team_ids = [team.id for team in self.teams]
        if len(set(team_ids)) != len(team_ids):
            raise ValueError("teams: team ids must be unique")
        usernames = [nurse.username for nurse in self.nurses]
        if len(set(usernames)) != len(usernames):
            raise ValueError("nurses: usernames must be unique")
        seen: dict[tuple[str, str], str] = {}
        for team in self.teams:
            for ref in team.patients:
                other = seen.setdefault((ref.hub, ref.patient), team.id)
                if other != team.id or sum(1 for r in team.patients if r == ref) > 1:
                    raise ValueError(f"teams: {ref.hub}/{ref.patient} is listed twice "
                                     f"({other}, {team.id}); a patient belongs to one team")
        for nurse in self.nurses:
            if nurse.team not in team_ids:
                raise ValueError(f"nurses: {nurse.username}: unknown team {nurse.team!r}")
        return self

    def team_of(self, username: str) -> Team | None:
        for nurse in self.nurses:
            if nurse.username == username:
                return next(team for team in self.teams if team.id == nurse.team)
        return None


def parse_console_config(data: dict[str, object]) -> ConsoleConfig:
    try:
        return ConsoleConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc)) from None


def load_console_config(path: Path) -> ConsoleConfig:
    return parse_console_config(read_toml(path))
