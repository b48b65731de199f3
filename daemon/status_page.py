"""The patient's status page: a sink of the monitor's outputs, served by the daemon over HTTP.

Why aiohttp: it is a mature, well-kept asyncio-native HTTP server, so the page runs on the
daemon's own event loop beside the hub (one thread, no locks around the monitor), with no WSGI
bridge or extra server process; it also gives cookies, form parsing and request size limits.
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
from aiohttp import web

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

log = logging.getLogger(__name__)

COOKIE = "crs_session"
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")


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
    """The page's state (a sink) and its aiohttp application."""

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
        self._runner: web.AppRunner | None = None
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
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._auth], client_max_size=16 * 1024)
        app.add_routes([
            web.get("/", self._status),
            web.get("/login", self._login_form),
            web.post("/login", self._login),
            web.post("/logout", self._logout),
            web.post("/ack", self._ack),
            web.get("/reading", self._reading_form),
            web.post("/reading", self._reading),
            web.get("/unwell", self._unwell_form),
            web.post("/unwell", self._unwell),
            web.get("/page.css", self._css),
        ])
        return app

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
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port,
                           ssl_context=context)
        await site.start()
        # Port 0 (tests) binds a free port; report the real one.
        self.port = int(self._runner.addresses[0][1])
        log.info("status page on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls_cert_file else "http"
        return f"{scheme}://{self.settings.host}:{self.port or self.settings.port}/"

    # --- middleware ---------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._secure(request, exc)
            raise
        return self._secure(request, response)

    def _secure(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        # No script at all, nothing from elsewhere, no framing; health data is never cached.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.path != "/page.css":
            response.headers["Cache-Control"] = "no-store"
        return response

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is not None and session.authenticated and not self._current(session):
            self.sessions.drop(session.token)
            session = None
        request[SESSION] = session
        if request.method == "POST":
            form = await request.post()
            token = form.get("csrf")
            if session is None or not isinstance(token, str) \
                    or not hmac.compare_digest(token, session.csrf):
                log.warning("status page: POST %s refused: missing or wrong CSRF token (from %s)",
                            request.path, request.remote)
                return self._render("message.html", status=403, heading="Please try again",
                                    text="This form has expired or did not come from this "
                                    "page. Go back, reload the page and try again.")
        public = request.path in ("/login", "/page.css")
        if not public and (session is None or not session.authenticated):
            if request.method == "POST":
                return self._render("message.html", status=403, heading="Please sign in",
                                    text="You are not signed in any more.")
            raise web.HTTPSeeOther("/login")
        return await handler(request)

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
    def _render(self, template: str, *, status: int = 200,
                session: Session | None = None, **values: Any) -> web.Response:
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
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

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

    # --- handlers -----------------------------------------------------------------------------
    async def _css(self, request: web.Request) -> web.Response:
        css = self._env.loader.get_source(self._env, "page.css")[0]  # type: ignore[union-attr]
        return web.Response(text=css, content_type="text/css",
                            headers={"Cache-Control": "max-age=3600"})

    async def _status(self, request: web.Request) -> web.Response:
        paused = request.query.get("refresh") == "off" and self.settings.refresh_s > 0
        return self._render("status.html", session=_session(request),
                            refresh=0 if paused else self.settings.refresh_s, paused=paused,
                            **self.status_view(self._clock()))

    def _anonymous(self, request: web.Request) -> Session:
        session = request[SESSION]
        return session if session is not None else self.sessions.new(authenticated=False)

    def _login_page(self, session: Session, *, status: int = 200, error: str | None = None
                    ) -> web.Response:
        try:
            self._access_code()
            missing = False
        except AccessCodeMissing:
            missing = True
        response = self._render("login.html", status=status, session=session, error=error,
                                missing=missing)
        self._set_cookie(response, session)
        return response

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        session = self._anonymous(request)
        if session.authenticated:
            raise web.HTTPSeeOther("/")
        return self._login_page(session)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        client = request.remote or "unknown"
        wait = self.limiter.retry_after_s(client)
        if wait > 0:
            log.warning("status page: sign-in from %s refused: too many wrong codes", client)
            minutes = max(1, round(wait / 60))
            return self._login_page(session, status=429, error=(
                f"Too many wrong codes. Wait {minutes} minute{'s' if minutes != 1 else ''} "
                f"and try again. If you feel unwell, call {self.config.patient.care_team_name} "
                f"at {self.config.patient.care_team_phone} now."))
        entered = (await request.post()).get("code")
        try:
            code = self._access_code()
        except AccessCodeMissing:
            log.error("status page: sign-in refused: no access code has been set")
            return self._login_page(session, status=503)
        if not isinstance(entered, str) or not normalize(entered):
            return self._login_page(session, status=400, error="Type the access code.")
        ok = await asyncio.get_running_loop().run_in_executor(None, code.verify, entered)
        if not ok:
            failures = self.limiter.failed(client)
            # Never the code itself: a near miss is still most of the secret.
            log.warning("status page: wrong access code from %s (%d in 15 min)", client,
                        failures)
            return self._login_page(session, status=401, error=(
                "That code is not right. Check it and try again."))
        self.limiter.succeeded(client)
        self.sessions.drop(session.token)
        # A fresh session id on sign-in: a token seen before sign-in is worth nothing after.
        signed_in = self.sessions.new(authenticated=True)
        signed_in.code_fingerprint = code.fingerprint
        log.info("status page: signed in from %s", client)
        response = web.HTTPSeeOther("/")
        self._set_cookie(response, signed_in)
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        self.sessions.drop(session.token)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    def _set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        # Lax, not Strict: the page opened from a link in a text message must still be
        # signed in; every POST carries its CSRF token anyway.
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="Lax", path="/",
                            secure=self.settings.tls_cert_file is not None,
                            max_age=int(max(1.0, session.expires_mono - self.sessions.clock())))

    def _done(self, session: Session, level: str, text: str, to: str = "/") -> web.HTTPSeeOther:
        session.flash = (level, text)
        return web.HTTPSeeOther(to)

    def _run(self, inp: MonitorInput) -> _Output:
        try:
            return self._submit(inp)
        except Exception:
            log.exception("status page: the hub could not take the patient's %s",
                          type(inp).__name__)
            raise web.HTTPInternalServerError(
                text=(f"The hub could not record this. Call {self.config.patient.care_team_name}"
                      f" at {self.config.patient.care_team_phone} directly."),
                content_type="text/plain") from None

    async def _ack(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        alert_id = (await request.post()).get("alert_id")
        open_ids = {a.alert_id for a in self._patient_alerts()}
        if not isinstance(alert_id, str) or alert_id not in open_ids:
            log.warning("status page: acknowledgement for an alert that is not open refused")
            raise self._done(session, "info", "That alert is no longer open.")
        out = self._run(Acknowledgement(alert_id=alert_id, actor="patient", at=self._clock()))
        if out.ack is not None and not out.ack.accepted:
            log.warning("status page: patient acknowledgement of %s not accepted: %s", alert_id,
                        out.ack.reason)
            raise self._done(session, "info", f"The hub did not take this: {out.ack.reason}.")
        log.info("status page: patient acknowledged alert %s", alert_id)
        raise self._done(session, "ok", (
            f"Thank you. The hub has noted that you called {self.config.patient.care_team_name}. "
            "Follow their advice."))

    async def _reading_form(self, request: web.Request) -> web.Response:
        return self._render("reading.html", session=_session(request), error=None, value="",
                            unit=self.config.patient.temperature_unit.value)

    async def _reading(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        form = await request.post()
        text, unit = form.get("temperature"), form.get("unit")
        text = text if isinstance(text, str) else ""
        unit = unit if isinstance(unit, str) else ""
        try:
            celsius = parse_temperature(text, unit)
        except ReportError as exc:
            log.info("status page: manual temperature rejected: %s", exc)
            return self._render("reading.html", status=400, session=session, error=str(exc),
                                value=text[:12], unit=unit if unit in ("C", "F") else "C")
        out = self._run(ManualReading(temperature_c=celsius, at=self._clock()))
        log.debug("status page: manual temperature %.2f °C", celsius)
        patient = self.config.patient
        if not (out.readings or out.events):
            # The monitor took nothing from it: never thank the patient for a reading that
            # no rule will see.
            log.error("status page: the monitor did not take the patient's thermometer reading")
            raise self._done(session, "error", (
                "The hub could not use this reading. If it is "
                f"{self._temperature(self.config.thresholds.fever.threshold_c)} or higher, or "
                f"you feel unwell, call {patient.care_team_name} at {patient.care_team_phone} "
                "now."))
        log.info("status page: manual temperature reading entered")
        raise self._done(session, "ok", f"Thank you. {self._temperature(celsius)} is recorded.")

    async def _unwell_form(self, request: web.Request) -> web.Response:
        return self._render("unwell.html", session=_session(request), symptoms=SYMPTOMS,
                            error=None)

    async def _unwell(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        name = (await request.post()).get("symptom")
        symptom = SYMPTOM_BY_NAME.get(name) if isinstance(name, str) else None
        if symptom is None:
            log.warning("status page: unknown symptom name refused")
            return self._render("unwell.html", status=400, session=session, symptoms=SYMPTOMS,
                                error="Choose one of the buttons.")
        out = self._run(SymptomReport(symptom=symptom.name, at=self._clock()))
        log.debug("status page: symptom %s", symptom.name)
        patient = self.config.patient
        already_open = any(a.kind == "symptom_reported"
                           for a in (self.snapshot.open if self.snapshot else []))
        if not out.events and not already_open:
            # No alert came of it, so nobody was told: the patient must not believe otherwise.
            log.error("status page: the monitor raised no alert for the patient's symptom report")
            first = (f"call {patient.emergency_number} now" if symptom.emergency else
                     f"call {patient.care_team_name} at {patient.care_team_phone} now")
            raise self._done(session, "emergency" if symptom.emergency else "error", (
                f"{symptom.words}: {first}. The hub could not pass this on to your care team."))
        log.info("status page: symptom report entered")
        if symptom.emergency:
            raise self._done(session, "emergency", (
                f"{symptom.words}: call {patient.emergency_number} now. Your care team has "
                "been told as well."))
        raise self._done(session, "ok", (
            f"Thank you. {patient.care_team_name} has been told. Call them at "
            f"{patient.care_team_phone} now if you have not already."))


def _session(request: web.Request) -> Session:
    session = request[SESSION]
    assert session is not None, "the auth middleware lets no request through without one"
    return session


@contextlib.asynccontextmanager
async def serving(page: StatusPage) -> Any:
    """``async with serving(page):`` for the shell, the demo and tests."""
    await page.start()
    try:
        yield page
    finally:
        await page.stop()
