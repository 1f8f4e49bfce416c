"""The Models page and ``/api/models``: files under workspace/models by folder, their size,
the presets that own them, files no preset knows, delete, and add a model by URL.

Every path from a request goes through ``services.paths.within`` under the models folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, make_response, render_template, request

from admin.actions import attempt
from admin.context import Conflict, InputError, Unavailable, catalog_store, current_settings
from admin.payload import json_object
from services.errors import ComfyPodError, PathError
from services.paths import MODEL_FOLDERS, within

log = logging.getLogger("comfypod.admin.models")

bp = Blueprint("models", __name__, url_prefix="/models")
api = Blueprint("models_api", __name__, url_prefix="/api/models")

MAX_DEPTH = 8
SKIP_SUFFIXES = (".lock",)


def _owners() -> dict[str, list[str]]:
    """models-relative path -> ids of the presets that list it."""
    try:
        catalog = catalog_store().current()
    except (ComfyPodError, Unavailable) as err:
        log.warning("models page without catalog: %s", err)
        return {}
    owners: dict[str, list[str]] = {}
    for preset in catalog:
        for item in preset.files:
            owners.setdefault(item.path, []).append(preset.id)
    return owners


def _walk(root: Path):
    """(relative path, stat) for every file under ``root``, following links without loops."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_dir():
                    if depth < MAX_DEPTH:
                        stack.append((Path(entry.path), rel + "/", depth + 1))
                    continue
                if not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue
            yield rel, stat


def inventory() -> dict[str, Any]:
    settings = current_settings()
    root = settings.models_dir
    owners = _owners()
    folders: dict[str, dict[str, Any]] = {}
    total = unknown = 0
    for rel, stat in _walk(root):
        name = rel.rsplit("/", 1)[-1]
        if name.endswith(SKIP_SUFFIXES) or (name.startswith("put_") and name.endswith("_here")):
            continue
        partial = name.endswith(".part")
        target = rel[: -len(".part")] if partial else rel
        presets = owners.get(target, [])
        folder = rel.split("/", 1)[0] if "/" in rel else "."
        entry = folders.setdefault(folder, {"name": folder, "files": [], "size": 0})
        entry["files"].append({
            "path": rel,
            "name": rel.split("/", 1)[1] if "/" in rel else rel,
            "size": stat.st_size,
            "modified": stat.st_mtime,
            "presets": presets,
            "unknown": not presets,
            "partial": partial,
        })
        entry["size"] += stat.st_size
        total += stat.st_size
        unknown += 0 if presets else 1
    ordered = []
    for name in sorted(folders, key=lambda n: (n == ".", n)):
        entry = folders[name]
        entry["files"].sort(key=lambda f: f["path"].lower())
        ordered.append(entry)
    return {"folders": ordered, "total_size": total, "files": sum(len(f["files"]) for f in ordered),
            "unknown": unknown}


def delete(rel: str) -> str:
    """Delete one file under models/ (never a folder); return its relative path."""
    settings = current_settings()
    try:
        path = within(settings.models_dir, rel)
    except PathError as err:
        raise InputError(str(err)) from None
    if not (path.is_file() or path.is_symlink()):
        abort(404, description=f"no model file {rel!r}")
    if path.name.endswith(".part") and path.with_name(path.name[: -len(".part")] + ".lock").exists():
        lock = path.with_name(path.name[: -len(".part")] + ".lock")
        if _locked(lock):
            raise Conflict(f"{rel} is being downloaded: cancel the download first")
    path.unlink()
    log.info("deleted model file %s", rel)
    return rel


def _locked(lock: Path) -> bool:
    """True when a live process holds the download lock (fcntl lock, as the downloader takes it)."""
    import fcntl

    try:
        with open(lock, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def add_url(url: str, folder: str, filename: str | None) -> int:
    url = (url or "").strip()
    if not url.startswith(("https://", "http://")):
        raise InputError("give an http(s) URL of a model file or model page")
    filename = (filename or "").strip()
    if filename.startswith(".") or "/" in filename or "\\" in filename:
        raise InputError("a file name cannot contain / or \\ or start with a dot")
    try:
        from presets.install import enqueue_url
    except ImportError as err:
        raise Unavailable(f"downloads are not available in this build ({err})") from None
    return int(enqueue_url(current_settings(), url, folder, filename or None))


# ---- pages -----------------------------------------------------------------------------------


@bp.get("")
def index():
    return render_template("models/index.html", inv=inventory(), folders=MODEL_FOLDERS)


@bp.get("/_files")
def files_fragment():
    return render_template("models/_files.html", inv=inventory())


@bp.post("/delete")
def delete_post():
    rel = request.form.get("path", "")
    try:
        delete(rel)
    except (InputError, Conflict) as err:
        return render_template("models/_files.html", inv=inventory(), error=str(err), error_path=rel)
    return render_template("models/_files.html", inv=inventory(), message=f"Deleted {rel}")


@bp.post("/add")
def add_post():
    def work() -> str:
        job = add_url(request.form.get("url", ""), request.form.get("folder", ""), request.form.get("filename"))
        return f"Queued as job {job}: see Downloads."

    message, error = attempt(work)
    response = make_response(render_template("models/_add_result.html", message=message, error=error))
    response.headers["HX-Trigger"] = "jobs-changed"
    return response


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_list():
    """Model files by folder.
    ---
    get:
      summary: List model files with size and owning presets
      tags: [models]
      responses:
        200:
          description: Files by folder; `unknown` files belong to no preset
          content:
            application/json:
              schema:
                type: object
                properties:
                  folders:
                    type: array
                    items:
                      type: object
                      properties:
                        name: {type: string}
                        size: {type: integer}
                        files:
                          type: array
                          items: {$ref: '#/components/schemas/ModelFile'}
                  total_size: {type: integer}
                  files: {type: integer}
                  unknown: {type: integer}
    """
    return inventory()


@api.delete("/files/<path:rel>")
def api_delete(rel: str):
    """Delete one model file.
    ---
    delete:
      summary: Delete a file under models/
      tags: [models]
      parameters:
      - {name: rel, in: path, required: true, description: path relative to models/, schema: {type: string}}
      responses:
        200:
          description: Deleted
          content:
            application/json:
              schema:
                type: object
                properties:
                  deleted: {type: string}
        400: {$ref: '#/components/responses/Error'}
        404: {$ref: '#/components/responses/Error'}
    """
    return {"deleted": delete(rel)}


@api.post("/add")
def api_add():
    """Download a model by URL into a models folder.
    ---
    post:
      summary: Add a model by URL (Hugging Face, Civitai or direct link)
      tags: [models]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [url, folder]
              properties:
                url: {type: string}
                folder: {type: string}
                filename: {type: string}
      responses:
        202:
          description: Queued
          content:
            application/json:
              schema:
                type: object
                properties:
                  job: {type: integer}
        400: {$ref: '#/components/responses/Error'}
    """
    body = json_object("send a JSON object with url and folder")
    return {"job": add_url(str(body.get("url", "")), str(body.get("folder", "")), body.get("filename"))}, 202
