"""Missing models of a workflow, and the presets that provide them.

``missing_report`` lists every model file a prompt loads that ComfyUI does not have (asked with
GET /models/<folder>, the same list ComfyUI validates against) and, for each, the catalog presets
that contain a file of that folder and name, so the admin can offer them in one click.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from services import workflow
from services.comfyui_client import ComfyUIClient
from services.errors import ComfyUIError
from services.model_check import comfy_name


@dataclass
class MissingModel:
    folder: str
    name: str
    nodes: list[str] = field(default_factory=list)  # "node 4 (CheckpointLoaderSimple).ckpt_name"
    presets: list[dict] = field(default_factory=list)  # {id, name, disk_gb, files}

    def to_dict(self) -> dict:
        return {"folder": self.folder, "name": self.name, "nodes": self.nodes, "presets": self.presets}


def _basename(name: str) -> str:
    return PurePosixPath(name).name


_SHORTHANDS = {"txt2img": "text image", "img2img": "image image", "t2i": "text image", "i2i": "image image",
               "t2v": "text video", "i2v": "image video", "txt2vid": "text video", "img2vid": "image video"}
_STOPWORDS = {"to", "the", "a", "an", "and", "with", "of", "for", "json", "basic", "workflow"}


def _tokens(text: str) -> set[str]:
    words = set()
    for word in re.split(r"[^a-z0-9]+", text.lower()):
        if not word or word in _STOPWORDS:
            continue
        words.update(_SHORTHANDS.get(word, word).split())
    return words


def relevance(preset: Any, hint: str) -> int:
    """Words a preset shares with the workflow's title and file name (text-to-image vs inpainting)."""
    if not hint:
        return 0
    about = " ".join([preset.id, preset.name, " ".join(getattr(preset, "tags", ()) or ())])
    return len(_tokens(hint) & _tokens(about))


def presets_providing(presets: Iterable[Any], folder: str, name: str, hint: str = "",
                      coverage: Mapping[str, int] | None = None) -> list[dict]:
    """Presets with a file at models/<folder>/<name> (or the same file name in that folder).

    Best first: the most missing files covered (``coverage``), then the closest to ``hint`` (the
    workflow's title), then the fewest files and the smallest download.
    """
    exact, by_basename = [], []
    for preset in presets:
        for model_file in preset.files:
            file_folder, file_name = comfy_name(model_file.path)
            if file_folder != folder:
                continue
            entry = {"id": preset.id, "name": preset.name, "disk_gb": preset.disk_gb, "files": len(preset.files),
                     "path": model_file.path, "relevance": relevance(preset, hint),
                     "covers": (coverage or {}).get(preset.id, 1)}
            if file_name == name:
                exact.append(entry)
                break
            if _basename(file_name) == _basename(name):
                by_basename.append(entry)
                break
    found = exact or by_basename
    return sorted(found, key=lambda e: (-e["covers"], -e["relevance"], e["files"], e["disk_gb"] or 0, e["id"]))


def listing_for(client: ComfyUIClient, folders: Iterable[str]) -> dict[str, list[str]]:
    """ComfyUI's own file list for each folder (a folder ComfyUI does not know counts as empty)."""
    listing: dict[str, list[str]] = {}
    for folder in sorted(set(folders)):
        try:
            listing[folder] = client.models(folder)
        except ComfyUIError as err:
            if "no model folder" not in str(err):
                raise
            listing[folder] = []
    return listing


def missing_report(api: Mapping[str, Any], object_info: Mapping[str, Any], listing: Mapping[str, Iterable[str]],
                   presets: Iterable[Any], hint: str = "") -> list[MissingModel]:
    """Every model file ``api`` loads that is not in ``listing``, with the presets providing it.

    ``hint`` (the workflow's title and file name) ranks presets that provide the same file.
    """
    refs = workflow.required_models(api, object_info)
    missing = workflow.missing_models(refs, listing)
    presets = list(presets)
    coverage: dict[str, int] = {}
    for ref in missing:
        for entry in presets_providing(presets, ref.folder, ref.name):
            coverage[entry["id"]] = coverage.get(entry["id"], 0) + 1
    report: list[MissingModel] = []
    for ref in missing:
        entry = MissingModel(ref.folder, ref.name)
        entry.nodes = [f"node {r.node_id} ({r.class_type}).{r.input_name}" for r in refs
                       if (r.folder, r.name) == (ref.folder, ref.name)]
        entry.presets = presets_providing(presets, ref.folder, ref.name, hint, coverage)
        report.append(entry)
    return report


def preset_ids(report: Iterable[MissingModel]) -> list[str]:
    """One preset per missing file (the smallest that provides it), without repeats."""
    chosen: list[str] = []
    for entry in report:
        if entry.presets and not any(p["id"] in chosen for p in entry.presets):
            chosen.append(entry.presets[0]["id"])
    return chosen
