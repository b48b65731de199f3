"""Response headers every page of the hub's and the clinic's web servers carries (the patient's
status page and the care-team console): no script at all, nothing from elsewhere, no framing,
forms only to the same server; health data is never cached; no server name for a scanner."""

from __future__ import annotations

import tornado.web

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Health data: never kept in a shared browser or proxy cache.
    "Cache-Control": "no-store",
}


class SecureHeaders(tornado.web.RequestHandler):
    """Sets SECURITY_HEADERS on every response, errors included (tornado calls
    ``set_default_headers`` again when it clears a response for an error page)."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.clear_header("Server")
