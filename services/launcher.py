"""The `comfyui` program: build ComfyUI's command line from the settings and exec it.

ComfyUI listens on loopback only (nginx is the front door), reads models from workspace/models
through extra_model_paths.yaml and writes output/input in the workspace. The attention flag comes
from ``services.doctor.attention_flag`` (SageAttention only where its self-test passed) under the
SageAttention mode: the one the admin stored in ``config/state/sage_attention``, else the
SAGE_ATTENTION variable. COMFYUI_ARGS go last. One log line says which flags were chosen and why.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass

import click

from services.errors import ComfyUIError
from services.render import extra_model_paths_file, user_extra_model_paths_file
from services.settings import SAGE_MODES, Settings

log = logging.getLogger("comfypod.comfyui")

# Where the admin keeps the SageAttention mode picked on the Settings page (one word).
SAGE_STATE_FILE = "sage_attention"
SAGE_FLAG = "--use-sage-attention"
# ComfyUI's attention switches; a user's own choice in COMFYUI_ARGS wins over ours.
ATTENTION_FLAGS = (
    "--use-sage-attention",
    "--use-flash-attention",
    "--use-pytorch-cross-attention",
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--disable-xformers",
)


@dataclass(frozen=True)
class AttentionChoice:
    flags: tuple[str, ...]
    mode: str
    mode_source: str
    reason: str


def sage_mode(settings: Settings) -> tuple[str, str]:
    """(mode, where it came from): the admin's stored choice wins over SAGE_ATTENTION."""
    path = settings.state_dir / SAGE_STATE_FILE
    try:
        word = path.read_text().strip().lower()
    except FileNotFoundError:
        word = ""
    except OSError as err:
        log.warning("cannot read %s (%s); using SAGE_ATTENTION", path, err.strerror)
        word = ""
    if word in SAGE_MODES:
        return word, "admin setting"
    if word:
        log.warning("ignoring %r in %s: expected one of %s", word, path, ", ".join(SAGE_MODES))
    return settings.sage_attention, "SAGE_ATTENTION"


def _doctor_verdict(settings: Settings) -> tuple[tuple[str, ...], str]:
    """Ask services.doctor for the attention flags: (flags, reason)."""
    try:
        doctor = importlib.import_module("services.doctor")
    except ImportError:
        return (), "services.doctor is not available: no attention flag"
    choose = getattr(doctor, "attention_flag", None)
    if choose is None:
        return (), "services.doctor has no attention_flag(): no attention flag"
    flags, reason = choose(settings)
    if isinstance(flags, str):
        flags = [flags] if flags else []
    return tuple(flags or ()), str(reason)


def attention_choice(settings: Settings) -> AttentionChoice:
    mode, source = sage_mode(settings)
    user_flags = [a for a in settings.comfyui_args if a in ATTENTION_FLAGS]
    if user_flags:
        return AttentionChoice((), mode, source, f"COMFYUI_ARGS already chooses attention ({' '.join(user_flags)})")
    if mode == "off":
        return AttentionChoice((), mode, source, f"SageAttention is off ({source})")
    flags, reason = _doctor_verdict(settings.with_changes(sage_attention=mode))
    return AttentionChoice(flags, mode, source, reason)


def _user_model_paths(settings: Settings) -> list[str]:
    """The user's own extra_model_paths.yaml, kept beside ComfyPod's (services.render)."""
    user = user_extra_model_paths_file(settings)
    return ["--extra-model-paths-config", str(user)] if user.is_file() else []


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
        *_user_model_paths(settings),
        "--output-directory",
        str(settings.output_dir),
        "--input-directory",
        str(settings.input_dir),
        *(extra_flags or []),
        *settings.comfyui_args,
    ]


def describe_choice(choice: AttentionChoice, settings: Settings) -> str:
    flags = " ".join(choice.flags) or "no attention flag"
    extra = f"; COMFYUI_ARGS: {' '.join(settings.comfyui_args)}" if settings.comfyui_args else ""
    why = f"SageAttention mode {choice.mode} from {choice.mode_source}: {choice.reason}"
    return f"comfyui flags: {flags} ({why}){extra}"


@click.command("comfyui")
def comfyui_command() -> None:
    """Run ComfyUI in the foreground (supervisord's comfyui program)."""
    from services.cli import get_settings

    settings = get_settings(click.get_current_context())
    main = settings.comfyui_dir / "main.py"
    if not main.is_file():
        raise ComfyUIError(f"ComfyUI is not installed in {settings.comfyui_dir}: run `make comfyui`")
    from services.pyenv import sync_before_launch

    sync_before_launch(settings)  # nodes whose requirements changed get them first; never raises
    choice = attention_choice(settings)
    argv = comfyui_argv(settings, list(choice.flags))
    click.echo(describe_choice(choice, settings), err=True)
    click.echo("comfyui: " + " ".join(argv), err=True)
    os.chdir(settings.comfyui_dir)
    os.execv(argv[0], argv)
