"""One function per generated file: supervisord.conf, nginx.conf, extra_model_paths.yaml.

``render_*`` functions are pure (Settings in, text out); ``write_configs`` writes them all.
An extra_model_paths.yaml that ComfyPod did not write (an earlier image's, or the user's own) is
first moved, byte for byte, to extra_model_paths.user.yaml, which ComfyUI reads as well.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jinja2

from services.files import write_atomic
from services.paths import MODEL_FOLDERS
from services.settings import Settings

log = logging.getLogger("comfypod.render")
EXTRA_MODEL_PATHS_HEADER = "# Written by `comfypod up` at every start"


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_supervisord(settings: Settings) -> str:
    template = _environment(settings.app_dir / "supervisor.d").get_template("supervisord.conf.j2")
    return template.render(settings=settings, is_root=os.getuid() == 0)


def render_nginx(settings: Settings) -> str:
    template = _environment(settings.app_dir / "nginx").get_template("nginx.conf.j2")
    return template.render(settings=settings, is_root=os.getuid() == 0)


def render_extra_model_paths(settings: Settings) -> str:
    """ComfyUI's extra_model_paths.yaml pointing every model folder at workspace/models."""
    lines = [
        f"{EXTRA_MODEL_PATHS_HEADER}: ComfyUI reads models from the workspace.",
        "comfypod:",
        f"    base_path: {settings.models_dir}",
        "    is_default: true",
    ]
    for folder in MODEL_FOLDERS:
        lines.append(f"    {folder}: {folder}/")
    # custom nodes live on the volume; is_default puts this folder first, so ComfyUI-Manager
    # installs there too (services/nodes.py links the image's nodes into it)
    lines.append(f"    custom_nodes: {settings.custom_nodes_dir}")
    return "\n".join(lines) + "\n"


def extra_model_paths_file(settings: Settings) -> Path:
    return settings.config_dir / "extra_model_paths.yaml"


def user_extra_model_paths_file(settings: Settings) -> Path:
    return settings.config_dir / "extra_model_paths.user.yaml"


def keep_user_extra_model_paths(settings: Settings) -> Path | None:
    """Move an extra_model_paths.yaml ComfyPod did not write to extra_model_paths.user.yaml (or
    .user.N.yaml when that exists) instead of overwriting it; return where it went (issue 11)."""
    ours = extra_model_paths_file(settings)
    try:
        with open(ours, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except FileNotFoundError:
        return None
    if first.startswith(EXTRA_MODEL_PATHS_HEADER):
        return None
    target, n = user_extra_model_paths_file(settings), 1
    while target.exists():
        target, n = settings.config_dir / f"extra_model_paths.user.{n}.yaml", n + 1
    os.replace(ours, target)
    log.warning("kept your %s as %s (ComfyUI reads both)", ours.name, target.name)
    return target


def write_configs(settings: Settings) -> list[Path]:
    """Render every generated file; return their paths."""
    written = []
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.run_dir, 0o700)
    write_atomic(settings.supervisord_conf, render_supervisord(settings))
    written.append(settings.supervisord_conf)
    if (settings.app_dir / "nginx" / "nginx.conf.j2").is_file():
        nginx_conf = settings.run_dir / "nginx.conf"
        write_atomic(nginx_conf, render_nginx(settings))
        written.append(nginx_conf)
    keep_user_extra_model_paths(settings)
    write_atomic(extra_model_paths_file(settings), render_extra_model_paths(settings))
    written.append(extra_model_paths_file(settings))
    return written
