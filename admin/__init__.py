"""The admin web app: ``create_app(settings=None)`` builds the Flask application.

One factory wires the pieces: settings on ``app.extensions``, ProxyFix for nginx's headers,
a session cookie that is Secure whenever the request came over https, flask-login, CSRF, every
area blueprint (page ``bp`` plus JSON ``api``), ``/healthz`` and the error handlers.
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta

from flask import Flask, Request, g, has_request_context, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from services import credentials
from services.errors import CatalogError, ComfyPodError, PathError, ServiceError, WorkspaceError
from services.settings import Settings, load_settings

log = logging.getLogger("comfypod.admin")

MAX_BODY_BYTES = 32 * 1024 * 1024  # 413 above this (issue 11)

# Area modules, each with a page blueprint ``bp`` and a JSON blueprint ``api``.
AREAS: tuple[str, ...] = (
    "auth",
    "dashboard",
    "system",
    "presets",
    "models",
    "services",
    "logs",
    "settings",
    "workflows",
    "gallery",
    "nodes",
    "status",
    "api",
)


# HTTP status for each kind of project error a view lets through.
ERROR_STATUS: dict[type[ComfyPodError], int] = {
    PathError: 400,
    CatalogError: 422,
    ServiceError: 503,
    WorkspaceError: 507,
}


def error_status(err: ComfyPodError) -> int:
    from admin.context import Conflict, Unavailable

    if isinstance(err, Unavailable):
        return 503
    if isinstance(err, Conflict):
        return 409
    for kind in type(err).__mro__:
        if kind in ERROR_STATUS:
            return ERROR_STATUS[kind]
    return 400


class _Session(SecureCookieSessionInterface):
    """The session cookie carries Secure when this request came over https (after ProxyFix)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return has_request_context() and request.is_secure

    def save_session(self, app: Flask, session, response) -> None:
        # a request authenticated by the API token has no session: no cookie is handed to
        # scripts (a page fetched with the token would otherwise get one for its CSRF token)
        if g.get("auth_via") == "token":
            return
        super().save_session(app, session, response)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.extensions["comfypod.settings"] = settings
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)  # type: ignore[method-assign]
    app.session_interface = _Session()
    app.config.update(
        SECRET_KEY=credentials.session_key(settings),
        SESSION_COOKIE_NAME="comfypod_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
        # A page left open for hours must still be able to act: the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        # Checked manually in auth.before_request, so Bearer-token requests can skip it.
        WTF_CSRF_CHECK_DEFAULT=False,
        # The token plus SameSite=Lax is the defence; a Referer check breaks behind the pod proxy.
        WTF_CSRF_SSL_STRICT=False,
        # No admin upload is bigger than a 20 MB workflow: refuse larger bodies before reading them.
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        JSON_SORT_KEYS=False,
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    from admin import filters, nav
    from admin.auth import init_auth

    filters.register(app)
    init_auth(app)
    for name in AREAS:
        module = importlib.import_module(f"admin.{name}")
        for attr in ("bp", "api"):
            blueprint = getattr(module, attr, None)
            if blueprint is not None:
                app.register_blueprint(blueprint)

    @app.context_processor
    def _globals() -> dict:
        return {"nav_links": nav.links(app), "has_endpoint": app.view_functions.__contains__}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    _error_handlers(app)
    return app


def _wants_json(req: Request) -> bool:
    if req.path.startswith("/api/") or req.path.startswith("/_auth/verify"):
        return True
    if req.headers.get("HX-Request"):
        return False
    best = req.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and req.accept_mimetypes[best] > req.accept_mimetypes["text/html"]


def _error_handlers(app: Flask) -> None:
    @app.errorhandler(ComfyPodError)
    def _project_error(err: ComfyPodError):
        status = error_status(err)
        log.warning("%s %s: %s", request.method, request.path, err)
        if _wants_json(request):
            return jsonify(error=str(err), kind=type(err).__name__), status
        if request.headers.get("HX-Request"):
            return render_template("_error.html", message=str(err)), status
        return render_template("error.html", message=str(err), status=status), status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        if status < 400:
            return err
        message = err.description or err.name
        if _wants_json(request):
            response = jsonify(error=message, kind=err.name)
        elif request.headers.get("HX-Request"):
            response = app.make_response(render_template("_error.html", message=message))
        else:
            response = app.make_response(render_template("error.html", message=message, status=status))
        response.status_code = status
        for header in ("Retry-After", "WWW-Authenticate", "Allow"):
            value = err.get_response().headers.get(header)
            if value:
                response.headers[header] = value
        return response
