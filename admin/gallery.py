"""Gallery pages and JSON API (stub created by the admin helper; owned by the ComfyUI helper)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("gallery", __name__, url_prefix="/gallery")
api = Blueprint("gallery_api", __name__, url_prefix="/api/gallery")
