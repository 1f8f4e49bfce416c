"""The `comfyui` program: build ComfyUI's command line from the settings and exec it."""

from __future__ import annotations

import logging
import os

import click

from services.errors import ComfyUIError
from services.render import extra_model_paths_file
from services.settings import Settings

log = logging.getLogger("comfypod.comfyui")


def comfyui_argv(settings: Settings, extra_flags: list[str] | None = None) -> list[str]:
    """ComfyUI's full command line: loopback only, workspace folders, then COMFYUI_ARGS."""
    return [
        str(settings.comfyui_python),
        "main.py",
        "--listen",
        "127.0.0.1",
        "--port",
        str(settings.comfyui_internal_port),
        "--extra-model-paths-config",
        str(extra_model_paths_file(settings)),
        "--output-directory",
        str(settings.output_dir),
        "--input-directory",
        str(settings.input_dir),
        *(extra_flags or []),
        *settings.comfyui_args,
    ]


@click.command("comfyui")
def comfyui_command() -> None:
    """Run ComfyUI in the foreground (supervisord's comfyui program)."""
    from services.cli import get_settings

    settings = get_settings(click.get_current_context())
    main = settings.comfyui_dir / "main.py"
    if not main.is_file():
        raise ComfyUIError(f"ComfyUI is not installed in {settings.comfyui_dir}: run `make comfyui`")
    argv = comfyui_argv(settings)
    click.echo("comfyui: " + " ".join(argv), err=True)
    os.chdir(settings.comfyui_dir)
    os.execv(argv[0], argv)
