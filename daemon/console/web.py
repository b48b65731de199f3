"""The console's web page, served with aiohttp.

aiohttp: a well-kept asyncio HTTP server that runs in the same event loop as the MQTT callbacks
(daemon/mqtt_link.py hands paho's thread over to asyncio), so the page reads the ward model with
no locks and no second thread; Jinja2 templates with autoescaping on for every template.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from daemon.alerts import Severity
from daemon.console.broker import NurseLinks, ack_topic
from daemon.console.chart import vitals_svg
from daemon.console.credentials import DUMMY_HASH, Session, Sessions, verify_password
from daemon.console.history import AckRecord
from daemon.console.service import Console
from daemon.payloads import AlertAck

log = logging.getLogger(__name__)

COOKIE = "crs_console"
LOGIN_COOKIE = "crs_console_login"
HERE = Path(__file__).parent
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

# A plain string key: web.RequestKey needs a newer aiohttp than the >= 3.9 this project allows.
SESSION_KEY = "crs_console_session"


def _session(request: web.Request) -> Session:
    session = request[SESSION_KEY]
    assert isinstance(session, Session)
    return session
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


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["utc"] = lambda t: "-" if t is None else t.astimezone(UTC).strftime(
        "%Y-%m-%d %H:%M UTC")
    env.filters["hm"] = lambda t: "-" if t is None else t.astimezone(UTC).strftime("%H:%M")
    env.globals["severities"] = [s.value for s in Severity]
    return env


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
        self._failures: dict[str, tuple[int, float]] = {}
        self.app = web.Application(middlewares=[self._headers, self._auth],
                                   client_max_size=64 * 1024)
        self.app.add_routes([
            web.get("/login", self.login_page), web.post("/login", self.login),
            web.post("/logout", self.logout), web.get("/", self.ward),
            web.get("/patient/{hub}/{patient}", self.patient),
            web.post("/ack", self.ack), web.get("/summary", self.summary),
            web.static("/static", HERE / "static"),
        ])

    # --- plumbing --------------------------------------------------------------------------------
    def render(self, name: str, status: int = 200, **context: Any) -> web.Response:
        context.setdefault("message", None)
        text = self.env.get_template(name).render(**context)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400 and request.path != "/favicon.ico":
                # Rejected web input is logged (path and reason, never the form's content).
                log.warning("refused %s %s: %s %s", request.method, request.path, exc.status,
                            exc.text)
            self._secure(exc)
            raise
        self._secure(response)
        return response

    @staticmethod
    def _secure(response: web.StreamResponse) -> None:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        # Health data: never kept in a shared browser or proxy cache.
        response.headers["Cache-Control"] = "no-store"

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/favicon.ico":
            raise web.HTTPNotFound()
        if request.path == "/login" or request.path.startswith("/static/"):
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE), time.monotonic())
        if session is None:
            if request.method == "POST":
                raise web.HTTPForbidden(text="session expired: log in again")
            raise web.HTTPSeeOther("/login")
        request[SESSION_KEY] = session  # read back by _session()
        if request.method == "POST":
            form = await request.post()
            token = form.get("csrf")
            if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf):
                raise web.HTTPForbidden(text="invalid form token: reload the page")
        return await handler(request)

    def _cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(name, value, httponly=True, samesite="Strict", path="/",
                            secure=self.config.console.cookie_secure)

    def _team(self, session: Session) -> str:
        team = self.config.team_of(session.username)
        assert team is not None  # sessions only exist for configured nurses
        return team.id

    def _base(self, request: web.Request) -> dict[str, Any]:
        session = _session(request)
        return {"user": session.username, "csrf": session.csrf, "team": self._team(session),
                "now": self.console.clock()}

    # --- login -----------------------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.Response:
        # Keep the token a browser already holds: a second GET (another tab, the favicon's
        # redirect) must not invalidate the form on screen.
        held = request.cookies.get(LOGIN_COOKIE, "")
        token = held if len(held) == 32 else secrets.token_urlsafe(24)
        response = self.render("login.html.j2", csrf=token, error=None)
        self._cookie(response, LOGIN_COOKIE, token)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        username, password = form.get("username"), form.get("password")
        token = form.get("csrf")
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not isinstance(token, str) or not cookie or not hmac.compare_digest(token, cookie):
            raise web.HTTPForbidden(text="invalid form token: reload the login page")
        if not isinstance(username, str) or not isinstance(password, str):
            raise web.HTTPBadRequest(text="username and password are required")
        stored = self.hashes.get(username)
        key = username if stored is not None else ""  # every unknown name shares one counter
        now_s = time.monotonic()
        failures, blocked_until = self._failures.get(key, (0, 0.0))
        if now_s < blocked_until:
            log.warning("console login refused: too many failed attempts (username not logged)")
            return self._login_error(429, "Too many failed logins: try again in "
                                     f"{blocked_until - now_s:.0f} s.")
        ok = verify_password(password, stored or DUMMY_HASH) and stored is not None
        if not ok:
            failures += 1
            # After 5 failures in a row: wait 1, 2, 4 ... s, at most 5 min, never locked out.
            wait_s = min(2.0 ** (failures - FREE_FAILURES), 300.0) \
                if failures >= FREE_FAILURES else 0.0
            self._failures[key] = (failures, now_s + wait_s)
            log.warning("failed console login (username not logged)")
            return self._login_error(401, "Unknown username or wrong password.")
        self._failures.pop(key, None)
        session = self.sessions.open(username, time.monotonic())
        self.nurses.open(username, password)
        log.info("nurse %s logged in", username)
        response = _redirect("/")
        self._cookie(response, COOKIE, session.token)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    def _login_error(self, status: int, error: str) -> web.Response:
        fresh = secrets.token_urlsafe(24)
        response = self.render("login.html.j2", status=status, csrf=fresh, error=error)
        self._cookie(response, LOGIN_COOKIE, fresh)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        self.sessions.close(session.token)
        if session.username not in self.sessions.users():
            await self.nurses.close(session.username)
        response = _redirect("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def expire_sessions(self) -> None:
        for session in self.sessions.expire(time.monotonic()):
            if session.username not in self.sessions.users():
                await self.nurses.close(session.username)

    # --- pages -----------------------------------------------------------------------------------
    async def ward(self, request: web.Request) -> web.Response:
        base = self._base(request)
        rows = self.console.ward.rows(base["now"], self.config.console.heartbeat_stale_s,
                                      base["team"])
        return self.render("ward.html.j2", rows=rows, age=_age,
                           refresh_s=self.config.console.refresh_s,
                           message=request.query.get("msg"), **base)

    def _patient_or_404(self, request: web.Request, hub_id: str, patient_id: str) -> Any:
        patient = self.console.ward.patient(hub_id, patient_id)
        # Another team's patient looks exactly like one that does not exist.
        if patient is None or patient.team != self._team(_session(request)):
            raise web.HTTPNotFound(text="no such patient in your team")
        return patient

    async def patient(self, request: web.Request) -> web.Response:
        base = self._base(request)
        hub_id, patient_id = request.match_info["hub"], request.match_info["patient"]
        patient = self._patient_or_404(request, hub_id, patient_id)
        span_key = request.query.get("range", "24h")
        span = RANGES.get(span_key)
        if span is None:
            raise web.HTTPBadRequest(text="range must be 24h or 7d")
        now = base["now"]
        start = now - span
        history = self.console.history
        events = history.events(hub_id, patient_id, since=start, limit=2000)
        chart = vitals_svg(history.vitals(hub_id, patient_id, start, now), events, start, now)
        hub = self.console.ward.hubs[hub_id]
        return self.render(
            "patient.html.j2", patient=patient, hub=hub, chart=chart, events=events,
            span=span_key, age=_age,
            health=hub.health(now, self.config.console.heartbeat_stale_s),
            acks=history.acks(since=start, until=now + timedelta(seconds=1), hub_id=hub_id,
                              patient_id=patient_id),
            message=request.query.get("msg"), **base)

    async def ack(self, request: web.Request) -> web.StreamResponse:
        session = _session(request)
        form = await request.post()
        fields = {k: form.get(k) for k in ("hub", "patient", "alert_id", "note", "next")}
        if not all(isinstance(fields[k], str) for k in ("hub", "patient", "alert_id")):
            raise web.HTTPBadRequest(text="hub, patient and alert_id are required")
        hub_id, patient_id = str(fields["hub"]), str(fields["patient"])
        alert_id = str(fields["alert_id"])
        patient = self._patient_or_404(request, hub_id, patient_id)
        if alert_id not in patient.alerts:
            raise web.HTTPConflict(text="this alert is no longer open")
        note = fields["note"].strip() if isinstance(fields["note"], str) else ""
        try:
            # actor is the logged-in nurse, never a form field.
            payload = AlertAck(alert_id=alert_id, actor=session.username, note=note or None)
        except ValueError:
            raise web.HTTPBadRequest(text="the note is too long (200 characters at most)") \
                from None
        topic = ack_topic(self.config.mqtt.topic_prefix, hub_id, patient_id, session.username)
        ok, reason = await self.nurses.publish(session.username, topic, payload.to_json())
        now = self.console.clock()
        self.console.history.add_ack(AckRecord(alert_id, hub_id, patient_id, session.username,
                                               payload.note, now,
                                               "sent" if ok else f"refused: {reason}"))
        if ok:
            self.console.ward.mark_ack_sent(hub_id, patient_id, alert_id, session.username)
            log.info("ack for alert %s sent by %s", alert_id, session.username)
            message = "ack-sent"
        else:
            log.warning("ack for alert %s by %s not accepted: %s", alert_id, session.username,
                        reason)
            message = "ack-refused"
        # Back to the page the form was on: only the console's own pages (no open redirect).
        target = fields["next"] if isinstance(fields["next"], str) and \
            NEXT_PAGE.fullmatch(fields["next"]) else "/"
        separator = "&" if "?" in target else "?"
        return _redirect(f"{target}{separator}msg={message}")

    async def summary(self, request: web.Request) -> web.Response:
        base = self._base(request)
        text = request.query.get("date")
        try:
            day = (datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC) if text
                   else base["now"].replace(hour=0, minute=0, second=0, microsecond=0))
        except ValueError:
            raise web.HTTPBadRequest(text="date must be YYYY-MM-DD") from None
        end = day + timedelta(days=1)
        history = self.console.history
        patients = []
        for row in self.console.ward.rows(base["now"], self.config.console.heartbeat_stale_s,
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
        return self.render("summary.html.j2", day=day, patients=patients,
                           previous=(day - timedelta(days=1)).strftime("%Y-%m-%d"),
                           next_day=end.strftime("%Y-%m-%d"), **base)
