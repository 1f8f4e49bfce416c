"""The Presets page and ``/api/presets``: the catalog with filters, sizes, installed state and
VRAM fit; install and remove; the download jobs with live progress (bar, speed, ETA, errors).

Installs go to the download worker through ``presets.install`` and ``presets.queue``; this
module never fetches a byte itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, make_response, render_template, request, url_for
from markupsafe import Markup

from admin.actions import attempt
from admin.cache import cached, forget
from admin.context import Conflict, InputError, Unavailable, catalog_store, current_settings, job_queue
from admin.payload import json_object
from admin.system import largest_vram_gb
from services.errors import CatalogError, ComfyPodError

log = logging.getLogger("comfypod.admin.presets")

bp = Blueprint("presets", __name__, url_prefix="/presets")
api = Blueprint("presets_api", __name__, url_prefix="/api/presets")

TYPES = ("video", "image", "audio")
STATE_FILTERS = ("installed", "partial", "missing", "damaged", "not-installed")
ACTIVE_STATES = ("queued", "probing", "running", "paused")
JOB_ACTIONS = ("cancel", "pause", "resume", "retry")
FINISHED_REFRESH_SECONDS = 4.0  # a job that ended this recently makes the preset list refresh
STATUS_SECONDS = 1.0  # the status scan, and the list rendered from it, may be this old
JOBS_SECONDS = 0.5  # the job queue as the pages show it may be this old


@dataclass(frozen=True)
class Filters:
    type: str = ""
    tag: str = ""
    q: str = ""
    state: str = ""

    @classmethod
    def from_request(cls) -> Filters:
        args = request.args
        kind = args.get("type", "").strip().lower()
        state = args.get("state", "").strip().lower()
        return cls(
            type=kind if kind in TYPES else "",
            tag=args.get("tag", "").strip()[:64],
            q=args.get("q", "").strip()[:200],
            state=state if state in STATE_FILTERS else "",
        )

    @property
    def active(self) -> bool:
        return bool(self.type or self.tag or self.q or self.state)


# ---- data ------------------------------------------------------------------------------------


def _status_map(catalog) -> dict[str, Any]:
    from presets.status import preset_status

    return preset_status(catalog, current_settings().models_dir)


def snapshot() -> dict[str, Any]:
    """The catalog in force with every preset's status, counts and tags (at most STATUS_SECONDS old)."""
    catalog = catalog_store().current()

    def build() -> dict[str, Any]:
        statuses = _status_map(catalog)
        counts = {state: 0 for state in ("installed", "partial", "missing", "damaged")}
        for status in statuses.values():
            counts[status.state] = counts.get(status.state, 0) + 1
        tags = sorted({t for p in catalog for t in p.tags}, key=str.lower)
        return {"catalog": catalog, "statuses": statuses, "counts": counts, "tags": tags}

    return cached(("presets.snapshot", id(catalog)), STATUS_SECONDS, build)


def _active_jobs() -> list[dict[str, Any]]:
    def build() -> list[dict[str, Any]]:
        try:
            return [job.to_dict() for job in job_queue().active()]
        except Unavailable:
            return []

    return cached(("presets.active",), JOBS_SECONDS, build)


def active_jobs_by_preset() -> dict[str, dict[str, Any]]:
    """The oldest unfinished job of each preset (as dicts), {} when the queue is unavailable."""
    result: dict[str, dict[str, Any]] = {}
    for data in _active_jobs():
        if data.get("preset_id") and data["preset_id"] not in result:
            result[data["preset_id"]] = data
    return result


def changed() -> None:
    """After an action: this worker's next answer recomputes status, jobs and the list."""
    for key in ("presets.snapshot", "presets.active", "presets.jobs", "presets.list", "presets.page"):
        forget(key)


def fits(vram_needed: float | None, vram_have: float | None) -> str:
    """'yes', 'no' or 'unknown' (no GPU, or the preset does not say)."""
    if vram_needed is None or vram_have is None:
        return "unknown"
    return "yes" if vram_needed <= vram_have + 0.5 else "no"


def preset_row(preset, status, vram_have: float | None, job: dict[str, Any] | None) -> dict[str, Any]:
    total, exact = preset.total_size
    return {
        "id": preset.id,
        "name": preset.name,
        "type": preset.type,
        "category": preset.category,
        "description": preset.description,
        "use_case": preset.use_case,
        "tags": list(preset.tags),
        "vram_gb": preset.vram_gb,
        "disk_gb": preset.disk_gb,
        "size": total,
        "size_exact": exact,
        "files": len(preset.files),
        "state": status.state if status else "missing",
        "files_present": status.files_present if status else 0,
        "bytes_present": status.bytes_present if status else 0,
        "bytes_missing": status.bytes_missing if status else total,
        "fits": fits(preset.vram_gb, vram_have),
        "replaced_by": preset.replaced_by,
        "job": job,
    }


def _matches(row: dict[str, Any], filters: Filters, hits: set[str] | None) -> bool:
    if filters.type and row["type"] != filters.type:
        return False
    if filters.tag and filters.tag.lower() not in (t.lower() for t in row["tags"]):
        return False
    if filters.state == "not-installed":
        if row["state"] == "installed":
            return False
    elif filters.state and row["state"] != filters.state:
        return False
    return hits is None or row["id"] in hits


def catalog_view(filters: Filters) -> dict[str, Any]:
    """Everything the Presets page and ``GET /api/presets`` show."""
    store = catalog_store()
    snap = snapshot()
    catalog, statuses = snap["catalog"], snap["statuses"]
    vram_have = largest_vram_gb()
    jobs = active_jobs_by_preset()
    hits = None
    order = list(catalog.presets)
    if filters.q:
        found = catalog.search(filters.q)
        hits = {p.id for p in found}
        order = [p.id for p in found]
    rows = []
    for preset_id in order:
        preset = catalog.presets[preset_id]
        row = preset_row(preset, statuses.get(preset_id), vram_have, jobs.get(preset_id))
        if _matches(row, filters, hits):
            rows.append(row)
    return {
        "presets": rows,
        "total": len(catalog.presets),
        "counts": snap["counts"],
        "tags": snap["tags"],
        "vram_gb": vram_have,
        "catalog_error": store.error,
    }


def one_row(preset_id: str) -> dict[str, Any]:
    catalog = catalog_store().current()
    preset = catalog.get(preset_id)
    from presets.status import preset_status

    status = preset_status(catalog, current_settings().models_dir, [preset.id])[preset.id]
    return preset_row(preset, status, largest_vram_gb(), active_jobs_by_preset().get(preset.id))


def install(ids: list[str]) -> list[int]:
    try:
        from presets.install import enqueue_presets
    except ImportError as err:
        raise Unavailable(f"installing presets is not available in this build ({err})") from None
    catalog = catalog_store().current()
    presets, problems = catalog.resolve_ids(ids)
    if problems:
        raise CatalogError("; ".join(problems))
    if not presets:
        raise InputError("no preset given")
    try:
        return list(enqueue_presets(current_settings(), [p.id for p in presets]))
    finally:
        changed()


def remove(preset_id: str) -> list[str]:
    """Delete the preset's files no other installed preset needs (a running download is cancelled)."""
    try:
        from presets.install import remove_preset
    except ImportError as err:
        raise Unavailable(f"removing presets is not available in this build ({err})") from None
    preset = catalog_store().current().get(preset_id)
    settings = current_settings()
    try:
        removed = remove_preset(settings, preset.id)
    finally:
        changed()
    models = settings.models_dir.resolve()
    return [str(p.relative_to(models)) if p.is_relative_to(models) else str(p) for p in removed]


# ---- jobs ------------------------------------------------------------------------------------


def jobs_view(limit: int = 8) -> dict[str, Any]:
    """Unfinished jobs and the latest finished ones (at most JOBS_SECONDS old)."""

    def build() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
        try:
            return _active_jobs(), [j.to_dict() for j in job_queue().jobs(limit)], None
        except Unavailable as err:
            return [], [], str(err)

    active, recent, error = cached(("presets.jobs", limit), JOBS_SECONDS, build)
    if error:
        return {"active": [], "recent": [], "error": error, "just_finished": False}
    active_ids = {j["id"] for j in active}
    finished = [j for j in recent if j["id"] not in active_ids]
    now = time.time()
    just_finished = any(
        j.get("state") in ("done", "failed", "cancelled")
        and now - float(j.get("updated_at") or 0) < FINISHED_REFRESH_SECONDS
        for j in finished
    )
    return {"active": active, "recent": finished, "error": None, "just_finished": just_finished}


def job_dict(job_id: int) -> dict[str, Any]:
    job = job_queue().job(job_id)
    if job is None:
        abort(404, description=f"no download job {job_id}")
    return job.to_dict()


def job_action(job_id: int, action: str) -> dict[str, Any]:
    if action not in JOB_ACTIONS:
        abort(404, description=f"unknown action {action!r}: one of {', '.join(JOB_ACTIONS)}")
    before = job_dict(job_id)
    if action == "cancel":
        from presets.install import cancel_job

        done = cancel_job(current_settings(), job_id)
    else:
        done = getattr(job_queue(), action)(job_id)
    changed()
    if not done:
        raise Conflict(f"job {job_id} is {before['state']}: it cannot {action} now")
    return job_dict(job_id)


# ---- pages -----------------------------------------------------------------------------------


def _rendered(kind: str, filters: Filters, template: str, **extra: Any) -> Markup:
    """``template`` rendered for ``filters``, reused while nothing it shows has changed: same catalog
    and status snapshot, same jobs (id, state, bytes, error), same GPU, same catalog error."""
    snap = snapshot()
    jobs = [*_active_jobs(), *extra.get("jobs", {}).get("recent", [])]
    seen = tuple((j["id"], j["state"], j["bytes_done"], j["error"]) for j in jobs)
    key = (kind, filters, id(snap), seen, largest_vram_gb(), catalog_store().error)
    return cached(key, STATUS_SECONDS,
                  lambda: Markup(render_template(template, view=catalog_view(filters), filters=filters, **extra)))


@bp.get("")
def index():
    filters = Filters.from_request()
    try:
        html = _rendered("presets.page", filters, "presets/_page.html", jobs=jobs_view(), error=None)
    except ComfyPodError as err:
        html = Markup(render_template("_error.html", message=str(err)))
    return render_template("presets/index.html", page_html=html)


@bp.get("/_list")
def list_fragment():
    filters = Filters.from_request()
    response = make_response(_rendered("presets.list", filters, "presets/_list.html"))
    # the address bar follows the filters, so a reload or a shared link keeps them
    query = {k: v for k, v in vars(filters).items() if v}
    response.headers["HX-Replace-Url"] = url_for("presets.index", **query)
    return response


@bp.get("/_jobs")
def jobs_fragment():
    jobs = jobs_view()
    compact = bool(request.args.get("compact"))
    response = make_response(render_template("presets/_jobs.html", jobs=jobs, compact=compact))
    if jobs["just_finished"]:
        response.headers["HX-Trigger"] = "presets-changed"
    return response


@bp.post("/<preset_id>/install")
def install_post(preset_id: str):
    def work() -> str:
        ids = install([preset_id])
        return f"queued (job {', '.join(map(str, ids))})" if ids else "already installed"

    return _card_response(preset_id, *attempt(work))


@bp.post("/<preset_id>/remove")
def remove_post(preset_id: str):
    def work() -> str:
        removed = remove(preset_id)
        return f"removed {len(removed)} file{'s' if len(removed) != 1 else ''}" if removed else "nothing to remove"

    return _card_response(preset_id, *attempt(work))


@bp.post("/jobs/<int:job_id>/<action>")
def job_post(job_id: int, action: str):
    _, error = attempt(lambda: job_action(job_id, action))
    jobs = jobs_view()
    return render_template("presets/_jobs.html", jobs=jobs, job_error=error, job_error_id=job_id,
                           compact=bool(request.args.get("compact")))


def _card_response(preset_id: str, message: str | None, error: str | None):
    try:
        row = one_row(preset_id)
    except CatalogError as err:
        return render_template("_error.html", message=str(err)), 404
    response = make_response(render_template("presets/_card.html", p=row, message=message, error=error))
    response.headers["HX-Trigger"] = "jobs-changed"
    return response


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """The catalog with installed state, sizes and VRAM fit.
    ---
    get:
      summary: List presets (filter by type, tag, text, state)
      tags: [presets]
      parameters:
      - {name: type, in: query, schema: {type: string, enum: [video, image, audio]}}
      - {name: tag, in: query, schema: {type: string}}
      - {name: q, in: query, description: words to search for, schema: {type: string}}
      - {name: state, in: query, schema: {type: string, enum: [installed, partial, missing, damaged, not-installed]}}
      responses:
        200:
          description: Presets
          content:
            application/json:
              schema:
                type: object
                properties:
                  presets: {type: array, items: {$ref: '#/components/schemas/PresetRow'}}
                  total: {type: integer}
                  counts: {type: object}
                  tags: {type: array, items: {type: string}}
                  vram_gb: {type: number, nullable: true}
                  catalog_error: {type: string, nullable: true}
    """
    return catalog_view(Filters.from_request())


@api.get("/<preset_id>")
def api_get(preset_id: str):
    """One preset with the state of each file.
    ---
    get:
      summary: One preset and its files
      tags: [presets]
      parameters:
      - {name: preset_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: The preset
          content:
            application/json:
              schema:
                type: object
                properties:
                  preset: {type: object}
                  status: {type: object}
                  fits: {type: string, enum: ['yes', 'no', unknown]}
                  job: {type: object, nullable: true}
        422: {$ref: '#/components/responses/Error'}
    """
    catalog = catalog_store().current()
    preset = catalog.get(preset_id)
    from presets.status import preset_status

    status = preset_status(catalog, current_settings().models_dir, [preset.id])[preset.id]
    return {
        "preset": preset.as_dict(),
        "status": status.as_dict(),
        "fits": fits(preset.vram_gb, largest_vram_gb()),
        "job": active_jobs_by_preset().get(preset.id),
    }


@api.post("/<preset_id>/install")
def api_install_one(preset_id: str):
    """Queue one preset for download.
    ---
    post:
      summary: Install a preset (queued for the download worker)
      tags: [presets]
      parameters:
      - {name: preset_id, in: path, required: true, schema: {type: string}}
      responses:
        202: {$ref: '#/components/responses/PresetsQueued'}
        422: {$ref: '#/components/responses/Error'}
    """
    return {"jobs": install([preset_id])}, 202


@api.post("/install")
def api_install_many():
    """Queue several presets.
    ---
    post:
      summary: Install presets by id
      tags: [presets]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [ids]
              properties:
                ids: {type: array, items: {type: string}}
      responses:
        202: {$ref: '#/components/responses/PresetsQueued'}
        400: {$ref: '#/components/responses/Error'}
        422: {$ref: '#/components/responses/Error'}
    """
    hint = "send {\"ids\": [\"PRESET_ID\", ...]}"
    ids = json_object(hint).get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(hint)
    return {"jobs": install(ids)}, 202


@api.post("/<preset_id>/remove")
def api_remove(preset_id: str):
    """Delete a preset's files that no other installed preset needs.
    ---
    post:
      summary: Remove a preset's files
      tags: [presets]
      parameters:
      - {name: preset_id, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: Removed
          content:
            application/json:
              schema:
                type: object
                properties:
                  removed: {type: array, items: {type: string}}
        400: {$ref: '#/components/responses/Error'}
        422: {$ref: '#/components/responses/Error'}
    """
    return {"removed": remove(preset_id)}


@api.get("/jobs")
def api_jobs():
    """Download jobs, newest first.
    ---
    get:
      summary: List download jobs
      tags: [presets]
      parameters:
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
      responses:
        200:
          description: Jobs
          content:
            application/json:
              schema:
                type: object
                properties:
                  jobs: {type: array, items: {$ref: '#/components/schemas/Job'}}
                  active: {type: array, items: {$ref: '#/components/schemas/Job'}}
    """
    limit = max(1, min(500, request.args.get("limit", 50, type=int) or 50))
    queue = job_queue()
    return {"jobs": [j.to_dict() for j in queue.jobs(limit)], "active": [j.to_dict() for j in queue.active()]}


@api.get("/jobs/<int:job_id>")
def api_job(job_id: int):
    """One download job with its files.
    ---
    get:
      summary: One download job
      tags: [presets]
      parameters:
      - {name: job_id, in: path, required: true, schema: {type: integer}}
      responses:
        200:
          description: The job
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Job'}
        404: {$ref: '#/components/responses/Error'}
    """
    return job_dict(job_id)


@api.post("/jobs/<int:job_id>/<action>")
def api_job_action(job_id: int, action: str):
    """Cancel, pause, resume or retry a download job.
    ---
    post:
      summary: Control a download job
      tags: [presets]
      parameters:
      - {name: job_id, in: path, required: true, schema: {type: integer}}
      - {name: action, in: path, required: true, schema: {type: string, enum: [cancel, pause, resume, retry]}}
      responses:
        200:
          description: The job after the action
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Job'}
        404: {$ref: '#/components/responses/Error'}
    """
    return job_action(job_id, action)
