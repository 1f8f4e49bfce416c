"""Workspace layout and the one guard against path traversal.

``ensure_workspace`` creates what is missing and never touches what exists.
``within(base, rel)`` is the only way a path from a user or the catalog becomes a real path.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from services.errors import PathError, WorkspaceError

# ComfyUI's standard model folders (folder_paths.py), created under workspace/models.
MODEL_FOLDERS: tuple[str, ...] = (
    "audio_encoders",
    "checkpoints",
    "clip",
    "clip_vision",
    "configs",
    "controlnet",
    "diffusers",
    "diffusion_models",
    "embeddings",
    "gligen",
    "hypernetworks",
    "latent_upscale_models",
    "loras",
    "model_patches",
    "photomaker",
    "style_models",
    "text_encoders",
    "unet",
    "upscale_models",
    "vae",
    "vae_approx",
)

# Top-level folders of the workspace (all persistent, all the user's).
WORKSPACE_FOLDERS: tuple[str, ...] = (
    "models",
    "output",
    "input",
    "workflows",
    "custom_nodes",
    "config",
    "config/state",
    "logs",
    ".cache/huggingface",
    ".cache/pip",
)


def ensure_workspace(workspace: Path) -> list[Path]:
    """Create the workspace folders that are missing; return the ones created."""
    created: list[Path] = []
    wanted = [workspace / name for name in WORKSPACE_FOLDERS]
    wanted += [workspace / "models" / name for name in MODEL_FOLDERS]
    for folder in wanted:
        if folder.is_dir():
            continue
        if folder.exists() or folder.is_symlink() and not folder.exists():
            if folder.is_symlink():
                continue  # a user's link (to another disk) is theirs to keep
            raise WorkspaceError(f"{folder} exists but is not a folder: move it away and start again")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkspaceError(f"cannot create {folder}: {err.strerror}") from None
        created.append(folder)
    return created


def within(base: Path, rel: str | os.PathLike[str], *, must_exist: bool = False) -> Path:
    """Resolve ``rel`` under ``base`` and refuse anything that leaves it.

    Refuses absolute paths, ``..`` parts, NUL bytes, backslashes and symlinks that resolve
    outside ``base``. Returns the resolved absolute path.
    """
    text = os.fspath(rel)
    if not text or "\x00" in text or "\\" in text:
        raise PathError(f"not an allowed path: {text!r}")
    pure = PurePosixPath(text)
    if pure.is_absolute() or any(part == ".." for part in pure.parts):
        raise PathError(f"path {text!r} leaves its folder")
    root = base.resolve()
    target = (root / pure).resolve()
    if target != root and root not in target.parents:
        raise PathError(f"path {text!r} leaves its folder")
    if must_exist and not target.exists():
        raise PathError(f"no such file: {text}")
    return target


def is_within(base: Path, rel: str | os.PathLike[str]) -> bool:
    try:
        within(base, rel)
    except PathError:
        return False
    return True
