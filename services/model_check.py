"""After an install, confirm that ComfyUI itself sees each new model file (GET /models/<folder>).

A file that landed in the wrong folder, or with an extension ComfyUI does not list, would only
show up at run time as "value not in list"; this check names it right after the download.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from services.comfyui_client import ComfyUIClient
from services.errors import ComfyUIError

# ComfyUI reads the old folder names into the new ones.
LEGACY_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}


@dataclass(frozen=True)
class ModelVisibility:
    path: str  # relative to workspace/models, as in a preset
    folder: str  # ComfyUI's folder name
    name: str  # the value a loader node takes
    seen: bool
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "folder": self.folder, "name": self.name, "seen": self.seen, "reason": self.reason}


def comfy_name(rel_path: str) -> tuple[str, str]:
    """``checkpoints/sd15/x.safetensors`` -> (``checkpoints``, ``sd15/x.safetensors``)."""
    parts = PurePosixPath(rel_path).parts
    if len(parts) < 2:
        return "", rel_path
    return LEGACY_FOLDERS.get(parts[0], parts[0]), "/".join(parts[1:])


def check_files(client: ComfyUIClient, rel_paths: Iterable[str]) -> list[ModelVisibility]:
    """One GET /models/<folder> per folder; each file is seen or not, with the reason in words."""
    listings: dict[str, list[str] | None] = {}
    results = []
    for rel in rel_paths:
        folder, name = comfy_name(rel)
        if not folder:
            results.append(ModelVisibility(rel, "", name, False, "not inside a model folder"))
            continue
        if folder not in listings:
            try:
                listings[folder] = client.models(folder)
            except ComfyUIError as err:
                if "no model folder" not in str(err):
                    raise
                listings[folder] = None
        listing = listings[folder]
        if listing is None:
            results.append(ModelVisibility(rel, folder, name, False,
                                           f"ComfyUI has no model folder {folder!r}: the file is in the wrong place"))
        elif name in listing:
            results.append(ModelVisibility(rel, folder, name, True, f"ComfyUI lists it in {folder}"))
        else:
            results.append(ModelVisibility(rel, folder, name, False,
                                           f"ComfyUI does not list it in {folder} (wrong folder or file type?)"))
    return results


def unseen(results: Iterable[ModelVisibility]) -> list[ModelVisibility]:
    return [r for r in results if not r.seen]
