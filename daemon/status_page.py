"""The patient's status page: a sink of the monitor's outputs, served by the daemon over HTTP.

Why tornado: a mature, well-kept asyncio-native HTTP server (since 6.0 it runs on the asyncio
loop itself), so the page runs on the daemon's own event loop beside the hub (one thread, no
locks around the monitor), with no WSGI bridge or extra server process; it gives cookies, form
parsing, request size limits and connection timeouts. It replaced aiohttp because it costs
about 2.4 MiB of memory on the hub where aiohttp cost about 10.8 MiB (issue 11's memory goal;
aiohttp carries a whole HTTP client and its dependencies the page never uses).
Templates are jinja2 with autoescaping on, so nothing the hub or a request carries can inject
markup.

What the page shows comes only from the sink interface (``on_output``) and from the two
setters the shell calls (``set_link``, ``set_sound_problem``); what the patient does goes to the
monitor as typed inputs through ``submit``. The page never changes alert state itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Protocol

import jinja2
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from daemon.access_code import (
    AccessCode,
    AccessCodeMissing,
    Session,
    SessionStore,
    WrongCodeLimiter,
    normalize,
)
from daemon.alerts import Severity
from daemon.config import Config
from daemon.monitor import Acknowledgement, ManualReading, SymptomReport
from daemon.patient_messages import format_temperature
from daemon.patient_reports import SYMPTOM_BY_NAME, SYMPTOMS, ReportError, parse_temperature
from daemon.payloads import AckResponse, AlertEvent, AlertStateSnapshot, DeviceStatus, OpenAlert
from daemon.readings import Reading, Vital
from daemon.status_page_settings import StatusPageSettings
from daemon.vitals_chart import ChartScale, VitalsHistory, load_history, render_chart
from daemon.web_security import SecureHeaders

log = logging.getLogger(__name__)

COOKIE = "crs_session"


class _Output(Protocol):
    """The parts of the monitor's ``MonitorOutput`` the page reads."""

    @property
    def readings(self) -> Sequence[Reading]: ...
    @property
    def events(self) -> Sequence[AlertEvent]: ...
    @property
    def devices(self) -> Sequence[DeviceStatus]: ...
    @property
    def ack(self) -> AckResponse | None: ...


MonitorInput = Acknowledgement | ManualReading | SymptomReport
Submit = Callable[[MonitorInput], _Output]

_SEVERITY_WORDS = {
    Severity.LOW: "Notice",
    Severity.MEDIUM: "Warning",
    Severity.HIGH: "Alert",
    Severity.CRITICAL: "Urgent alert",
    Severity.EMERGENCY: "Emergency",
}
_KIND_WORDS = {
    "fever": "fever", "high_fever": "high fever", "tachycardia": "fast heart rate",
    "fever_tachycardia": "fever and fast heart rate", "symptom_reported": "symptom reported",
    "hypoxia": "low oxygen", "fever_hypoxia": "fever and low oxygen",
    "hypotension": "low blood pressure", "fever_hypotension": "fever and low blood pressure",
    "spot_check_reminder": "time to take your temperature",
}


def kind_words(kind: str) -> str:
    return _KIND_WORDS.get(kind, kind.replace("_", " "))


def tel_href(number: str) -> str:
    """``tel:`` URI of a configured number: digits and a leading + only (RFC 3966 global)."""
    digits = "".join(c for c in number if c.isdigit())
    return f"tel:{'+' if number.strip().startswith('+') else ''}{digits}"


def age_words(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute ago"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        tail = f" {minutes} min" if minutes else ""
        return f"{hours} hour{'s' if hours != 1 else ''}{tail} ago"
    return f"{hours // 24} days ago"


@dataclass
class _Device:
    device: str
    profile: str
    connected: bool | None = None
    battery_percent: int | None = None
    last_reading_at: datetime | None = None


class StatusPage:
    """The page's state (a sink) and its tornado application."""

    def __init__(
        self,
        config: Config,
        settings: StatusPageSettings,
        submit: Submit,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        tz: tzinfo | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self._submit = submit
        self._clock = clock
        self._tz = tz or datetime.now().astimezone().tzinfo or UTC
        self._data_dir = config.hub.data_dir
        self.sessions = SessionStore(settings.session_lifetime_h * 3600, clock=monotonic)
        self.limiter = WrongCodeLimiter(settings.max_wrong_codes, clock=monotonic)
        self._code: AccessCode | None = None
        self._code_stamp: tuple[int, int] | None = None
        # State from the sink interface.
        self.snapshot: AlertStateSnapshot | None = None
        self.latest: dict[Vital, Reading] = {}
        self.devices = {d.id: _Device(d.id, d.profile) for d in config.devices}
        self.link: bool | None = None
        self.sound_problem: str | None = None
        self.history = VitalsHistory()
        self._server: _BoundedServer | None = None
        self.port: int | None = None
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("daemon", "templates"),
            autoescape=True,  # every template is HTML; never trust a value to be markup-free
            undefined=jinja2.StrictUndefined,
        )

    # --- the sink -----------------------------------------------------------------------------
    def on_output(self, out: _Output, snapshot: AlertStateSnapshot) -> None:
        self.snapshot = snapshot
        for reading in out.readings:
            if reading.vital in (Vital.TEMPERATURE, Vital.HEART_RATE) \
                    and reading.sensor_contact is not False:
                previous = self.latest.get(reading.vital)
                if previous is None or reading.observed_at >= previous.observed_at:
                    self.latest[reading.vital] = reading
            device = self.devices.get(reading.device)
            if device is not None:
                if device.last_reading_at is None or reading.observed_at > device.last_reading_at:
                    device.last_reading_at = reading.observed_at
                if reading.vital is Vital.BATTERY:
                    device.battery_percent = int(reading.value)
        self.history.add_readings(out.readings)
        for status in out.devices:
            device = self.devices.setdefault(status.device, _Device(status.device, status.profile))
            device.connected = status.connected
            if status.battery_percent is not None:
                device.battery_percent = status.battery_percent
            if status.last_reading_at is not None and (
                    device.last_reading_at is None or status.last_reading_at > device.last_reading_at):
                device.last_reading_at = status.last_reading_at
        for event in out.events:
            if not event.technical and event.state in ("raised", "severity_changed") \
                    and not event.kind.is_care_team_only:
                self.history.add_marker(event.event_at, kind_words(event.kind))

    def _patient_alerts(self) -> list[OpenAlert]:
        """The open alerts the patient may see: never a care-team-only notice
        (temperature_trend, monitoring-window notices; docs/protocols.md §6)."""
        return [a for a in (self.snapshot.open if self.snapshot else [])
                if not a.kind.is_care_team_only]

    def set_link(self, connected: bool) -> None:
        self.link = connected

    def set_sound_problem(self, reason: str | None) -> None:
        self.sound_problem = reason

    def load_history(self, db_path: Path) -> None:
        """Seed the chart from the hub's store after a restart (read-only)."""
        try:
            self.history = load_history(
                db_path, self._clock(),
                off_body_below_c=self.config.thresholds.stale.off_body_below_c,
                marker_label={k: kind_words(k) for k in _KIND_WORDS})
        except Exception:
            # The chart is a convenience; a broken history must not keep the page down.
            log.exception("status page: cannot read the chart's history from %s", db_path)

    # --- serving ------------------------------------------------------------------------------
    def app(self) -> tornado.web.Application:
        routes: list[tuple[str, _Action | None, _Action | None]] = [
            ("/", self._status, None),
            ("/login", self._login_form, self._login),
            ("/logout", None, self._logout),
            ("/ack", None, self._ack),
            ("/reading", self._reading_form, self._reading),
            ("/unwell", self._unwell_form, self._unwell),
            ("/page.css", self._css, None),
        ]
        return tornado.web.Application(
            [(path, _Handler, {"page": self, "get": get, "post": post})
             for path, get, post in routes],
            default_handler_class=_Handler, default_handler_args={"page": self},
            # No access log: the page's own log lines say what was refused and why.
            log_function=lambda handler: None,
            xsrf_cookies=False,  # our own per-session CSRF token (see _auth)
            compress_response=False,
        )

    async def start(self) -> None:
        try:
            self._access_code()
        except AccessCodeMissing as exc:
            log.error("status page: no access code (%s); run 'crs-hub access-code --config "
                      "FILE' to create one. The page refuses every sign-in until then.", exc)
        context = None
        if self.settings.tls_cert_file is not None and self.settings.tls_key_file is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        # Small forms only; a phone that stalls mid-request is dropped rather than held open.
        self._server = _BoundedServer(
            self.app(), ssl_options=context, max_body_size=16 * 1024,
            max_buffer_size=64 * 1024, idle_connection_timeout=120.0, body_timeout=30.0)
        sockets = tornado.netutil.bind_sockets(self.settings.port, self.settings.host)
        self._server.add_sockets(sockets)
        # Port 0 (tests) binds a free port; report the real one.
        self.port = int(sockets[0].getsockname()[1])
        log.info("status page on %s", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls_cert_file else "http"
        return f"{scheme}://{self.settings.host}:{self.port or self.settings.port}/"

    # --- sign-in and CSRF, before every handler -----------------------------------------------
    async def _auth(self, h: _Handler) -> None:
        """Finishes the request itself when it may not go on (no session, wrong CSRF token)."""
        session = self.sessions.get(h.get_cookie(COOKIE))
        if session is not None and session.authenticated and not self._current(session):
            self.sessions.drop(session.token)
            session = None
        h.session = session
        if h.request.method == "POST":
            token = h.get_body_argument("csrf", None)
            if session is None or token is None or not hmac.compare_digest(token, session.csrf):
                log.warning("status page: POST %s refused: missing or wrong CSRF token (from %s)",
                            h.request.path, h.request.remote_ip)
                self._render(h, "message.html", status=403, heading="Please try again",
                             text="This form has expired or did not come from this "
                             "page. Go back, reload the page and try again.")
                return
        public = h.request.path in ("/login", "/page.css")
        if not public and (session is None or not session.authenticated):
            if h.request.method == "POST":
                self._render(h, "message.html", status=403, heading="Please sign in",
                             text="You are not signed in any more.")
                return
            h.redirect("/login", status=303)

    def _current(self, session: Session) -> bool:
        try:
            return session.code_fingerprint == self._access_code().fingerprint
        except AccessCodeMissing:
            return False

    def _access_code(self) -> AccessCode:
        """The stored hash, re-read when the file changes (``crs-hub access-code`` rotates it
        from another process; sessions made with the old code end with it)."""
        path = self._data_dir / "status-page-access.json"
        try:
            st = path.stat()
        except OSError:
            self._code, self._code_stamp = None, None
            raise AccessCodeMissing(f"{path} does not exist") from None
        stamp = (st.st_mtime_ns, st.st_ino)
        if self._code is None or stamp != self._code_stamp:
            self._code = AccessCode.load(self._data_dir)
            self._code_stamp = stamp
        return self._code

    # --- rendering ----------------------------------------------------------------------------
    def _render(self, h: _Handler, template: str, *, status: int = 200,
                session: Session | None = None, **values: Any) -> None:
        base = {
            "team": self.config.patient.care_team_name,
            "phone": self.config.patient.care_team_phone,
            "phone_href": tel_href(self.config.patient.care_team_phone),
            "emergency": self.config.patient.emergency_number,
            "emergency_href": tel_href(self.config.patient.emergency_number),
            "csrf": session.csrf if session else "",
            "signed_in": bool(session and session.authenticated),
            "flash": None,
            "refresh": 0,
        }
        if session is not None and session.flash is not None:
            base["flash"], session.flash = session.flash, None
        html = self._env.get_template(template).render(**{**base, **values})
        h.set_status(status)
        h.set_header("Content-Type", "text/html; charset=utf-8")
        h.finish(html)

    def _temperature(self, celsius: float) -> str:
        return format_temperature(celsius, self.config.patient.temperature_unit == "F")

    def _vital_view(self, vital: Vital, now: datetime, stale_after_s: float) -> dict[str, Any]:
        reading = self.latest.get(vital)
        if reading is None:
            return {"value": None}
        age = max(0.0, (now - reading.observed_at).total_seconds())
        # No-break spaces keep "38.6 °C" together when a narrow screen wraps the line.
        value = (self._temperature(reading.value).replace(" °", "\u00a0°")
                 if vital is Vital.TEMPERATURE else f"{reading.value:.0f} beats per minute")
        source = ("typed in by hand" if reading.device not in self.devices
                  else f"from {reading.device}")
        return {"value": value, "age": age_words(age), "stale": age > stale_after_s,
                "source": source}

    def _alert_view(self, alert: OpenAlert) -> dict[str, Any]:
        return {
            "id": alert.alert_id,
            "severity": alert.severity.value,
            "heading": f"{_SEVERITY_WORDS[alert.severity]}: {kind_words(alert.kind)}",
            "message": alert.patient_message,
            "emergency": alert.severity is Severity.EMERGENCY,
            "technical": alert.kind.is_technical,
            "acknowledged_by": alert.acknowledged_by,
            "acknowledged_at": (f"{alert.acknowledged_at.astimezone(self._tz):%H:%M}"
                                if alert.acknowledged_at else None),
            "raised_at": f"{alert.raised_at.astimezone(self._tz):%H:%M}",
        }

    def status_view(self, now: datetime) -> dict[str, Any]:
        """Everything the status template shows (tests read this too)."""
        stale = self.config.thresholds.stale
        alerts = sorted(self._patient_alerts(), key=lambda a: (-a.severity.rank, a.raised_at))
        temperature = self._vital_view(Vital.TEMPERATURE, now, stale.temperature_s)
        heart_rate = self._vital_view(Vital.HEART_RATE, now, stale.heart_rate_s)
        current = temperature["value"] is not None and not temperature["stale"]
        devices = []
        for device in self.devices.values():
            age = (age_words((now - device.last_reading_at).total_seconds())
                   if device.last_reading_at else None)
            devices.append({"id": device.device, "connected": device.connected,
                            "battery": device.battery_percent, "last": age})
        scale = ChartScale(self.config.thresholds.fever.threshold_c,
                           self.config.thresholds.fever.high_threshold_c,
                           self.config.thresholds.tachycardia.threshold_bpm,
                           self.config.patient.temperature_unit == "F", self._tz)
        self.history.trim(now)
        return {
            # No snapshot yet: the monitor has not said what is open, so nothing may look clear.
            "starting": self.snapshot is None,
            "alerts": [self._alert_view(a) for a in alerts],
            "clinical_alerts": any(not a.kind.is_technical for a in alerts),
            "readings_current": current,
            "temperature": temperature,
            "heart_rate": heart_rate,
            "devices": devices,
            "link": self.link,
            "sound_problem": self.sound_problem,
            "chart": render_chart(self.history, now, scale),
            "updated": f"{now.astimezone(self._tz):%H:%M}",
        }

    # --- handlers: each answers through ``h`` ------------------------------------------------
    async def _css(self, h: _Handler) -> None:
        css = self._env.loader.get_source(self._env, "page.css")[0]  # type: ignore[union-attr]
        h.set_header("Content-Type", "text/css; charset=utf-8")
        h.set_header("Cache-Control", "max-age=3600")
        h.finish(css)

    async def _status(self, h: _Handler) -> None:
        paused = h.get_query_argument("refresh", None) == "off" and self.settings.refresh_s > 0
        self._render(h, "status.html", session=h.signed_session,
                     refresh=0 if paused else self.settings.refresh_s, paused=paused,
                     **self.status_view(self._clock()))

    def _anonymous(self, h: _Handler) -> Session:
        return h.session if h.session is not None else self.sessions.new(authenticated=False)

    def _login_page(self, h: _Handler, session: Session, *, status: int = 200,
                    error: str | None = None) -> None:
        try:
            self._access_code()
            missing = False
        except AccessCodeMissing:
            missing = True
        self._set_cookie(h, session)
        self._render(h, "login.html", status=status, session=session, error=error,
                     missing=missing)

    async def _login_form(self, h: _Handler) -> None:
        session = self._anonymous(h)
        if session.authenticated:
            h.redirect("/", status=303)
            return
        self._login_page(h, session)

    async def _login(self, h: _Handler) -> None:
        session = h.signed_session
        client = h.request.remote_ip or "unknown"
        wait = self.limiter.retry_after_s(client)
        if wait > 0:
            log.warning("status page: sign-in from %s refused: too many wrong codes", client)
            minutes = max(1, round(wait / 60))
            self._login_page(h, session, status=429, error=(
                f"Too many wrong codes. Wait {minutes} minute{'s' if minutes != 1 else ''} "
                f"and try again. If you feel unwell, call {self.config.patient.care_team_name} "
                f"at {self.config.patient.care_team_phone} now."))
            return
        entered = h.get_body_argument("code", None)
        try:
            code = self._access_code()
        except AccessCodeMissing:
            log.error("status page: sign-in refused: no access code has been set")
            self._login_page(h, session, status=503)
            return
        if entered is None or not normalize(entered):
            self._login_page(h, session, status=400, error="Type the access code.")
            return
        ok = await asyncio.get_running_loop().run_in_executor(None, code.verify, entered)
        if not ok:
            failures = self.limiter.failed(client)
            # Never the code itself: a near miss is still most of the secret.
            log.warning("status page: wrong access code from %s (%d in 15 min)", client,
                        failures)
            self._login_page(h, session, status=401, error=(
                "That code is not right. Check it and try again."))
            return
        self.limiter.succeeded(client)
        self.sessions.drop(session.token)
        # A fresh session id on sign-in: a token seen before sign-in is worth nothing after.
        signed_in = self.sessions.new(authenticated=True)
        signed_in.code_fingerprint = code.fingerprint
        log.info("status page: signed in from %s", client)
        self._set_cookie(h, signed_in)
        h.redirect("/", status=303)

    async def _logout(self, h: _Handler) -> None:
        self.sessions.drop(h.signed_session.token)
        h.clear_cookie(COOKIE, path="/")
        h.redirect("/login", status=303)

    def _set_cookie(self, h: _Handler, session: Session) -> None:
        # Lax, not Strict: the page opened from a link in a text message must still be
        # signed in; every POST carries its CSRF token anyway.
        h.set_cookie(COOKIE, session.token, path="/", httponly=True, samesite="Lax",
                     secure=self.settings.tls_cert_file is not None,
                     max_age=int(max(1.0, session.expires_mono - self.sessions.clock())))

    def _done(self, h: _Handler, level: str, text: str, to: str = "/") -> None:
        h.signed_session.flash = (level, text)
        h.redirect(to, status=303)

    def _run(self, h: _Handler, inp: MonitorInput) -> _Output:
        try:
            return self._submit(inp)
        except Exception:
            log.exception("status page: the hub could not take the patient's %s",
                          type(inp).__name__)
            h.set_status(500)
            h.set_header("Content-Type", "text/plain; charset=utf-8")
            raise tornado.web.Finish(
                f"The hub could not record this. Call {self.config.patient.care_team_name}"
                f" at {self.config.patient.care_team_phone} directly.") from None

    async def _ack(self, h: _Handler) -> None:
        alert_id = h.get_body_argument("alert_id", None)
        open_ids = {a.alert_id for a in self._patient_alerts()}
        if alert_id is None or alert_id not in open_ids:
            log.warning("status page: acknowledgement for an alert that is not open refused")
            self._done(h, "info", "That alert is no longer open.")
            return
        out = self._run(h, Acknowledgement(alert_id=alert_id, actor="patient", at=self._clock()))
        if out.ack is not None and not out.ack.accepted:
            log.warning("status page: patient acknowledgement of %s not accepted: %s", alert_id,
                        out.ack.reason)
            self._done(h, "info", f"The hub did not take this: {out.ack.reason}.")
            return
        log.info("status page: patient acknowledged alert %s", alert_id)
        self._done(h, "ok", (
            f"Thank you. The hub has noted that you called {self.config.patient.care_team_name}. "
            "Follow their advice."))

    async def _reading_form(self, h: _Handler) -> None:
        self._render(h, "reading.html", session=h.signed_session, error=None, value="",
                     unit=self.config.patient.temperature_unit.value)

    async def _reading(self, h: _Handler) -> None:
        text = h.get_body_argument("temperature", "") or ""
        unit = h.get_body_argument("unit", "") or ""
        try:
            celsius = parse_temperature(text, unit)
        except ReportError as exc:
            log.info("status page: manual temperature rejected: %s", exc)
            self._render(h, "reading.html", status=400, session=h.signed_session,
                         error=str(exc), value=text[:12], unit=unit if unit in ("C", "F") else "C")
            return
        out = self._run(h, ManualReading(temperature_c=celsius, at=self._clock()))
        log.debug("status page: manual temperature %.2f °C", celsius)
        patient = self.config.patient
        if not (out.readings or out.events):
            # The monitor took nothing from it: never thank the patient for a reading that
            # no rule will see.
            log.error("status page: the monitor did not take the patient's thermometer reading")
            self._done(h, "error", (
                "The hub could not use this reading. If it is "
                f"{self._temperature(self.config.thresholds.fever.threshold_c)} or higher, or "
                f"you feel unwell, call {patient.care_team_name} at {patient.care_team_phone} "
                "now."))
            return
        log.info("status page: manual temperature reading entered")
        self._done(h, "ok", f"Thank you. {self._temperature(celsius)} is recorded.")

    async def _unwell_form(self, h: _Handler) -> None:
        self._render(h, "unwell.html", session=h.signed_session, symptoms=SYMPTOMS, error=None)

    async def _unwell(self, h: _Handler) -> None:
        name = h.get_body_argument("symptom", None)
        symptom = SYMPTOM_BY_NAME.get(name) if name is not None else None
        if symptom is None:
            log.warning("status page: unknown symptom name refused")
            self._render(h, "unwell.html", status=400, session=h.signed_session,
                         symptoms=SYMPTOMS, error="Choose one of the buttons.")
            return
        out = self._run(h, SymptomReport(symptom=symptom.name, at=self._clock()))
        log.debug("status page: symptom %s", symptom.name)
        patient = self.config.patient
        already_open = any(a.kind == "symptom_reported"
                           for a in (self.snapshot.open if self.snapshot else []))
        if not out.events and not already_open:
            # No alert came of it, so nobody was told: the patient must not believe otherwise.
            log.error("status page: the monitor raised no alert for the patient's symptom report")
            first = (f"call {patient.emergency_number} now" if symptom.emergency else
                     f"call {patient.care_team_name} at {patient.care_team_phone} now")
            self._done(h, "emergency" if symptom.emergency else "error", (
                f"{symptom.words}: {first}. The hub could not pass this on to your care team."))
            return
        log.info("status page: symptom report entered")
        if symptom.emergency:
            self._done(h, "emergency", (
                f"{symptom.words}: call {patient.emergency_number} now. Your care team has "
                "been told as well."))
            return
        self._done(h, "ok", (
            f"Thank you. {patient.care_team_name} has been told. Call them at "
            f"{patient.care_team_phone} now if you have not already."))


_Action = Callable[["_Handler"], Awaitable[None]]

# A patient's phone or two, a caregiver's tablet: far fewer. Each connection holds a file
# descriptor of the daemon's, which the Bluetooth, broker and database links need as well.
MAX_CONNECTIONS = 32


class _BoundedServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server with a cap on open connections: a device on the home network that
    opens hundreds must not use up the descriptors the alarm path runs on. Past the cap a new
    connection is closed at once; the refusal is logged when it starts and when it ends, not
    once per connection."""

    max_connections = MAX_CONNECTIONS
    _open = 0
    _refused = 0

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if self._open >= self.max_connections:
            if self._refused == 0:
                log.warning("status page: %d connections open; refusing new ones (from %s)",
                            self._open, address[0] if address else "unknown")
            self._refused += 1
            stream.close()
            return
        self._open += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self._open -= 1
        if self._refused and self._open < self.max_connections:
            log.warning("status page: accepting connections again (%d refused)", self._refused)
            self._refused = 0
        super().on_close(server_conn)


class _Handler(SecureHeaders):
    """One route of the page: ``get``/``post`` are the StatusPage's coroutines for it (neither:
    the path does not exist). Sign-in and CSRF run first, in ``prepare``."""

    def initialize(self, page: StatusPage, get: _Action | None = None,
                   post: _Action | None = None) -> None:
        self.page = page
        self._get, self._post = get, post
        self.session: Session | None = None

    def compute_etag(self) -> None:
        return None  # every page is made fresh and never cached (Cache-Control: no-store)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        # Tornado's own error would quote the bytes, and a form value may be a temperature:
        # name the field, never its value.
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "status page: %s refused: %s is not UTF-8",
                                        self.request.path, name) from None

    @property
    def signed_session(self) -> Session:
        assert self.session is not None, "_auth lets no request through without one"
        return self.session

    async def prepare(self) -> None:
        await self.page._auth(self)

    async def get(self) -> None:
        await self._dispatch(self._get)

    async def post(self) -> None:
        await self._dispatch(self._post)

    async def _dispatch(self, action: _Action | None) -> None:
        if action is None:
            raise tornado.web.HTTPError(404 if self._get is None and self._post is None else 405)
        await action(self)


@contextlib.asynccontextmanager
async def serving(page: StatusPage) -> Any:
    """``async with serving(page):`` for the shell, the demo and tests."""
    await page.start()
    try:
        yield page
    finally:
        await page.stop()
