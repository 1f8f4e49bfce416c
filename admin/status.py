"""The start-up page at /_status/<program> (stub created by the admin helper; owned by the nginx helper)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("status", __name__, url_prefix="/_status")
api = Blueprint("status_api", __name__, url_prefix="/api/status")
