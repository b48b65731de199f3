"""The console's web page, served with tornado.

tornado (like the patient's status page: one web stack) runs on the asyncio loop that the MQTT
callbacks are handed to (daemon/mqtt_link.py hands paho's thread over to asyncio), so the page
reads the ward model with no locks and no second thread; Jinja2 templates with autoescaping on
for every template (not tornado's templates). One handler class per route; ``Page`` does what
every page shares: security headers, the session, the CSRF check of every POST, refusals as
plain text, logged.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.httputil import responses

from daemon.alerts import Severity
from daemon.console.broker import NurseLinks, ack_topic
from daemon.console.chart import vitals_svg
from daemon.console.credentials import DUMMY_HASH, Session, Sessions, verify_password
from daemon.console.history import AckRecord
from daemon.console.service import Console
from daemon.payloads import AlertAck
from daemon.web_security import SecureHeaders

log = logging.getLogger(__name__)

COOKIE = "crs_console"
LOGIN_COOKIE = "crs_console_login"
HERE = Path(__file__).parent
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
# The forms are a few hundred bytes: a larger body is refused by the server before any handler
# runs (tornado answers 400, closes the connection and logs "Content-Length too long" at INFO).
MAX_BODY_BYTES = 64 * 1024
# A login token as secrets.token_urlsafe(24) makes it; anything else held by a browser is replaced.
LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
FREE_FAILURES = 5
NEXT_PAGE = re.compile(r"/(patient/[a-z0-9-]+/[a-z0-9-]+)?")


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["utc"] = lambda t: "-" if t is None else t.astimezone(UTC).strftime(
        "%Y-%m-%d %H:%M UTC")
    env.filters["hm"] = lambda t: "-" if t is None else t.astimezone(UTC).strftime("%H:%M")
    env.globals["severities"] = [s.value for s in Severity]
    return env


def _no_access_log(handler: tornado.web.RequestHandler) -> None:
    """The access log would name patients (pseudonymously) in URLs: none. Refusals are logged
    by ``_Secured.log_exception``, without the request's content."""


class ConsoleWeb:
    def __init__(self, console: Console, nurses: NurseLinks) -> None:
        self.console = console
        self.config = console.config
        self.nurses = nurses
        settings = self.config.console
        self.sessions = Sessions(settings.session_ttl_s, settings.session_idle_s)
        self.env = templates()
        self.hashes = {n.username: n.password_hash for n in self.config.nurses}
        # Failed logins in a row per username: (count, monotonic time before which to refuse).
        self.failures: dict[str, tuple[int, float]] = {}
        page = {"web": self}
        self.app = tornado.web.Application(
            [
                (r"/login", LoginPage, page), (r"/logout", Logout, page), (r"/", WardPage, page),
                (r"/patient/([^/]+)/([^/]+)", PatientPage, page), (r"/ack", Ack, page),
                (r"/summary", SummaryPage, page), (r"/favicon\.ico", Favicon),
                (r"/static/(.*)", StaticFile, {"path": str(HERE / "static")}),
            ],
            default_handler_class=Missing, default_handler_args=page,
            log_function=_no_access_log)

    def http_server(self) -> HTTPServer:
        """The server for ``app``, with the request-size limits (headers: cookies and a form's
        URL are far below 64 KiB)."""
        return HTTPServer(self.app, max_body_size=MAX_BODY_BYTES, max_header_size=MAX_BODY_BYTES,
                          max_buffer_size=4 * MAX_BODY_BYTES,
                          # An idle keep-alive connection is closed after 75 s (not one hour).
                          idle_connection_timeout=75.0)

    def team(self, session: Session) -> str:
        team = self.config.team_of(session.username)
        assert team is not None  # sessions only exist for configured nurses
        return team.id

    async def expire_sessions(self) -> None:
        for session in self.sessions.expire(time.monotonic()):
            if session.username not in self.sessions.users():
                await self.nurses.close(session.username)


# --- plumbing ------------------------------------------------------------------------------------
class Refused(tornado.web.HTTPError):
    """A refusal: its text is the response's plain-text body and goes to the log."""

    def __init__(self, status: int, text: str | None = None) -> None:
        super().__init__(status)
        self.text = text


def _refusal_text(status: int, exc: BaseException | None) -> str:
    if isinstance(exc, Refused) and exc.text:
        return exc.text
    return f"{status}: {responses.get(status, 'Unknown')}"


class _Secured(SecureHeaders):
    """Security headers on every response (errors too), refusals as text and in the log."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status_code == 405:  # RFC 9110: a 405 says which methods the page has
            self.set_header("Allow", ",".join(sorted(
                m for m in self.SUPPORTED_METHODS
                if getattr(type(self), m.lower()) is not getattr(tornado.web.RequestHandler,
                                                                 m.lower()))))
        self.finish(_refusal_text(status_code, exc))

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        method, path = self.request.method, self.request.path
        if isinstance(value, tornado.web.HTTPError):
            if value.status_code >= 400 and path != "/favicon.ico":
                # Rejected web input is logged (path and reason, never the form's content).
                log.warning("refused %s %s: %s %s", method, path, value.status_code,
                            _refusal_text(value.status_code, value))
        elif typ is not None and value is not None:
            log.error("error handling %s %s", method, path, exc_info=(typ, value, tb))


class StaticFile(_Secured, tornado.web.StaticFileHandler):
    """/static/: the stylesheet, no session needed."""


class Favicon(_Secured):
    def prepare(self) -> None:
        raise Refused(404)  # not logged: every browser asks


class Page(_Secured):
    """A console page: a session is needed (except on the login page), every POST must carry
    the session's CSRF token."""

    public = False

    def initialize(self, web: ConsoleWeb) -> None:
        self.web = web
        self._nurse: Session | None = None

    def compute_etag(self) -> str | None:
        return None  # never a 304: the pages are not cached (Cache-Control: no-store)

    def prepare(self) -> None:
        self._authorised()

    def _authorised(self) -> bool:
        """The session and the CSRF check; False if answered already (sent to the login)."""
        if self.public:
            return True
        session = self.web.sessions.get(self.get_cookie(COOKIE), time.monotonic())
        if session is None:
            if self.request.method == "POST":
                raise Refused(403, "session expired: log in again")
            self.see_other("/login")
            return False
        self._nurse = session
        if self.request.method == "POST":
            token = self.form("csrf")
            if token is None or not hmac.compare_digest(token, session.csrf):
                raise Refused(403, "invalid form token: reload the page")
        return True

    @property
    def session(self) -> Session:
        assert self._nurse is not None  # prepare() found it, or answered already
        return self._nurse

    def base(self) -> dict[str, Any]:
        session = self.session
        return {"user": session.username, "csrf": session.csrf,
                "team": self.web.team(session), "now": self.web.console.clock()}

    # A field's first value, as typed (not stripped); None if absent.
    def query(self, name: str) -> str | None:
        return _first(self.request.query_arguments, name)

    def form(self, name: str) -> str | None:
        return _first(self.request.body_arguments, name)

    def html(self, name: str, status: int = 200, **context: Any) -> None:
        context.setdefault("message", None)
        text = self.web.env.get_template(name).render(**context)
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(text)

    def see_other(self, location: str) -> None:
        self.redirect(location, status=303)

    def cookie(self, name: str, value: str) -> None:
        self.set_cookie(name, value, path="/", httponly=True, samesite="Strict",
                        secure=self.web.config.console.cookie_secure)

    def patient_or_404(self, hub_id: str, patient_id: str) -> Any:
        patient = self.web.console.ward.patient(hub_id, patient_id)
        # Another team's patient looks exactly like one that does not exist.
        if patient is None or patient.team != self.web.team(self.session):
            raise Refused(404, "no such patient in your team")
        return patient


def _first(arguments: dict[str, list[bytes]], name: str) -> str | None:
    values = arguments.get(name)
    return values[0].decode("utf-8", errors="replace") if values else None


class Missing(Page):
    """No such route: like any page, first the session (no login: to the login page)."""

    def prepare(self) -> None:
        if self._authorised():
            raise Refused(404)


# --- login ---------------------------------------------------------------------------------------
class LoginPage(Page):
    public = True

    def get(self) -> None:
        # Keep the token a browser already holds: a second GET (another tab, the favicon's
        # redirect) must not invalidate the form on screen.
        held = self.get_cookie(LOGIN_COOKIE, "") or ""
        token = held if LOGIN_TOKEN.fullmatch(held) else secrets.token_urlsafe(24)
        self.cookie(LOGIN_COOKIE, token)
        self.html("login.html.j2", csrf=token, error=None)

    head = get

    async def post(self) -> None:
        web = self.web
        username, password = self.form("username"), self.form("password")
        token = self.form("csrf")
        cookie = self.get_cookie(LOGIN_COOKIE, "")
        if token is None or not cookie or not hmac.compare_digest(token, cookie):
            raise Refused(403, "invalid form token: reload the login page")
        if username is None or password is None:
            raise Refused(400, "username and password are required")
        stored = web.hashes.get(username)
        key = username if stored is not None else ""  # every unknown name shares one counter
        now_s = time.monotonic()
        failures, blocked_until = web.failures.get(key, (0, 0.0))
        if now_s < blocked_until:
            log.warning("console login refused: too many failed attempts (username not logged)")
            self._login_error(429, "Too many failed logins: try again in "
                              f"{blocked_until - now_s:.0f} s.")
            return
        ok = verify_password(password, stored or DUMMY_HASH) and stored is not None
        if not ok:
            failures += 1
            # After 5 failures in a row: wait 1, 2, 4 ... s, at most 5 min, never locked out.
            wait_s = min(2.0 ** (failures - FREE_FAILURES), 300.0) \
                if failures >= FREE_FAILURES else 0.0
            web.failures[key] = (failures, now_s + wait_s)
            log.warning("failed console login (username not logged)")
            self._login_error(401, "Unknown username or wrong password.")
            return
        web.failures.pop(key, None)
        session = web.sessions.open(username, time.monotonic())
        web.nurses.open(username, password)
        log.info("nurse %s logged in", username)
        self.cookie(COOKIE, session.token)
        self.clear_cookie(LOGIN_COOKIE, path="/")
        self.see_other("/")

    def _login_error(self, status: int, error: str) -> None:
        fresh = secrets.token_urlsafe(24)
        self.cookie(LOGIN_COOKIE, fresh)
        self.html("login.html.j2", status=status, csrf=fresh, error=error)


class Logout(Page):
    async def post(self) -> None:
        session, web = self.session, self.web
        web.sessions.close(session.token)
        if session.username not in web.sessions.users():
            await web.nurses.close(session.username)
        self.clear_cookie(COOKIE, path="/")
        self.see_other("/login")


# --- pages ---------------------------------------------------------------------------------------
class WardPage(Page):
    def get(self) -> None:
        base = self.base()
        settings = self.web.config.console
        rows = self.web.console.ward.rows(base["now"], settings.heartbeat_stale_s, base["team"])
        self.html("ward.html.j2", rows=rows, age=_age, refresh_s=settings.refresh_s,
                  message=self.query("msg"), **base)

    head = get


class PatientPage(Page):
    def get(self, hub_id: str, patient_id: str) -> None:
        base = self.base()
        patient = self.patient_or_404(hub_id, patient_id)
        asked = self.query("range")
        span_key = "24h" if asked is None else asked
        span = RANGES.get(span_key)
        if span is None:
            raise Refused(400, "range must be 24h or 7d")
        now = base["now"]
        start = now - span
        console = self.web.console
        history = console.history
        events = history.events(hub_id, patient_id, since=start, limit=2000)
        chart = vitals_svg(history.vitals(hub_id, patient_id, start, now), events, start, now)
        hub = console.ward.hubs[hub_id]
        self.html(
            "patient.html.j2", patient=patient, hub=hub, chart=chart, events=events,
            span=span_key, age=_age,
            health=hub.health(now, self.web.config.console.heartbeat_stale_s),
            acks=history.acks(since=start, until=now + timedelta(seconds=1), hub_id=hub_id,
                              patient_id=patient_id),
            message=self.query("msg"), **base)

    head = get


class Ack(Page):
    async def post(self) -> None:
        session, web = self.session, self.web
        hub_id, patient_id = self.form("hub"), self.form("patient")
        alert_id, note_text, after = self.form("alert_id"), self.form("note"), self.form("next")
        if hub_id is None or patient_id is None or alert_id is None:
            raise Refused(400, "hub, patient and alert_id are required")
        patient = self.patient_or_404(hub_id, patient_id)
        if alert_id not in patient.alerts:
            raise Refused(409, "this alert is no longer open")
        note = note_text.strip() if note_text is not None else ""
        try:
            # actor is the logged-in nurse, never a form field.
            payload = AlertAck(alert_id=alert_id, actor=session.username, note=note or None)
        except ValueError:
            raise Refused(400, "the note is too long (200 characters at most)") from None
        topic = ack_topic(web.config.mqtt.topic_prefix, hub_id, patient_id, session.username)
        ok, reason = await web.nurses.publish(session.username, topic, payload.to_json())
        console = web.console
        console.history.add_ack(AckRecord(alert_id, hub_id, patient_id, session.username,
                                          payload.note, console.clock(),
                                          "sent" if ok else f"refused: {reason}"))
        if ok:
            console.ward.mark_ack_sent(hub_id, patient_id, alert_id, session.username)
            log.info("ack for alert %s sent by %s", alert_id, session.username)
            message = "ack-sent"
        else:
            log.warning("ack for alert %s by %s not accepted: %s", alert_id, session.username,
                        reason)
            message = "ack-refused"
        # Back to the page the form was on: only the console's own pages (no open redirect).
        target = after if after is not None and NEXT_PAGE.fullmatch(after) else "/"
        separator = "&" if "?" in target else "?"
        self.see_other(f"{target}{separator}msg={message}")


class SummaryPage(Page):
    def get(self) -> None:
        base = self.base()
        text = self.query("date")
        try:
            day = (datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) if text
                   else base["now"].replace(hour=0, minute=0, second=0, microsecond=0))
        except ValueError:
            raise Refused(400, "date must be YYYY-MM-DD") from None
        end = day + timedelta(days=1)
        console = self.web.console
        history = console.history
        patients = []
        for row in console.ward.rows(base["now"], self.web.config.console.heartbeat_stale_s,
                                     base["team"]):
            p = row.patient
            events = list(reversed(history.events(p.hub_id, p.patient_id, since=day, until=end,
                                                  limit=5000)))
            vitals = history.vitals(p.hub_id, p.patient_id, day, end)
            temps = [v.temperature_c for v in vitals if v.temperature_c is not None]
            rates = [v.heart_rate_bpm for v in vitals if v.heart_rate_bpm is not None]
            patients.append({
                "row": row, "events": events,
                "acks": history.acks(since=day, until=end, hub_id=p.hub_id,
                                     patient_id=p.patient_id),
                "t_max": max(temps, default=None), "t_min": min(temps, default=None),
                "hr_max": max(rates, default=None), "samples": len(vitals),
            })
        self.html("summary.html.j2", day=day, patients=patients,
                  previous=(day - timedelta(days=1)).strftime("%Y-%m-%d"),
                  next_day=end.strftime("%Y-%m-%d"), **base)

    head = get
