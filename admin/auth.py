"""Login, logout, the API token, the global login guard and nginx's ``auth_request`` endpoint.

Every route needs a logged-in session, ``Authorization: Bearer <api token>`` or ``?token=<api
token>``, except the public endpoints below. State-changing requests also need a CSRF token unless
they were authenticated with the API token. The guard runs as one ``before_request`` for the whole
app, so a new blueprint is protected without doing anything.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs, urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect

from admin.context import current_settings
from admin.limiter import LoginLimiter
from services import credentials

log = logging.getLogger("comfypod.admin.auth")

bp = Blueprint("auth", __name__, url_prefix="/_auth")
api = Blueprint("auth_api", __name__, url_prefix="/api/auth")

login_manager = LoginManager()
csrf = CSRFProtect()

# Endpoints anyone may call; everything else needs a session or the API token.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "auth.verify", "static", "healthz"})
PUBLIC_BLUEPRINTS = frozenset({"status"})  # /_status/<program>: the start-up page
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
USER_ID = "admin"


class Admin(UserMixin):
    """The one account."""

    id = USER_ID


@login_manager.user_loader
def _load_user(user_id: str) -> Admin | None:
    return Admin() if user_id == USER_ID else None


def init_auth(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.config.setdefault("LOGIN_FAILURE_PAUSE", 0.5)
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    settings = app.extensions["comfypod.settings"]
    app.extensions["comfypod.login_limiter"] = LoginLimiter(settings.state_dir / "admin_logins.sqlite3")
    app.before_request(guard)


def limiter() -> LoginLimiter:
    return current_app.extensions["comfypod.login_limiter"]


def request_token() -> str | None:
    """The API token this request carries (Bearer header or ``token`` query parameter), if any."""
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    token = request.args.get("token")
    return token if token else None


def is_public() -> bool:
    return request.endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS


def guard():
    """before_request: authenticate, then check CSRF on state-changing session requests."""
    g.auth_via = None
    token = request_token()
    if token is not None and not is_public():
        if credentials.check_api_token(current_settings(), token):
            g.auth_via = "token"
            return None
        return _refuse("invalid API token", script=True)
    if current_user.is_authenticated:
        g.auth_via = "session"
    elif not is_public():
        return _refuse("login required")
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return None


def _refuse(reason: str, script: bool = False):
    """401 for API, script and htmx calls (htmx is told where to log in), a redirect to login for pages."""
    if script or request.path.startswith("/api/") or _prefers_json():
        response = jsonify(error=reason)
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="comfypod"'
        return response
    target = url_for("auth.login", next=_current_path())
    if request.headers.get("HX-Request"):
        response = make_response("", 401)
        response.headers["HX-Redirect"] = url_for("auth.login", next=_hx_page())
        return response
    return redirect(target)


def _prefers_json() -> bool:
    accept = request.accept_mimetypes
    return accept.best == "application/json"


def _current_path() -> str:
    path = request.full_path if request.query_string else request.path
    return path


def _hx_page() -> str:
    page = request.headers.get("HX-Current-URL", "")
    parts = urlsplit(page)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return safe_next(path)


def safe_next(value: str | None) -> str:
    """Only a local path starting with one "/" (no scheme, no host, no backslash) may be a target."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(next_url)
        return render_template("auth/login.html", next_url=next_url, error=None)
    client = request.remote_addr or "unknown"
    wait = limiter().retry_after(client)
    if wait > 0:
        return _login_refused(next_url, f"Too many failed logins: wait {int(wait) + 1} s and try again.", 429, wait)
    if credentials.check_password(current_settings(), request.form.get("password", "")):
        limiter().succeeded(client)
        session.clear()
        login_user(Admin())
        session.permanent = True
        log.info("login from %s", client)
        return redirect(next_url)
    blocked = limiter().failed(client)
    log.warning("failed login from %s (%d in a row)", client, limiter().failures(client))
    time.sleep(current_app.config["LOGIN_FAILURE_PAUSE"])
    if blocked:
        return _login_refused(next_url, f"Wrong password. Too many failures: wait {int(blocked)} s.", 429, blocked)
    return _login_refused(next_url, "Wrong password.", 401, 0)


def _login_refused(next_url: str, message: str, status: int, wait: float):
    response = make_response(render_template("auth/login.html", next_url=next_url, error=message), status)
    if wait:
        response.headers["Retry-After"] = str(int(wait) + 1)
    return response


@bp.post("/logout")
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/verify")
def verify():
    """nginx ``auth_request``: 204 when the request is authenticated, else 401; never a redirect."""
    if current_user.is_authenticated:
        return "", 204
    settings = current_settings()
    candidates = []
    token = request_token()
    if token:
        candidates.append(token)
    original = request.headers.get("X-Original-URI", "")
    if "token=" in original:
        candidates += parse_qs(urlsplit(original).query).get("token", [])
    if any(credentials.check_api_token(settings, c) for c in candidates):
        return "", 204
    return "", 401


@api.get("")
def whoami():
    """Who is calling and how.
    ---
    get:
      summary: The authenticated identity
      tags: [auth]
      responses:
        200:
          description: The user and how the request was authenticated
          content:
            application/json:
              schema:
                type: object
                properties:
                  user: {type: string}
                  via: {type: string, enum: [session, token]}
    """
    return {"user": USER_ID, "via": g.auth_via}
