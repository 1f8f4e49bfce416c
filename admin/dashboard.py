"""Home: services and their state, GPU, CPU/RAM/disk, running downloads, latest outputs.

Each card refreshes itself (htmx polling); ``GET /api/dashboard`` returns the same in one call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, render_template, send_file

from admin import presets as presets_area
from admin import services as services_area
from admin.context import current_settings
from admin.system import snapshot
from services.errors import PathError, ServiceError
from services.paths import within

bp = Blueprint("dashboard", __name__, url_prefix="/")
api = Blueprint("dashboard_api", __name__, url_prefix="/api/dashboard")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
OUTPUTS_SHOWN = 12


def latest_outputs(limit: int = OUTPUTS_SHOWN) -> list[dict[str, Any]]:
    """The newest files in workspace/output (top level and one folder down)."""
    root = current_settings().output_dir
    found: list[tuple[float, str, int]] = []
    for folder, prefix in [(root, "")] + [(root / d, f"{d}/") for d in _subfolders(root)]:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                stat = entry.stat()
            except OSError:
                continue
            found.append((stat.st_mtime, prefix + entry.name, stat.st_size))
    found.sort(reverse=True)
    return [
        {"path": rel, "modified": mtime, "size": size, "image": rel.lower().endswith(IMAGE_SUFFIXES)}
        for mtime, rel, size in found[:limit]
    ]


def _subfolders(root: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")][:50]
    except OSError:
        return []


@bp.get("")
def index():
    return render_template("dashboard/index.html")


@bp.get("_outputs")
def outputs_fragment():
    return render_template("dashboard/_outputs.html", outputs=latest_outputs())


@bp.get("output/<path:rel>")
def output_file(rel: str):
    try:
        path = within(current_settings().output_dir, rel, must_exist=True)
    except PathError as err:
        abort(404, description=str(err))
    if not path.is_file():
        abort(404, description=f"no output named {rel}")
    return send_file(path, conditional=True, max_age=300)


@api.get("")
def api_summary():
    """Everything Home shows, in one call.
    ---
    get:
      summary: Services, GPU and system, downloads and latest outputs
      tags: [dashboard]
      responses:
        200:
          description: The summary
          content:
            application/json:
              schema:
                type: object
                properties:
                  services:
                    type: array
                    items: {$ref: '#/components/schemas/Program'}
                  services_error: {type: string, nullable: true}
                  system: {type: object}
                  downloads: {type: array, items: {$ref: '#/components/schemas/Job'}}
                  outputs:
                    type: array
                    items:
                      type: object
                      properties:
                        path: {type: string}
                        modified: {type: number}
                        size: {type: integer}
                        image: {type: boolean}
    """
    try:
        programs, error = services_area.list_programs(), None
    except ServiceError as err:
        programs, error = [], str(err)
    return {
        "services": programs,
        "services_error": error,
        "system": snapshot(),
        "downloads": presets_area.jobs_view()["active"],
        "outputs": latest_outputs(),
    }
