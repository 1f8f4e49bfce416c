"""Workflows pages and JSON API (stub created by the admin helper; owned by the ComfyUI helper)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("workflows", __name__, url_prefix="/workflows")
api = Blueprint("workflows_api", __name__, url_prefix="/api/workflows")
