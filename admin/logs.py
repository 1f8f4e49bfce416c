"""The Logs page and ``/api/logs``: the files in workspace/logs, tailed live.

A log name must look like ``name.log`` (or a rotated ``name.log.3``) and is resolved with
``services.paths.within`` under the logs folder: nothing else on the disk can be read here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, render_template, request

from admin.context import current_settings
from services.errors import PathError
from services.paths import within

bp = Blueprint("logs", __name__, url_prefix="/logs")
api = Blueprint("logs_api", __name__, url_prefix="/api/logs")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.log(?:\.[0-9]{1,3})?$")
TAIL_BYTES = 32768
MAX_TAIL_BYTES = 1 << 20


def log_files() -> list[dict[str, Any]]:
    folder = current_settings().logs_dir
    items = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not NAME_RE.match(entry.name) or not entry.is_file():
            continue
        stat = entry.stat()
        items.append({"name": entry.name, "size": stat.st_size, "modified": stat.st_mtime})
    items.sort(key=lambda item: (item["name"].count(".") > 1, item["name"]))
    return items


def log_path(name: str) -> Path:
    if not NAME_RE.match(name):
        abort(404, description=f"not a log name: {name!r}")
    try:
        path = within(current_settings().logs_dir, name)
    except PathError as err:
        abort(404, description=str(err))
    if not path.is_file():
        abort(404, description=f"no log named {name}")
    return path


def tail_file(path: Path, length: int = TAIL_BYTES) -> str:
    """The last ``length`` bytes of ``path`` as text, starting at a line boundary when cut."""
    length = max(1, min(length, MAX_TAIL_BYTES))
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        start = max(0, size - length)
        handle.seek(start)
        data = handle.read(length)
    if start > 0:
        newline = data.find(b"\n")
        if 0 <= newline < len(data) - 1:
            data = data[newline + 1 :]
    return data.decode("utf-8", errors="replace")


@bp.get("")
def index():
    files = log_files()
    names = [f["name"] for f in files]
    selected = request.args.get("name") or ("comfyui.log" if "comfyui.log" in names else (names[0] if names else None))
    return render_template("logs/index.html", files=files, selected=selected)


@bp.get("/<name>/_tail")
def tail_fragment(name: str):
    return render_template("logs/_tail.html", name=name, text=tail_file(log_path(name)))


@api.get("")
def api_list():
    """Log files in workspace/logs.
    ---
    get:
      summary: List log files
      tags: [logs]
      responses:
        200:
          description: Log files with size and modification time
          content:
            application/json:
              schema:
                type: object
                properties:
                  logs:
                    type: array
                    items:
                      type: object
                      properties:
                        name: {type: string}
                        size: {type: integer}
                        modified: {type: number}
    """
    return {"logs": log_files()}


@api.get("/<name>")
def api_tail(name: str):
    """The end of one log file.
    ---
    get:
      summary: Tail a log file
      tags: [logs]
      parameters:
      - name: name
        in: path
        required: true
        schema: {type: string, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*\\.log(\\.[0-9]+)?$'}
      - {name: bytes, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1048576, default: 32768}}
      responses:
        200:
          description: The last bytes of the file
          content:
            application/json:
              schema:
                type: object
                properties:
                  name: {type: string}
                  text: {type: string}
        404: {$ref: '#/components/responses/Error'}
    """
    length = request.args.get("bytes", TAIL_BYTES, type=int) or TAIL_BYTES
    return {"name": name, "text": tail_file(log_path(name), length)}
