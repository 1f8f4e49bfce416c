"""The Services page and ``/api/services``: every supervisord program, start/stop/restart, log tail.

The admin cannot stop the two programs that carry its own page (``admin`` and ``nginx``); it
restarts them a moment after answering, so the answer still reaches the browser.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from flask import Blueprint, abort, render_template, request

from admin.actions import attempt
from admin.context import current_settings, supervisor
from services import programs
from services.errors import ServiceError
from services.supervisor import ProgramState, Supervisor

log = logging.getLogger("comfypod.admin.services")

bp = Blueprint("services", __name__, url_prefix="/services")
api = Blueprint("services_api", __name__, url_prefix="/api/services")

ACTIONS = ("start", "stop", "restart")
SELF_SERVING = ("admin", "nginx")  # programs this page travels through
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TAIL_BYTES = 16384
MAX_TAIL_BYTES = 1 << 20
# A stop waits for the program's stopwaitsecs (ComfyUI: 30 s, then SIGKILL) and a start for its
# startsecs: an action must outwait both, or a slow but successful stop reads as a failure.
ACTION_TIMEOUT = 90.0


def _title(name: str) -> str:
    try:
        return programs.program(name).title
    except KeyError:
        return name


def program_dict(state: ProgramState) -> dict[str, Any]:
    return {
        "name": state.name,
        "title": _title(state.name),
        "state": state.state,
        "running": state.running,
        "pid": state.pid,
        "uptime": state.uptime,
        "description": state.description,
        "exit_status": state.exit_status,
        "spawn_error": state.spawn_error,
    }


def list_programs() -> list[dict[str, Any]]:
    return [program_dict(s) for s in supervisor().states()]


def _known(name: str) -> ProgramState:
    if not NAME_RE.match(name):
        abort(404, description=f"no program named {name!r}")
    for state in supervisor().states():
        if state.name == name:
            return state
    abort(404, description=f"no program named {name!r}")


def control(name: str, action: str) -> str:
    """Run ``action`` on program ``name``; return a one-line result for people."""
    if action not in ACTIONS:
        abort(404, description=f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    state = _known(name)
    sup = supervisor(timeout=ACTION_TIMEOUT)
    if name in SELF_SERVING:
        if action == "stop":
            raise ServiceError(f"{name} serves this page, so it cannot be stopped from here: "
                               f"use `comfypod ctl stop {name}` in a terminal")
        if action == "start" and state.running:
            return f"{name} is already running"
        restart_later(current_settings().supervisor_socket, name)
        return f"{name} restarts in a moment; this page reconnects by itself"
    if action == "start":
        if state.running:
            return f"{name} is already running"
        sup.start(name)
        return f"{name} started"
    if action == "stop":
        if state.state in ("STOPPED", "EXITED", "FATAL"):
            return f"{name} is not running"
        sup.stop(name)
        return f"{name} stopped"
    sup.restart(name)
    return f"{name} restarted"


def restart_later(socket_path, name: str, delay: float = 0.5) -> None:
    """Restart ``name`` in the background, after the answer is sent (the Services page, a settings
    change that ComfyUI must pick up). The admin itself gets TERM and supervisord (autorestart)
    starts it again: stopping it over RPC would kill the caller before it could start it."""

    def run() -> None:
        time.sleep(delay)
        sup = Supervisor(socket_path, timeout=ACTION_TIMEOUT)
        try:
            if name == "admin":
                sup.signal(name, "TERM")
            else:
                sup.restart(name)
        except ServiceError as err:
            log.error("restart of %s failed: %s", name, err)

    threading.Thread(target=run, name=f"restart-{name}", daemon=True).start()


def tail(name: str, length: int = TAIL_BYTES) -> str:
    _known(name)
    return supervisor().tail(name, max(1, min(length, MAX_TAIL_BYTES)))


# ---- pages -----------------------------------------------------------------------------------


def programs_or_error() -> tuple[list[dict[str, Any]], str | None]:
    """The programs, or none and the one line saying why supervisord did not answer."""
    items, error = attempt(list_programs, ServiceError)
    return items or [], error


@bp.get("")
def index():
    items, error = programs_or_error()
    names = [p["name"] for p in items]
    selected = request.args.get("log") or ("comfyui" if "comfyui" in names or not names else names[0])
    return render_template("services/index.html", selected=selected, programs=items, error=error, compact=False)


@bp.get("/_table")
def table():
    items, error = programs_or_error()
    compact = bool(request.args.get("compact"))
    return render_template("services/_table.html", programs=items, error=error, compact=compact)


@bp.post("/<name>/<action>")
def act(name: str, action: str):
    message, error = attempt(lambda: control(name, action), ServiceError)
    items, list_error = programs_or_error()
    error = error or list_error
    return render_template("services/_table.html", programs=items, message=message, error=error,
                           compact=bool(request.args.get("compact")))


@bp.get("/<name>/_log")
def log_fragment(name: str):
    text, error = attempt(lambda: tail(name), ServiceError)
    return render_template("services/_log.html", name=name, text=text or "", error=error)


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """Every supervisord program.
    ---
    get:
      summary: List programs with state and uptime
      tags: [services]
      responses:
        200:
          description: Programs
          content:
            application/json:
              schema:
                type: object
                properties:
                  programs:
                    type: array
                    items: {$ref: '#/components/schemas/Program'}
        503: {$ref: '#/components/responses/Error'}
    """
    return {"programs": list_programs()}


@api.get("/<name>")
def api_get(name: str):
    """One program.
    ---
    get:
      summary: State of one program
      tags: [services]
      parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: The program
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Program'}
        404: {$ref: '#/components/responses/Error'}
        503: {$ref: '#/components/responses/Error'}
    """
    return program_dict(_known(name))


@api.post("/<name>/<action>")
def api_act(name: str, action: str):
    """Start, stop or restart a program.
    ---
    post:
      summary: Start, stop or restart a program
      description: admin and nginx cannot be stopped from the admin; their restart happens just after the answer.
      tags: [services]
      parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      - {name: action, in: path, required: true, schema: {type: string, enum: [start, stop, restart]}}
      responses:
        200:
          description: Done
          content:
            application/json:
              schema:
                type: object
                properties:
                  message: {type: string}
                  program: {$ref: '#/components/schemas/Program'}
        404: {$ref: '#/components/responses/Error'}
        503: {$ref: '#/components/responses/Error'}
    """
    message = control(name, action)
    return {"message": message, "program": program_dict(_known(name))}


@api.get("/<name>/log")
def api_log(name: str):
    """The end of a program's log.
    ---
    get:
      summary: Tail a program's log
      tags: [services]
      parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      - {name: bytes, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1048576, default: 16384}}
      responses:
        200:
          description: The last bytes of the log
          content:
            application/json:
              schema:
                type: object
                properties:
                  name: {type: string}
                  text: {type: string}
        404: {$ref: '#/components/responses/Error'}
        503: {$ref: '#/components/responses/Error'}
    """
    length = request.args.get("bytes", TAIL_BYTES, type=int) or TAIL_BYTES
    return {"name": name, "text": tail(name, length)}
