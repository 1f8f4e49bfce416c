"""Custom nodes pages and JSON API (stub created by the admin helper; owned by the python-env helper)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("nodes", __name__, url_prefix="/nodes")
api = Blueprint("nodes_api", __name__, url_prefix="/api/nodes")
