"""Home: services and their state, GPU, CPU/RAM/disk, running downloads, latest outputs.

Each card refreshes itself (htmx polling); ``GET /api/dashboard`` returns the same in one call.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, render_template

from admin import presets as presets_area
from admin import services as services_area
from admin.cache import cached
from admin.context import current_settings
from admin.system import snapshot

log = logging.getLogger("comfypod.admin.dashboard")

bp = Blueprint("dashboard", __name__, url_prefix="/")
api = Blueprint("dashboard_api", __name__, url_prefix="/api/dashboard")

OUTPUTS_SHOWN = 12
OUTPUTS_SECONDS = 5.0


def latest_outputs(limit: int = OUTPUTS_SHOWN) -> list[dict[str, Any]]:
    """The newest images, videos and sounds in workspace/output (the gallery's own scan)."""
    try:
        from services import outputs
    except ImportError:
        log.warning("services.outputs is not available: Home shows no outputs")
        return []
    settings = current_settings()
    return cached(("dashboard.outputs", limit), OUTPUTS_SECONDS,
                  lambda: [item.to_dict() for item in outputs.page(settings, 1, limit).items])


@bp.get("")
def index():
    return render_template("dashboard/index.html")


@bp.get("_outputs")
def outputs_fragment():
    return render_template("dashboard/_outputs.html", outputs=latest_outputs())


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
                        name: {type: string}
                        kind: {type: string, enum: [image, video, audio]}
                        size: {type: integer}
                        mtime: {type: number}
    """
    programs, error = services_area.programs_or_error()
    return {
        "services": programs,
        "services_error": error,
        "system": snapshot(),
        "downloads": presets_area.jobs_view()["active"],
        "outputs": latest_outputs(),
    }
