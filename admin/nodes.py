"""The Nodes page and ``/api/nodes``: custom nodes with ComfyUI's import verdict, install by git URL,
remove, restore an image node, export and import a lock file.

Installs (git clone plus pip) can take minutes, longer than a proxy waits, so they run as a
background job whose state lives in ``config/state/nodes-job.json``: every gunicorn worker sees
it, and the page polls while it runs. ``services.pyenv``'s lock keeps one install at a time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, request

from admin.actions import attempt
from admin.context import InputError, current_settings
from services import nodes, pyenv
from services.errors import ComfyPodError
from services.files import write_atomic
from services.settings import Settings

log = logging.getLogger("comfypod.admin.nodes")

bp = Blueprint("nodes", __name__, url_prefix="/nodes")
api = Blueprint("nodes_api", __name__, url_prefix="/api/nodes")

JOB_FILE = "nodes-job.json"
MAX_LOCK_BYTES = 1 << 20


# ---- the background job ----------------------------------------------------------------------


def _job_path(settings: Settings) -> Path:
    return settings.state_dir / JOB_FILE


def read_job(settings: Settings) -> dict[str, Any] | None:
    try:
        job = json.loads(_job_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(job, dict):
        return None
    if job.get("state") == "running" and not _alive(job.get("pid")):
        job.update(state="failed", message="the admin restarted before the job finished; look at the node list")
    return job


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _write_job(settings: Settings, job: dict[str, Any]) -> None:
    write_atomic(_job_path(settings), json.dumps(job, indent=1))


def start_job(settings: Settings, action: str, target: str, work: Callable[[], str]) -> dict[str, Any]:
    """Run ``work`` in a thread; its one-line result (or error) becomes the job's message."""
    current = read_job(settings)
    if current and current.get("state") == "running":
        raise InputError(f"{current['action']} {current['target']} is still running: wait for it to finish")
    job = {"action": action, "target": target, "state": "running", "message": "", "pid": os.getpid(),
           "started": time.time(), "finished": None}
    _write_job(settings, job)

    def run() -> None:
        try:
            job.update(state="done", message=work())
        except ComfyPodError as err:
            job.update(state="failed", message=str(err))
        except Exception as err:  # a job thread must always leave a verdict behind
            log.exception("%s %s failed", action, target)
            job.update(state="failed", message=f"unexpected error: {err}")
        job["finished"] = time.time()
        _write_job(settings, job)

    threading.Thread(target=run, name=f"nodes-{action}", daemon=True).start()
    return job


def _install_work(settings: Settings, spec: str, name: str | None) -> Callable[[], str]:
    def work() -> str:
        done = nodes.install_node(settings, spec, name=name, lock_timeout=5)
        text = f"installed {done.node.name} at {(done.node.commit or '?')[:10]}"
        if done.requirements is not None:
            text += "; " + done.requirements.line().split(": ", 1)[-1]
        return text + ". Restart ComfyUI to load it."

    return work


def _import_work(settings: Settings, data: Any) -> Callable[[], str]:
    def work() -> str:
        outcomes = nodes.import_lock(settings, data)
        parts = [f"{o.name}: {o.action}{' (' + o.message + ')' if o.message else ''}" for o in outcomes]
        failed = [o.name for o in outcomes if o.action == "failed"]
        summary = "; ".join(parts) or "the lock file lists no nodes"
        if failed:
            raise InputError(f"{len(failed)} node(s) failed: {summary}")
        return summary + ". Restart ComfyUI to load new nodes."

    return work


def _spec_from(data: Any) -> tuple[str, str | None]:
    spec = str((data or {}).get("url") or "").strip()
    name = str((data or {}).get("name") or "").strip() or None
    if not spec:
        raise InputError("give the node's git URL, e.g. https://github.com/owner/repo or …/repo@v1.2")
    url, _rev = nodes.parse_spec(spec)
    nodes.check_url(url)
    nodes.check_name(name or nodes.name_from_url(url))
    return spec, name


def _lock_from_upload() -> Any:
    upload = request.files.get("lock")
    if upload is None or not upload.filename:
        raise InputError("choose a lock file exported by `comfypod nodes export`")
    raw = upload.read(MAX_LOCK_BYTES + 1)
    if len(raw) > MAX_LOCK_BYTES:
        raise InputError("that lock file is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise InputError(f"{upload.filename} is not JSON: {err}") from None
    nodes.read_lock(data)
    return data


# ---- what the page shows ------------------------------------------------------------------------


def overview(settings: Settings) -> dict[str, Any]:
    state = pyenv.load_state(settings)
    return {
        "nodes": [n.to_dict() for n in nodes.list_nodes(settings)],
        "hidden": sorted(nodes.hidden(settings)),
        "versions": state.get("versions") or {},
        "job": read_job(settings),
    }


def _table(message: str | None = None, error: str | None = None, status: int = 200):
    settings = current_settings()
    data = overview(settings)
    return render_template("nodes/_table.html", message=message, error=error, **data), status


@bp.get("")
def index():
    settings = current_settings()
    return render_template("nodes/index.html", **overview(settings))


@bp.get("/_table")
def table():
    return _table()


def _act(work: Callable[[], str | None]):
    """Run a page action; its message or error shows above the table (the table stays)."""
    message, error = attempt(work)
    return _table(message=message, error=error)


@bp.post("/install")
def install():
    settings = current_settings()

    def work() -> None:
        spec, name = _spec_from(request.form)
        target = name or nodes.name_from_url(nodes.parse_spec(spec)[0])
        start_job(settings, "install", target, _install_work(settings, spec, name))

    return _act(work)


@bp.post("/import")
def import_lock():
    settings = current_settings()

    def work() -> None:
        start_job(settings, "import", "lock file", _import_work(settings, _lock_from_upload()))

    return _act(work)


@bp.post("/<name>/remove")
def remove(name: str):
    return _act(lambda: nodes.remove_node(current_settings(), name) + ". Restart ComfyUI to unload it.")


@bp.post("/<name>/restore")
def restore(name: str):
    return _act(lambda: nodes.restore_node(current_settings(), name) + ". Restart ComfyUI to load it.")


@bp.get("/export")
def export():
    return _lock_response(current_settings())


def _lock_response(settings: Settings) -> Response:
    body = json.dumps(nodes.export_lock(settings), indent=1) + "\n"
    return Response(body, mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="comfypod-nodes.lock.json"'})


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """Custom nodes with their requirements and ComfyUI's import verdict.
    ---
    get:
      summary: List custom nodes
      tags: [nodes]
      responses:
        200:
          description: Nodes, removed image nodes, versions in use and the current job
          content:
            application/json:
              schema:
                type: object
                properties:
                  nodes:
                    type: array
                    items:
                      type: object
                      properties:
                        name: {type: string}
                        origin: {type: string, enum: [user, image, link]}
                        kind: {type: string, enum: [git, folder, file]}
                        enabled: {type: boolean}
                        url: {type: string, nullable: true}
                        commit: {type: string, nullable: true}
                        branch: {type: string, nullable: true}
                        requirements: {type: string, enum: [none, pending, ok, refused, failed, 'off', image]}
                        packages: {type: array, items: {type: string}}
                        message: {type: string}
                        imported: {type: string, enum: [ok, failed, unknown]}
                        import_seconds: {type: number, nullable: true}
                        import_error: {type: string}
                        path: {type: string}
                  hidden: {type: array, items: {type: string}}
                  versions: {type: object, additionalProperties: {type: string, nullable: true}}
                  job: {allOf: [{$ref: '#/components/schemas/NodeJob'}], nullable: true}
    """
    return overview(current_settings())


@api.post("")
def api_install():
    """Install a custom node from git (runs in the background).
    ---
    post:
      summary: Install a custom node from a git URL
      description: Clones URL[@rev] into the workspace and installs its requirements into the package
        layer under the image's constraints. Poll GET /api/nodes/job for the result.
      tags: [nodes]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [url]
              properties:
                url: {type: string, example: "https://github.com/owner/repo@v1.0"}
                name: {type: string, description: folder name (default the repository's)}
      responses:
        202: {$ref: '#/components/responses/NodeJobStarted'}
        400: {$ref: '#/components/responses/Error'}
    """
    settings = current_settings()
    spec, name = _spec_from(request.get_json(silent=True))
    job = start_job(settings, "install", name or nodes.name_from_url(nodes.parse_spec(spec)[0]),
                    _install_work(settings, spec, name))
    return {"job": job}, 202


@api.get("/job")
def api_job():
    """The last install or import job.
    ---
    get:
      summary: State of the last install or import
      tags: [nodes]
      responses:
        200:
          description: The job (null when none ran yet)
          content:
            application/json:
              schema:
                type: object
                properties:
                  job: {allOf: [{$ref: '#/components/schemas/NodeJob'}], nullable: true}
    """
    return {"job": read_job(current_settings())}


@api.delete("/<name>")
def api_remove(name: str):
    """Remove a custom node.
    ---
    delete:
      summary: Remove a custom node (an image node is hidden instead)
      tags: [nodes]
      parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: Removed
          content:
            application/json:
              schema:
                type: object
                properties:
                  message: {type: string}
        400: {$ref: '#/components/responses/Error'}
    """
    return {"message": nodes.remove_node(current_settings(), name)}


@api.post("/<name>/restore")
def api_restore(name: str):
    """Bring back a removed image node.
    ---
    post:
      summary: Restore an image node that was removed
      tags: [nodes]
      parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: Restored
          content:
            application/json:
              schema:
                type: object
                properties:
                  message: {type: string}
        400: {$ref: '#/components/responses/Error'}
    """
    return {"message": nodes.restore_node(current_settings(), name)}


@api.get("/export")
def api_export():
    """The nodes lock file.
    ---
    get:
      summary: Export the nodes, their commits and the packages they added
      tags: [nodes]
      responses:
        200:
          description: A lock file for POST /api/nodes/import or `comfypod nodes import`
          content:
            application/json:
              schema: {type: object}
    """
    return _lock_response(current_settings())


@api.post("/import")
def api_import():
    """Install the nodes of a lock file (runs in the background).
    ---
    post:
      summary: Import a nodes lock file
      description: Installs each node that is missing, at its commit, with the lock's package versions.
        Poll GET /api/nodes/job for the result.
      tags: [nodes]
      requestBody:
        required: true
        content:
          application/json:
            schema: {type: object, description: a lock file from GET /api/nodes/export}
      responses:
        202: {$ref: '#/components/responses/NodeJobStarted'}
        400: {$ref: '#/components/responses/Error'}
    """
    settings = current_settings()
    data = request.get_json(silent=True)
    nodes.read_lock(data)
    return {"job": start_job(settings, "import", "lock file", _import_work(settings, data))}, 202
