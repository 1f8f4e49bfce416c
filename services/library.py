"""The workflow library: the user's workflows in workspace/workflows and the bundled examples.

A workflow is named by ``(source, name)``: ``library`` (a .json path under workspace/workflows),
``example`` (a file in services/examples, model-free except sd15-txt2img) or ``output`` (an output
image whose embedded workflow or prompt ComfyUI wrote, for "run again"). Names pass through
``services.paths.within``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import outputs, workflow
from services.errors import PathError, WorkflowError
from services.files import write_atomic
from services.paths import within
from services.settings import Settings

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
SOURCES = ("library", "example", "output")
MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    source: str
    name: str
    title: str
    format: str  # ui | api | unknown
    size: int
    mtime: float

    def to_dict(self) -> dict:
        return {"source": self.source, "name": self.name, "title": self.title, "format": self.format,
                "size": self.size, "mtime": self.mtime}


@dataclass
class Loaded:
    source: str
    name: str
    title: str
    data: Any  # the JSON as stored
    ui: dict | None  # UI-format workflow, when there is one

    @property
    def format(self) -> str:
        return "ui" if self.ui is not None else "api"


def detect_format(data: Any) -> str:
    if workflow.is_ui_format(data):
        return "ui"
    if workflow.is_api_format(data):
        return "api"
    return "unknown"


def _title(data: Any, fallback: str) -> str:
    if isinstance(data, dict):
        extra = data.get("extra") if isinstance(data.get("extra"), dict) else {}
        for value in ((extra.get("comfypod") or {}).get("title"), (data.get("_meta") or {}).get("title")
                      if isinstance(data.get("_meta"), dict) else None):
            if isinstance(value, str) and value.strip():
                return value.strip()
    return fallback


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_BYTES:
        raise WorkflowError(f"{path.name} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WorkflowError(f"{path.name} is not a JSON workflow: {err}") from None


def _entries(root: Path, source: str) -> list[Entry]:
    found = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.endswith(".json") or filename.startswith("."):
                continue
            path = Path(dirpath, filename)
            rel = path.relative_to(root).as_posix()
            try:
                data = _read_json(path)
                stat = path.stat()
            except (OSError, WorkflowError):
                continue
            stem = rel[: -len(".json")]
            found.append(Entry(source, rel, _title(data, stem), detect_format(data), stat.st_size, stat.st_mtime))
    return found


def list_workflows(settings: Settings) -> list[Entry]:
    """The user's workflows (newest first), then the bundled examples."""
    mine = sorted(_entries(settings.workflows_dir, "library"), key=lambda e: e.mtime, reverse=True)
    return mine + _entries(EXAMPLES_DIR, "example")


def load(settings: Settings, source: str, name: str) -> Loaded:
    if source == "library":
        path = within(settings.workflows_dir, name)
    elif source == "example":
        path = within(EXAMPLES_DIR, name)
    elif source == "output":
        found = outputs.embedded(settings, name)
        if found["workflow"] is not None and workflow.is_ui_format(found["workflow"]):
            return Loaded(source, name, f"again: {name}", found["workflow"], found["workflow"])
        if found["prompt"] is not None:
            return Loaded(source, name, f"again: {name}", found["prompt"], None)
        raise WorkflowError(f"{name} holds no workflow (only ComfyUI's PNG outputs embed one)")
    else:
        raise WorkflowError(f"unknown workflow source {source!r}: one of {', '.join(SOURCES)}")
    if not path.is_file():
        raise PathError(f"no such workflow: {name}")
    data = _read_json(path)
    kind = detect_format(data)
    if kind == "unknown":
        raise WorkflowError(f"{name} is JSON but not a ComfyUI workflow (UI or API format)")
    return Loaded(source, name, _title(data, name.rsplit("/", 1)[-1].removesuffix(".json")), data,
                  data if kind == "ui" else None)


def safe_name(filename: str) -> str:
    """A file name for the library: letters, digits, dot, dash, underscore, space; ends in .json."""
    base = os.path.basename(filename.replace("\\", "/")).strip()
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")
    if not base:
        raise WorkflowError("the workflow needs a file name")
    if not base.lower().endswith(".json"):
        base += ".json"
    return base


def save(settings: Settings, filename: str, raw: bytes, overwrite: bool = False) -> Entry:
    """Store an uploaded workflow after checking that it is a ComfyUI workflow."""
    if len(raw) > MAX_BYTES:
        raise WorkflowError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WorkflowError(f"{filename} is not JSON: {err}") from None
    kind = detect_format(data)
    if kind == "unknown":
        raise WorkflowError(f"{filename} is not a ComfyUI workflow: expected UI format (nodes, links) or API format")
    name = safe_name(filename)
    settings.workflows_dir.mkdir(parents=True, exist_ok=True)
    path = within(settings.workflows_dir, name)
    if path.exists() and not overwrite:
        stem, index = name[: -len(".json")], 1
        while path.exists():
            name = f"{stem} ({index}).json"
            path = within(settings.workflows_dir, name)
            index += 1
    write_atomic(path, raw)
    stat = path.stat()
    return Entry("library", name, _title(data, name[: -len(".json")]), kind, stat.st_size, stat.st_mtime)


def delete(settings: Settings, name: str) -> None:
    path = within(settings.workflows_dir, name)
    if not path.is_file():
        raise PathError(f"no such workflow: {name}")
    path.unlink()
