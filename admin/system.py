"""GPU, CPU, memory and workspace disk: the cards on Home and ``GET /api/system``.

Probes are cached for a second per process, so a page polled by many tabs (or a load test)
costs one NVML and psutil round per second, not one per request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Blueprint, render_template

from admin.context import current_settings
from services import gpu

bp = Blueprint("system", __name__, url_prefix="/system")
api = Blueprint("system_api", __name__, url_prefix="/api/system")

CACHE_SECONDS = 1.0
_cache: dict[str, Any] = {"at": 0.0, "value": None}
_lock = threading.Lock()


def snapshot() -> dict[str, Any]:
    """{"gpus": [...], "gpu_error": str|None, "system": {...}} — at most CACHE_SECONDS old."""
    now = time.monotonic()
    value = _cache["value"]
    if value is not None and now - _cache["at"] < CACHE_SECONDS:
        return value
    with _lock:
        if _cache["value"] is not None and time.monotonic() - _cache["at"] < CACHE_SECONDS:
            return _cache["value"]
        found = gpu.gpus()
        info = gpu.system(current_settings().workspace)
        value = {
            "gpus": [g.as_dict() for g in found],
            "gpu_error": None if found else (gpu.gpu_error() or "no NVIDIA GPU found"),
            "system": info.as_dict(),
        }
        _cache["value"], _cache["at"] = value, time.monotonic()
    return value


def largest_vram_gb() -> float | None:
    """Memory of the biggest GPU in GB (1024**3 bytes), or None without a GPU."""
    gpus = snapshot()["gpus"]
    if not gpus:
        return None
    return max(g["memory_total"] for g in gpus) / 1024**3


@bp.get("/_cards")
def cards():
    return render_template("system/_cards.html", snap=snapshot())


@api.get("")
def system_api():
    """GPU, CPU, memory and workspace disk.
    ---
    get:
      summary: GPU, CPU, memory and disk of the pod
      tags: [system]
      responses:
        200:
          description: A snapshot (at most one second old)
          content:
            application/json:
              schema:
                type: object
                properties:
                  gpus:
                    type: array
                    items:
                      type: object
                      properties:
                        index: {type: integer}
                        name: {type: string}
                        memory_total: {type: integer}
                        memory_used: {type: integer}
                        utilization: {type: integer, nullable: true}
                        temperature: {type: integer, nullable: true}
                  gpu_error: {type: string, nullable: true}
                  system:
                    type: object
                    properties:
                      cpu_percent: {type: number}
                      cpu_count: {type: integer}
                      memory_total: {type: integer}
                      memory_used: {type: integer}
                      disk_total: {type: integer}
                      disk_used: {type: integer}
                      disk_free: {type: integer}
    """
    return snapshot()
