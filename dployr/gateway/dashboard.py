"""The web dashboard: server-rendered pages from ``web/``, signed in with an API token.

The pages are Jinja templates (``web/templates``) with small ES modules
(``web/static/js``); the modules call the same REST API and WebSocket feeds as the CLI, so
there is no second API. What this module adds is the browser's way in:

* **Login** takes an API token, checked with the gateway's token check. Failed sign-ins
  are counted per client address (:class:`~dployr.gateway.access.LoginThrottle`): after
  a few, each further failure locks the address out for longer (429), and every failure
  is logged in one line with the address, never the token.
* **The session** is a cookie (HttpOnly, SameSite=Strict, Secure over TLS) holding a
  *sealed* value: the session id, the token and the time of login, encrypted and
  authenticated with AES-GCM under a key kept in the data dir. A session survives a
  daemon restart (the dashboard reconnects by itself), and the token is checked again on
  every request, so revoking a token ends every session opened with it at once. A
  session acts with its token's scope. Sessions last :data:`SESSION_LIFETIME`.
* **Logout** clears the cookie and records its session id in the database until the
  session would have expired, so a copy of the cookie stays dead across daemon restarts.
* **CSRF**: every state-changing request made with the session cookie must carry the
  session's CSRF token (an HMAC of the session id) in ``X-CSRF-Token``, or, for the few
  plain HTML forms, in a ``csrf_token`` field. Without it the request is refused with 403:
  a page saying the form has expired for a plain form (an old tab), JSON for the API.
  WebSocket handshakes must come from the dashboard's own origin.
* Every page carries a Content-Security-Policy that allows scripts from the dashboard
  only (``script-src 'self'``: no inline scripts).

A request the dashboard authenticates sets ``g.authenticated`` and ``g.caller`` (the
session's token), which the API's checks and the feeds accept.

Why one module of ~510 lines: login, the sealed session, CSRF and the pages are one
security boundary, best read whole.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import attrs
from quart import Blueprint, Response, g, redirect, render_template, request, websocket
from quart_trio import QuartTrio

from dployr import __version__
from dployr.gateway.access import LoginThrottle, Tokens
from dployr.gateway.responses import TokenCheck, bearer_token, error_response
from dployr.models import NAME_PATTERN
from dployr.protocol import messages as m
from dployr.protocol.errors import Error
from dployr.protocol.handle import InstanceHandle
from dployr.tokens import TokenRecord

log = logging.getLogger("dployr.gateway.dashboard")

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
"""The dashboard's templates and static files (``web/`` at the top of the project)."""

SESSION_COOKIE = "dployr_session"
SESSION_LIFETIME = 12 * 3600.0
"""Seconds a login lasts."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

TABS = ("overview", "logs", "metrics", "deployments", "settings", "environment")
"""The service page's tabs, in order; the first is the page itself."""


# -- sessions (no Quart in here) -------------------------------------------------------


@attrs.frozen
class Session:
    """A signed-in browser: which session, which token, since when."""

    id: str
    token: str
    issued: float
    caller: TokenRecord | None = attrs.field(default=None, eq=False)
    """The token's record, as checked when the session was read."""


class Revocations(Protocol):
    """Where logged-out session ids are kept (the store, so that they outlive the daemon)."""

    def revoke_session(self, session_id: str, until: float, /) -> None: ...

    def session_revoked(self, session_id: str, /) -> bool: ...


class MemoryRevocations:
    """Logged-out session ids in memory only (for an app built without a store)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._revoked: dict[str, float] = {}

    def revoke_session(self, session_id: str, until: float, /) -> None:
        now = self._clock()
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session_id] = until

    def session_revoked(self, session_id: str, /) -> bool:
        return session_id in self._revoked


_SEALED_WITH = b"dployr-session-v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Seals sessions into cookie values and opens them again; derives CSRF tokens.

    ``check_token`` is asked on every :meth:`read`, so a revoked token ends its sessions;
    ``revocations`` keeps the ids of sessions logged out of.
    """

    def __init__(
        self,
        key: bytes,
        check_token: TokenCheck,
        *,
        revocations: Revocations | None = None,
        lifetime: float = SESSION_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) != 32:
            raise ValueError("a session key is 32 bytes")
        self._seal_key = hashlib.sha256(b"seal:" + key).digest()
        self._sealer: Any = None
        self._csrf_key = hashlib.sha256(b"csrf:" + key).digest()
        self._check_token = check_token
        self._lifetime = lifetime
        self._clock = clock
        self._revocations = MemoryRevocations(clock) if revocations is None else revocations

    @property
    def _aead(self) -> Any:
        # Imported at the first login: an API-only daemon never loads the cryptography
        # package (seven megabytes).
        if self._sealer is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._sealer = AESGCM(self._seal_key)
        return self._sealer

    def open(self, token: str) -> tuple[Session, str]:
        """A new session for a (checked) token, and its cookie value."""
        session = Session(secrets.token_urlsafe(18), token, self._clock())
        plain = json.dumps({"sid": session.id, "tok": token, "iat": session.issued}).encode()
        nonce = secrets.token_bytes(12)
        return session, _b64(nonce + self._aead.encrypt(nonce, plain, _SEALED_WITH))

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None if it is absent, forged, old or revoked."""
        if not cookie or len(cookie) > 4096:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            sealed = _unb64(cookie)
            plain = self._aead.decrypt(sealed[:12], sealed[12:], _SEALED_WITH)
            data = json.loads(plain)
            session = Session(str(data["sid"]), str(data["tok"]), float(data["iat"]))
        except (ValueError, InvalidTag, KeyError, TypeError):
            return None
        now = self._clock()
        if not session.issued <= now < session.issued + self._lifetime:
            return None
        if self._revocations.session_revoked(session.id):
            return None
        caller = self._check_token(session.token)
        if not caller:
            return None
        return attrs.evolve(session, caller=caller)

    def expires(self, session: Session) -> float:
        """When the session ends (Unix time)."""
        return session.issued + self._lifetime

    def revoke(self, session: Session) -> None:
        """Log the session out (for good: the id is kept until the session would expire)."""
        self._revocations.revoke_session(session.id, self.expires(session))

    def csrf_token(self, session: Session) -> str:
        """The token the session's state-changing requests must carry."""
        return _b64(hmac.new(self._csrf_key, session.id.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: Session, sent: str | None) -> bool:
        """Whether ``sent`` is the session's CSRF token."""
        return sent is not None and hmac.compare_digest(sent, self.csrf_token(session))


def load_key(path: Path) -> bytes:
    """The session key kept at ``path``, created (mode 0600) on first use."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) == 32:
            return key
    key = secrets.token_bytes(32)
    partial = path.with_name(f".{path.name}.new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
    partial.replace(path)
    return key


def session_key(app: QuartTrio, handle: InstanceHandle) -> bytes:
    """The key sessions are sealed with.

    ``app.config["DASHBOARD_KEY"]`` (32 bytes), which the daemon reads from the 0600 file
    ``<data dir>/dashboard-key``; else (an app built without one, as in some tests) a key
    that lasts as long as the process.
    """
    configured = app.config.get("DASHBOARD_KEY")
    if isinstance(configured, bytes) and len(configured) == 32:
        return configured
    log.warning("no key for the dashboard's sessions: logins end when dployr stops")
    return secrets.token_bytes(32)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path of this site only (no ``//host`` or scheme), without
    any ``token`` parameter (a token is never copied into a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/services"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/services"
    return _without_token(target)


def _without_token(target: str) -> str:
    """A local URL without its ``token`` query parameter."""
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key != "token"]
    if len(kept) == len(query):
        return target
    return urlunsplit(("", "", parts.path, urlencode(kept), parts.fragment))


def same_origin(headers: Any) -> bool:
    """Whether a request's ``Origin`` (when a browser sent one) is this site."""
    origin = headers.get("Origin")
    if origin is None:
        return True
    host = headers.get("Host", "")
    return bool(urlsplit(origin).netloc == host)


# -- the Quart side --------------------------------------------------------------------

View = Callable[..., Awaitable[Any]]


def register(app: QuartTrio, handle: InstanceHandle, tokens: Tokens) -> None:
    """Add the dashboard's pages and its session check to the app.

    A request the dashboard authenticates (a valid session cookie, and a CSRF token on
    anything that changes state) sets ``g.authenticated`` and ``g.caller``, which the API's
    token check then accepts.
    """
    sessions = Sessions(session_key(app, handle), tokens.authenticate, revocations=tokens)
    _add_session_checks(app, sessions)
    app.register_blueprint(Pages(handle, sessions, tokens.authenticate).blueprint())


def _add_session_checks(app: QuartTrio, sessions: Sessions) -> None:
    @app.before_request
    async def session_check() -> Response | None:
        session = sessions.read(request.cookies.get(SESSION_COOKIE))
        g.dashboard_session = session
        if session is None:
            return None
        if request.method in SAFE_METHODS:
            g.authenticated = True
            g.caller = session.caller
            return None
        if request.path == "/login":
            return None  # signing in again (a stale tab): the login checks its origin
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and not request.path.startswith("/api/"):
            sent = (await request.form).get(CSRF_FIELD)
        if sessions.check_csrf(session, sent) and same_origin(request.headers):
            g.authenticated = True
            g.caller = session.caller
            return None
        if request.path.startswith("/api/") and bearer_token(request.headers, {}) is not None:
            return None  # a client with its own token: the API's check decides
        message = (
            "this action was refused because it did not come from the dashboard page "
            "(missing or wrong CSRF token): reload the page and try again"
        )
        if not request.path.startswith("/api/"):
            return await expired_form(sessions, session)  # a person's form: a page, not JSON
        return error_response(403, "csrf", message)

    @app.before_websocket
    async def session_check_websocket() -> None:
        session = sessions.read(websocket.cookies.get(SESSION_COOKIE))
        if session is not None and same_origin(websocket.headers):
            g.authenticated = True
            g.caller = session.caller

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.path.startswith("/api/"):
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers["X-Frame-Options"] = "DENY"
        if request.path.startswith("/static/"):
            response.cache_control.no_cache = True
        elif not request.path.startswith("/api/"):
            response.cache_control.no_store = True
        return response


async def expired_form(sessions: Sessions, session: Session) -> Response:
    """The page for a form sent with a stale CSRF token: one from a tab opened before the
    person signed in again. Nothing was done; it offers a way back (and, for a stale
    "Sign out", a fresh one)."""
    referrer = urlsplit(request.headers.get("Referer", ""))
    back = safe_next(referrer.path if referrer.netloc == request.headers.get("Host") else None)
    body = await render_template(
        "expired.html",
        title="This form has expired",
        back=back,
        csrf_token=sessions.csrf_token(session),
        version=__version__,
    )
    return Response(body, status=403, content_type="text/html; charset=utf-8")


def _signed_in(view: View) -> View:
    """A page for signed-in users only; others are sent to the login page."""

    @wraps(view)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        if g.get("dashboard_session") is None:
            path = _without_token(request.full_path.rstrip("?"))
            return redirect(f"/login?next={quote(path, safe='/')}")
        return await view(*args, **kwargs)

    return guarded


class Pages:
    """The dashboard's pages: thin shells that the ES modules fill from the REST API."""

    def __init__(self, handle: InstanceHandle, sessions: Sessions, check_token: TokenCheck) -> None:
        self.handle = handle
        self.sessions = sessions
        self.check_token = check_token
        self.throttle = LoginThrottle()

    def blueprint(self) -> Blueprint:
        """The pages and the static files, as a blueprint."""
        web = Blueprint(
            "dashboard",
            __name__,
            template_folder=str(WEB_DIR / "templates"),
            static_folder=str(WEB_DIR / "static"),
            static_url_path="/static",
        )
        web.add_url_rule("/", view_func=self.home, methods=["GET"])
        web.add_url_rule("/login", view_func=self.login_form, methods=["GET"])
        web.add_url_rule("/login", view_func=self.login, methods=["POST"])
        web.add_url_rule("/logout", view_func=self.logout, methods=["POST"])
        web.add_url_rule("/services", view_func=self.services, methods=["GET"])
        web.add_url_rule("/new", view_func=self.new_service, methods=["GET"])
        web.add_url_rule("/instances", view_func=self.instances, methods=["GET"])
        web.add_url_rule("/services/<name>", view_func=self.service, methods=["GET"])
        web.add_url_rule("/services/<name>/<tab>", view_func=self.service, methods=["GET"])
        return web

    async def render(self, template: str, status: int = 200, **context: Any) -> Response:
        """A page, with what every page needs (the session's CSRF token)."""
        session: Session | None = g.get("dashboard_session")
        body = await render_template(
            template,
            csrf_token=self.sessions.csrf_token(session) if session else "",
            version=__version__,
            **context,
        )
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    async def home(self) -> Any:
        return redirect("/services")

    async def login_form(self) -> Any:
        if g.get("dashboard_session") is not None:
            return redirect(safe_next(request.args.get("next")))
        return await self.render("login.html", next=safe_next(request.args.get("next")))

    async def login(self) -> Any:
        form = await request.form
        target = safe_next(form.get("next"))
        if not same_origin(request.headers):
            error = "This sign-in did not come from this page."
            return await self.render("login.html", 403, next=target, error=error)
        address = request.remote_addr or "unknown"
        wait = self.throttle.wait(address)
        if wait > 0:
            seconds = math.ceil(wait)
            error = f"Too many failed sign-ins from your address: try again in {seconds} s."
            page = await self.render("login.html", 429, next=target, error=error)
            page.headers["Retry-After"] = str(seconds)
            return page
        token = (form.get("token") or "").strip()
        if not token:
            return await self.render("login.html", 400, next=target, error="Enter an API token.")
        if not self.check_token(token):
            count, lock = self.throttle.failed(address)
            locked = f"; sign-ins from it wait {lock:g} s" if lock else ""
            log.warning("dashboard: failed sign-in from %s (%d in a row%s)", address, count, locked)
            error = (
                "That token is not valid. The admin token is in the file admin-token "
                "in dployr's data dir."
            )
            return await self.render("login.html", 401, next=target, error=error)
        self.throttle.succeeded(address)
        session, cookie = self.sessions.open(token)
        response = redirect(target)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(SESSION_LIFETIME),
            path="/",
            httponly=True,
            secure=request.scheme in ("https", "wss"),
            samesite="Strict",
        )
        log.info("dashboard: signed in (session %s)", session.id[:6])
        return response

    async def logout(self) -> Any:
        # The session check has already refused a logout without the CSRF token.
        session: Session | None = g.get("dashboard_session")
        if session is not None:
            self.sessions.revoke(session)
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    @_signed_in
    async def services(self) -> Any:
        return await self.render("services.html", nav="services", title="Services")

    @_signed_in
    async def new_service(self) -> Any:
        return await self.render("new.html", nav="new", title="New service")

    @_signed_in
    async def instances(self) -> Any:
        return await self.render("instances.html", nav="instances", title="Instances")

    @_signed_in
    async def service(self, name: str, tab: str = "overview") -> Any:
        missing = {"nav": "services", "title": "Not found", "name": name}
        if tab not in TABS or not NAME_PATTERN.fullmatch(name):
            return await self.render("missing.html", 404, **missing)
        try:
            info = await self.handle.request(m.GetService(name))
        except Error as error:
            if error.code != "not_found":
                raise
            return await self.render("missing.html", 404, **missing)
        job = None  # a scheduled job's runs panel (dployr/gateway/jobs.py)
        if tab == "overview":
            with contextlib.suppress(Error):  # conflict: not a job
                job = await self.handle.request(m.GetJob(name, limit=1))
        return await self.render(
            "service.html",
            job=job,
            nav="services",
            title=f"{name} · {tab.title()}",
            service=info,
            tab=tab,
            tabs=TABS,
        )
