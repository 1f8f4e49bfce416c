"""The Workflows page and ``/api/workflows``: library, upload, parameters, run, live progress,
queue with cancel, and missing models turned into presets installable in one click.

A run gets its own ComfyUI client id (``services.run_watch.run_client_id``) so its progress can be
followed over server-sent events by whichever gunicorn worker serves the stream.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, stream_with_context, url_for

from admin.context import InputError, Unavailable, catalog_store, current_settings
from admin.payload import json_object
from services import library, model_check, model_presets, workflow
from services.comfyui_client import ComfyUIClient, PromptRejected, history_status
from services.errors import ComfyPodError, ComfyUIError, WorkflowError
from services.healthprobe import read_health
from services.run_watch import run_client_id, snapshot, watch

log = logging.getLogger("comfypod.admin.workflows")

bp = Blueprint("workflows", __name__, url_prefix="/workflows")
api = Blueprint("workflows_api", __name__, url_prefix="/api/workflows")

OBJECT_INFO_TTL = 15.0
_object_info_lock = threading.Lock()
_object_info_cache: dict[str, tuple[float, dict]] = {}


# ---- helpers ---------------------------------------------------------------------------------


def client(timeout: float = 15.0) -> ComfyUIClient:
    return ComfyUIClient(current_settings().comfyui_url, timeout=timeout)


def object_info(refresh: bool = False) -> dict:
    """ComfyUI's /object_info, kept for a few seconds (it is large and asked for on every page)."""
    url = current_settings().comfyui_url
    with _object_info_lock:
        cached = _object_info_cache.get(url)
        if cached and not refresh and time.monotonic() - cached[0] < OBJECT_INFO_TTL:
            return cached[1]
    info = client(timeout=60).object_info()
    with _object_info_lock:
        _object_info_cache[url] = (time.monotonic(), info)
    return info


def _presets() -> list[Any]:
    try:
        return list(catalog_store().current())
    except (ComfyPodError, Unavailable) as err:
        log.warning("no catalog for missing models: %s", err)
        return []


def _source() -> tuple[str, str]:
    values = request.values
    if request.method == "POST" and request.is_json:
        values = request.get_json(silent=True) or {}
    source = str(values.get("source") or "library")
    name = str(values.get("name") or "")
    if source not in library.SOURCES:
        raise InputError(f"unknown workflow source {source!r}: one of {', '.join(library.SOURCES)}")
    if not name:
        raise InputError("name the workflow to open (source and name)")
    return source, name


def inspect(loaded: library.Loaded, info: dict) -> dict[str, Any]:
    """Convert, then list parameters, missing node types and missing models (with presets)."""
    result: dict[str, Any] = {"source": loaded.source, "name": loaded.name, "title": loaded.title,
                              "format": loaded.format, "api": None, "parameters": [], "missing_nodes": [],
                              "missing_models": [], "preset_ids": [], "error": None}
    try:
        api_prompt = workflow.as_api(loaded.data, info)
    except workflow.MissingNodesError as err:
        result["missing_nodes"] = [_missing_node(m) for m in err.missing]
        result["error"] = str(err)
        return result
    except WorkflowError as err:
        result["error"] = str(err)
        return result
    result["api"] = api_prompt
    result["parameters"] = [p.to_dict() for p in workflow.parameters(api_prompt, info)]
    refs = workflow.required_models(api_prompt, info)
    listing = model_presets.listing_for(client(), {r.folder for r in refs})
    report = model_presets.missing_report(api_prompt, info, listing, _presets(), hint=f"{loaded.title} {loaded.name}")
    result["missing_models"] = [m.to_dict() for m in report]
    result["preset_ids"] = model_presets.preset_ids(report)
    return result


def _missing_node(missing: Any) -> dict:
    pack = getattr(missing, "pack", None)
    return {"class_type": missing.class_type, "node_ids": list(missing.node_ids),
            "pack": getattr(pack, "name", None) if pack else None,
            "repository": getattr(pack, "url", None) or getattr(pack, "repository", None) if pack else None}


def _form_parameters(form: Any) -> dict[str, str]:
    values = {key[2:]: value for key, value in form.items() if key.startswith("p:")}
    for key in form.getlist("random_seed") if hasattr(form, "getlist") else []:
        values[key] = "random"
    return values


def start_run(loaded: library.Loaded, values: dict[str, Any]) -> dict[str, Any]:
    """Convert, apply parameters, queue with a run-specific client id; returns {prompt_id, number}."""
    info = object_info()
    api_prompt = workflow.as_api(loaded.data, info)
    if values:
        api_prompt = workflow.apply_parameters(api_prompt, values, info)
    extra: dict[str, Any] = {"comfypod": {"source": loaded.source, "name": loaded.name, "title": loaded.title}}
    if loaded.ui is not None:
        extra["extra_pnginfo"] = {"workflow": loaded.ui}
    prompt_id = str(uuid.uuid4())
    ticket = client().queue_prompt(api_prompt, extra_data=extra, prompt_id=prompt_id,
                                   client_id=run_client_id(prompt_id))
    log.info("queued %s/%s as %s", loaded.source, loaded.name, ticket.prompt_id)
    return {"prompt_id": ticket.prompt_id, "number": ticket.number, "node_errors": ticket.node_errors,
            "nodes": len(api_prompt)}


def queue_view() -> dict[str, Any]:
    """Running and waiting prompts plus the last finished ones, labelled for people."""
    comfy = client(timeout=5)
    state = comfy.queue()

    def label(item: Any) -> str:
        meta = (item.extra_data or {}).get("comfypod") or {}
        return meta.get("title") or meta.get("name") or f"{len(item.prompt)} nodes"

    running = [{"prompt_id": i.prompt_id, "title": label(i), "number": i.number} for i in state.running]
    pending = [{"prompt_id": i.prompt_id, "title": label(i), "number": i.number}
               for i in sorted(state.pending, key=lambda i: i.number)]
    recent = []
    history = comfy.history(max_items=8)
    for prompt_id, entry in reversed(list(history.items())):
        item = entry.get("prompt") or []
        meta = (item[3] if len(item) > 3 else {}).get("comfypod") or {}
        word = history_status(entry) or "?"
        files = [f for ui in (entry.get("outputs") or {}).values() for f in ui.get("images", []) or []
                 if isinstance(f, dict) and f.get("type") == "output"]
        recent.append({"prompt_id": prompt_id, "title": meta.get("title") or meta.get("name") or "workflow",
                       "status": word, "files": files})
    # a run that ended between the /queue and /history reads is in both: show it once, as finished
    ended = {r["prompt_id"] for r in recent}
    running = [r for r in running if r["prompt_id"] not in ended]
    pending = [p for p in pending if p["prompt_id"] not in ended]
    return {"running": running, "pending": pending, "recent": recent}


def output_url(item: dict) -> str | None:
    if item.get("type") != "output":
        return None
    rel = "/".join(p for p in (item.get("subfolder") or "", item.get("filename") or "") if p)
    return url_for("gallery.item_page", rel=rel)


def _health() -> dict:
    data = read_health(current_settings())
    data["up"] = client(timeout=3).is_up()
    return data


def _sse(stream: Any) -> Response:
    response = Response(stream_with_context(stream), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def progress_stream(prompt_id: str):
    base_url = current_settings().comfyui_url

    def generate():
        yield "retry: 3000\n\n"
        heartbeat = time.monotonic()
        for state in watch(base_url, prompt_id):
            if state is None:
                if time.monotonic() - heartbeat > 10:
                    heartbeat = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            for item in state.get("outputs", {}).values():
                for file in item.get("images", []) or []:
                    if isinstance(file, dict):
                        file["url"] = output_url(file)
            kind = "done" if state.get("status") in ("success", "error", "interrupted", "cancelled", "unknown") \
                else "progress"
            yield f"event: {kind}\ndata: {json.dumps(state)}\n\n"

    return generate()


# ---- pages -----------------------------------------------------------------------------------


@bp.get("")
def index():
    settings = current_settings()
    return render_template("workflows/index.html", workflows=library.list_workflows(settings), health=_health())


@bp.get("/_queue")
def queue_fragment():
    try:
        data, error = queue_view(), None
    except ComfyUIError as err:
        data, error = {"running": [], "pending": [], "recent": []}, str(err)
    return render_template("workflows/_queue.html", queue=data, error=error, output_url=output_url)


@bp.get("/open")
def open_page():
    source, name = _source()
    loaded = library.load(current_settings(), source, name)
    error = None
    try:
        details = inspect(loaded, object_info())
    except ComfyUIError as err:
        details, error = None, str(err)
    return render_template("workflows/open.html", loaded=loaded, details=details, error=error)


@bp.get("/_missing")
def missing_fragment():
    source, name = _source()
    loaded = library.load(current_settings(), source, name)
    details = inspect(loaded, object_info(refresh=True))
    return render_template("workflows/_missing.html", loaded=loaded, details=details, checks=None)


@bp.post("/upload")
def upload_post():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InputError("choose a workflow file (.json) to upload")
    settings = current_settings()
    entry = library.save(settings, upload.filename, upload.read(), overwrite=bool(request.form.get("overwrite")))
    return render_template("workflows/_uploaded.html", entry=entry, workflows=library.list_workflows(settings))


@bp.post("/delete")
def delete_post():
    name = request.form.get("name", "")
    library.delete(current_settings(), name)
    return render_template("workflows/_list.html", workflows=library.list_workflows(current_settings()),
                           message=f"deleted {name}")


@bp.post("/run")
def run_post():
    source, name = _source()
    loaded = library.load(current_settings(), source, name)
    try:
        run = start_run(loaded, _form_parameters(request.form))
    except PromptRejected as err:
        details = inspect(loaded, object_info(refresh=True))
        return render_template("workflows/_rejected.html", problems=err.problems, loaded=loaded, details=details)
    return render_template("workflows/_run.html", run=run, loaded=loaded)


@bp.get("/runs/<prompt_id>/events")
def run_events(prompt_id: str):
    return _sse(progress_stream(prompt_id))


@bp.post("/runs/<prompt_id>/cancel")
def cancel_post(prompt_id: str):
    result = client().cancel(prompt_id)
    return render_template("workflows/_message.html", message={
        "interrupted": "Interrupting: ComfyUI stops at the next sampler step or after the running node.",
        "removed": "Removed from the queue.",
        "absent": "That run is no longer queued or running."}[result], kind="ok")


@bp.post("/interrupt")
def interrupt_post():
    client().interrupt()
    return render_template("workflows/_message.html", message="Interrupting the running prompt.", kind="ok")


@bp.post("/clear")
def clear_post():
    client().clear_queue()
    return render_template("workflows/_message.html", message="Cleared the waiting prompts.", kind="ok")


@bp.post("/install")
def install_post():
    ids = [i for i in request.form.getlist("preset") if i]
    if not ids:
        raise InputError("choose at least one preset to install")
    jobs = install_presets(ids)
    return render_template("workflows/_installing.html", ids=ids, jobs=jobs, source=request.form.get("source"),
                           name=request.form.get("name"))


@bp.post("/check-models")
def check_models_post():
    """After an install: does ComfyUI itself list each file of the chosen presets?"""
    paths = preset_paths(request.form.getlist("preset"))
    checks = [c.to_dict() for c in model_check.check_files(client(), paths)]
    return render_template("workflows/_checks.html", checks=checks)


def install_presets(ids: list[str]) -> list[int]:
    try:
        from presets.install import enqueue_presets
    except ImportError as err:
        raise Unavailable(f"preset installs are not available in this build ({err})") from None
    return list(enqueue_presets(current_settings(), ids))




def preset_paths(ids: list[str]) -> list[str]:
    catalog = catalog_store().current()
    paths = []
    for preset_id in ids:
        preset = catalog.get(preset_id)
        paths.extend(f.path for f in preset.files if not f.optional)
    return paths


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """Workflows in the library and the bundled examples.
    ---
    get:
      summary: List workflows (workspace/workflows and bundled examples)
      tags: [workflows]
      responses:
        200:
          description: One entry per workflow file
          content:
            application/json:
              schema:
                type: object
                properties:
                  workflows:
                    type: array
                    items:
                      type: object
                      properties:
                        source: {type: string, enum: [library, example]}
                        name: {type: string}
                        title: {type: string}
                        format: {type: string, enum: [ui, api, unknown]}
                        size: {type: integer}
                        mtime: {type: number}
    """
    return {"workflows": [e.to_dict() for e in library.list_workflows(current_settings())]}


@api.get("/inspect")
def api_inspect():
    """Parameters, missing node types and missing models of one workflow.
    ---
    get:
      summary: Convert a workflow with ComfyUI's object_info and report what it needs
      tags: [workflows]
      parameters:
      - {name: source, in: query, required: true, schema: {type: string, enum: [library, example, output]}}
      - {name: name, in: query, required: true, description: file name (or output path), schema: {type: string}}
      responses:
        200:
          description: The API-format prompt, its parameters, and missing models with presets
          content:
            application/json:
              schema:
                type: object
                properties:
                  format: {type: string}
                  api: {type: object, nullable: true}
                  parameters: {type: array, items: {type: object}}
                  missing_nodes: {type: array, items: {type: object}}
                  missing_models: {type: array, items: {type: object}}
                  preset_ids: {type: array, items: {type: string}}
                  error: {type: string, nullable: true}
    """
    source, name = _source()
    return inspect(library.load(current_settings(), source, name), object_info())


@api.post("/upload")
def api_upload():
    """Add a workflow file to the library.
    ---
    post:
      summary: Upload a workflow (UI or API format JSON) into workspace/workflows
      tags: [workflows]
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              properties:
                file: {type: string, format: binary}
                overwrite: {type: boolean}
      responses:
        200:
          description: The stored entry (renamed "name (1).json" when the name is taken)
          content:
            application/json:
              schema: {type: object}
    """
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InputError("send the workflow as the multipart field 'file'")
    entry = library.save(current_settings(), upload.filename, upload.read(),
                         overwrite=str(request.form.get("overwrite", "")).lower() in ("1", "true", "on"))
    return entry.to_dict()


@api.post("/run")
def api_run():
    """Queue a workflow in ComfyUI.
    ---
    post:
      summary: Run a workflow from the library, an example, an output image, or inline JSON
      tags: [workflows]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                source: {type: string, enum: [library, example, output]}
                name: {type: string}
                workflow: {type: object, description: inline UI or API format workflow instead of source/name}
                parameters:
                  type: object
                  description: '{"<node id>.<input>": value} or {"seed": "random"}'
      responses:
        200:
          description: Queued; follow it at /api/workflows/runs/{prompt_id}/events
          content:
            application/json:
              schema:
                type: object
                properties:
                  prompt_id: {type: string}
                  number: {type: number}
                  events: {type: string}
        400:
          description: ComfyUI refused the workflow; problems lists each failing node in words
    """
    body = json_object()
    if isinstance(body.get("workflow"), dict):
        data = body["workflow"]
        kind = library.detect_format(data)
        if kind == "unknown":
            raise InputError("workflow is not a ComfyUI workflow (UI or API format)")
        loaded = library.Loaded("inline", "inline", "inline workflow", data, data if kind == "ui" else None)
    else:
        source, name = _source()
        loaded = library.load(current_settings(), source, name)
    values = body.get("parameters") or {}
    if not isinstance(values, dict):
        raise InputError("parameters must be an object")
    try:
        run = start_run(loaded, values)
    except PromptRejected as err:
        return jsonify({"error": str(err), "problems": err.problems, "node_errors": err.node_errors}), 400
    run["events"] = url_for("workflows_api.api_run_events", prompt_id=run["prompt_id"])
    return run


@api.get("/runs/<prompt_id>")
def api_run_state(prompt_id: str):
    """The state of one run.
    ---
    get:
      summary: Progress of a prompt (from ComfyUI's /queue and /history)
      tags: [workflows]
      parameters:
      - {name: prompt_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: status (queued, running, success, error, interrupted), percent, nodes, outputs
          content:
            application/json:
              schema: {type: object}
        404:
          description: ComfyUI knows no such prompt
    """
    progress = snapshot(client(), prompt_id)
    if progress is None:
        return jsonify({"error": f"ComfyUI knows no prompt {prompt_id}"}), 404
    return progress.to_dict()


@api.get("/runs/<prompt_id>/events")
def api_run_events(prompt_id: str):
    """Live progress of one run as server-sent events.
    ---
    get:
      summary: Server-sent events (progress, then done) with percent and per-node state
      tags: [workflows]
      parameters:
      - {name: prompt_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: text/event-stream; each event's data is the JSON of GET /api/workflows/runs/{prompt_id}
          content:
            text/event-stream:
              schema: {type: string}
    """
    return _sse(progress_stream(prompt_id))


@api.post("/runs/<prompt_id>/cancel")
def api_cancel(prompt_id: str):
    """Cancel one run.
    ---
    post:
      summary: Remove a waiting prompt, or interrupt it while it runs (the running node finishes)
      tags: [workflows]
      parameters:
      - {name: prompt_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: result is interrupted, removed or absent
          content:
            application/json:
              schema: {type: object, properties: {result: {type: string}}}
    """
    return {"result": client().cancel(prompt_id)}


@api.get("/queue")
def api_queue():
    """ComfyUI's queue.
    ---
    get:
      summary: Running and waiting prompts, and the last finished ones
      tags: [workflows]
      responses:
        200:
          description: running, pending and recent lists
          content:
            application/json:
              schema: {type: object}
    """
    return queue_view()


@api.post("/interrupt")
def api_interrupt():
    """Interrupt whatever runs.
    ---
    post:
      summary: Interrupt the running prompt (ComfyUI stops after the running node)
      tags: [workflows]
      responses:
        200:
          description: Sent
          content:
            application/json:
              schema: {type: object}
    """
    client().interrupt()
    return {"ok": True}


@api.post("/install-missing")
def api_install_missing():
    """Install the presets that provide a workflow's missing models.
    ---
    post:
      summary: Queue the presets that provide the missing models (or the presets given)
      tags: [workflows]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                source: {type: string}
                name: {type: string}
                presets: {type: array, items: {type: string}}
      responses:
        200:
          description: Preset ids queued and their download job ids
          content:
            application/json:
              schema:
                type: object
                properties:
                  presets: {type: array, items: {type: string}}
                  jobs: {type: array, items: {type: integer}}
    """
    body = json_object(optional=True)
    ids = body.get("presets")
    if not ids:
        source, name = _source()
        ids = inspect(library.load(current_settings(), source, name), object_info(refresh=True))["preset_ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError("presets must be a list of preset ids")
    return {"presets": ids, "jobs": install_presets(ids) if ids else []}


@api.post("/check-models")
def api_check_models():
    """Ask ComfyUI whether it sees model files.
    ---
    post:
      summary: For each file (or each file of the presets), does GET /models/<folder> list it?
      tags: [workflows]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                paths: {type: array, items: {type: string}, description: paths relative to models/}
                presets: {type: array, items: {type: string}}
      responses:
        200:
          description: One entry per file with seen and a reason in words
          content:
            application/json:
              schema: {type: object}
    """
    body = json_object(optional=True)
    paths, presets = body.get("paths") or [], body.get("presets") or []
    for name, value in (("paths", paths), ("presets", presets)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{name} must be a list of strings")
    paths = list(paths) + preset_paths(list(presets))
    checks = model_check.check_files(client(), paths)
    return {"files": [c.to_dict() for c in checks], "all_seen": all(c.seen for c in checks)}
