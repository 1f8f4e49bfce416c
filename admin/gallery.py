"""The Gallery page and ``/api/gallery``: images, video and audio in workspace/output with
thumbnails and paging; open, download, delete, many at once as one streamed ZIP; the prompt and
workflow embedded in each PNG, and "run again" (opens it on the Workflows page).

Every path from a request goes through ``services.paths.within`` under the output folder.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, abort, jsonify, render_template, request, send_file, stream_with_context

from admin.context import InputError, current_settings
from services import outputs
from services.errors import PathError

log = logging.getLogger("comfypod.admin.gallery")

bp = Blueprint("gallery", __name__, url_prefix="/gallery")
api = Blueprint("gallery_api", __name__, url_prefix="/api/gallery")

PER_PAGE = 48
KINDS = ("image", "video", "audio")
ICONS = {"video": "▶", "audio": "♪", "image": "▣"}


def _page_args() -> tuple[int, int, str | None]:
    try:
        number = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", PER_PAGE))
    except ValueError:
        raise InputError("page and per_page must be whole numbers") from None
    kind = request.args.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}")
    return number, per_page, kind


def details(rel: str) -> dict:
    settings = current_settings()
    item = outputs.item(settings, rel)
    found = outputs.embedded(settings, rel)
    return {**item.to_dict(), "prompt": found["prompt"], "workflow": found["workflow"],
            "prompt_text": outputs.prompt_text(found["prompt"]),
            "can_run_again": found["prompt"] is not None or found["workflow"] is not None}


def _selected() -> list[str]:
    paths = request.form.getlist("path") if request.form else []
    if not paths and request.is_json:
        body = request.get_json(silent=True)
        paths = (body.get("paths") or []) if isinstance(body, dict) else []  # issue 11: any JSON
        if not isinstance(paths, list):
            paths = []
    if not paths:
        paths = request.args.getlist("path")
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise InputError("select at least one output")
    return paths


def zip_response(paths: list[str]) -> Response:
    settings = current_settings()
    for rel in paths:
        outputs.resolve(settings, rel)  # refuse before streaming starts
    response = Response(stream_with_context(outputs.zip_stream(settings, paths)), mimetype="application/zip")
    name = "comfypod-outputs.zip" if len(paths) > 1 else paths[0].rsplit("/", 1)[-1] + ".zip"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Accel-Buffering"] = "no"
    return response


# ---- pages -----------------------------------------------------------------------------------


@bp.get("")
def index():
    number, per_page, kind = _page_args()
    page = outputs.page(current_settings(), number, per_page, kind)
    return render_template("gallery/index.html", page=page, kind=kind, icons=ICONS, kinds=KINDS)


@bp.get("/item/<path:rel>")
def item_page(rel: str):
    return render_template("gallery/item.html", item=details(rel), icons=ICONS,
                           workflow_json=None, prompt_json=None, dumps=json.dumps)


@bp.get("/file/<path:rel>")
def file(rel: str):
    path = outputs.resolve(current_settings(), rel)
    return send_file(path, as_attachment=bool(request.args.get("download")), download_name=path.name,
                     conditional=True, max_age=0)


@bp.get("/thumb/<path:rel>")
def thumb(rel: str):
    settings = current_settings()
    try:
        path = outputs.thumbnail(settings, rel)
    except PathError:
        abort(404)
    if path is None:
        kind = outputs.kind_of(rel) or "image"
        svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160">'
               '<rect width="160" height="160" fill="#0c0f13"/><text x="80" y="96" font-size="56" text-anchor="middle" '
               f'fill="#9aa4b2">{ICONS.get(kind, "?")}</text></svg>')
        return Response(svg, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=60"})
    response = send_file(path, mimetype="image/webp", conditional=True, max_age=3600)
    return response


@bp.post("/delete")
def delete_post():
    removed = outputs.delete(current_settings(), _selected())
    number, per_page, kind = _page_args()
    page = outputs.page(current_settings(), number, per_page, kind)
    return render_template("gallery/_grid.html", page=page, kind=kind, icons=ICONS, kinds=KINDS,
                           message=f"Deleted {len(removed)} file{'s' if len(removed) != 1 else ''}.")


@bp.post("/zip")
def zip_post():
    return zip_response(_selected())


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """Outputs, newest first, one page at a time.
    ---
    get:
      summary: List images, video and audio in workspace/output
      tags: [gallery]
      parameters:
      - {name: page, in: query, schema: {type: integer, default: 1}}
      - {name: per_page, in: query, schema: {type: integer, default: 48}}
      - {name: kind, in: query, schema: {type: string, enum: [image, video, audio]}}
      responses:
        200:
          description: items (path, name, subfolder, kind, size, mtime), total, page, pages
          content:
            application/json:
              schema: {type: object}
    """
    number, per_page, kind = _page_args()
    return outputs.page(current_settings(), number, per_page, kind).to_dict()


@api.get("/items/<path:rel>")
def api_item(rel: str):
    """One output with its embedded prompt and workflow.
    ---
    get:
      summary: Metadata of one output, with the prompt and workflow ComfyUI embedded in the PNG
      tags: [gallery]
      parameters:
      - {name: rel, in: path, required: true, description: path relative to output/, schema: {type: string}}
      responses:
        200:
          description: The item, prompt (API format), workflow (UI format) and prompt texts
          content:
            application/json:
              schema: {type: object}
        400:
          description: The path leaves the output folder or is not a file
    """
    return details(rel)


@api.delete("/items/<path:rel>")
def api_delete(rel: str):
    """Delete one output.
    ---
    delete:
      summary: Delete one file in workspace/output
      tags: [gallery]
      parameters:
      - {name: rel, in: path, required: true, schema: {type: string}}
      responses:
        200:
          description: Deleted
          content:
            application/json:
              schema: {type: object, properties: {deleted: {type: array, items: {type: string}}}}
    """
    return jsonify({"deleted": outputs.delete(current_settings(), [rel])})


@api.post("/zip")
def api_zip():
    """Many outputs as one ZIP, streamed.
    ---
    post:
      summary: Download the given outputs as one ZIP archive (streamed, stored without compression)
      tags: [gallery]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                paths: {type: array, items: {type: string}}
      responses:
        200:
          description: application/zip
          content:
            application/zip:
              schema: {type: string, format: binary}
    """
    return zip_response(_selected())
