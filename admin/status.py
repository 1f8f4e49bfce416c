"""The start-up page at ``/_status/<program>``: what nginx shows instead of a bare 502.

nginx sends a request here (``error_page 502 503 504 = @starting``) when a service's port does
not answer. The answer is always a 503 that refreshes itself, saying whether the program is
starting, restarting, stopped or given up on (FATAL). Anyone may see the page (the login may be
what is restarting); the last lines of the program's log are shown only to a logged-in session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, abort, jsonify, make_response, render_template, request, url_for
from flask_login import current_user

from admin.auth import safe_next
from admin.context import current_settings, supervisor
from services.errors import ServiceError
from services.logs import mask_text, settings_secrets
from services.programs import PROGRAM_NAMES, program
from services.settings import Settings

log = logging.getLogger("comfypod.admin.status")

bp = Blueprint("status", __name__, url_prefix="/_status")

LOG_BYTES = 6000
LOG_LINES = 40

# supervisord state -> what the page says (phase) and how soon it reloads (seconds).
PHASES: dict[str, str] = {
    "STARTING": "starting",
    "RUNNING": "starting",  # the process runs but its port does not answer yet (loading)
    "BACKOFF": "restarting",
    "STOPPING": "restarting",
    "STOPPED": "stopped",
    "EXITED": "stopped",
    "FATAL": "failed",
}
REFRESH: dict[str, int] = {"starting": 3, "restarting": 3, "stopped": 5, "off": 30, "failed": 15}


@dataclass(frozen=True)
class StatusView:
    program: str
    title: str
    state: str  # supervisord's state name, or "UNKNOWN" when supervisord does not answer
    phase: str  # starting, restarting, stopped, off, failed
    headline: str
    detail: str
    refresh: int

    def to_dict(self) -> dict[str, object]:
        return {
            "program": self.program,
            "state": self.state,
            "phase": self.phase,
            "message": self.headline,
            "detail": self.detail,
            "retry_after": self.refresh,
        }


def describe(settings: Settings, name: str, state: str, spawn_error: str = "") -> StatusView:
    """Pure: the page's words for ``name`` in supervisord ``state`` (no I/O)."""
    item = program(name)
    title = item.title
    if not getattr(settings, item.enable_field):
        phase = "off"
        headline = f"{title} is turned off"
        detail = f"It is disabled by {item.enable_variable}=false in the pod's settings."
    else:
        phase = PHASES.get(state, "starting")
        if phase == "starting":
            headline = f"{title} is starting"
            detail = "This page reloads itself until it answers."
        elif phase == "restarting":
            headline = f"{title} is restarting"
            detail = "It stopped and supervisord is starting it again. This page reloads itself."
        elif phase == "stopped":
            headline = f"{title} is stopped"
            detail = "Start it from the admin's Services page (or `comfypod ctl start " + name + "`)."
        else:
            headline = f"{title} could not start"
            detail = "supervisord gave up on it after it failed several times in a row."
            if spawn_error:
                detail += f" ({spawn_error})"
    return StatusView(name, title, state, phase, headline, detail, REFRESH[phase])


def _state(name: str) -> tuple[str, str]:
    try:
        info = supervisor().state(name)
    except ServiceError as err:
        log.info("status page for %s: %s", name, err)
        return "UNKNOWN", ""
    return info.state, info.spawn_error


def _log_tail(settings: Settings, name: str) -> str:
    try:
        text = supervisor().tail(name, LOG_BYTES)
    except ServiceError as err:
        return f"(the log is not available: {err})"
    lines = text.splitlines()[-LOG_LINES:]
    return mask_text("\n".join(lines), settings_secrets(settings))


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


@bp.get("/<name>")
def page(name: str):
    """The start-up page of one program: always 503, with Retry-After and a self-refresh."""
    if name not in PROGRAM_NAMES:
        abort(404)
    settings = current_settings()
    state, spawn_error = _state(name)
    view = describe(settings, name, state, spawn_error)
    logged_in = bool(current_user.is_authenticated)
    log_tail = _log_tail(settings, name) if view.phase == "failed" and logged_in else None
    if _wants_json():
        body = view.to_dict()
        if log_tail is not None:
            body["log"] = log_tail
        response = make_response(jsonify(body), 503)
    else:
        login_url = url_for("auth.login", next=safe_next(request.headers.get("X-Original-URI")))
        html = render_template(
            "status/page.html", view=view, log_tail=log_tail, logged_in=logged_in, login_url=login_url
        )
        response = make_response(html, 503)
    response.headers["Retry-After"] = str(view.refresh)
    response.headers["Cache-Control"] = "no-store"
    return response
